//! A TCP proxy that puts a wide-area round trip between a client and a server, for benchmarks
//! and latency tests: every chunk read on one side is written to the other half a round trip
//! later. Chunks are pipelined (reading goes on while earlier chunks wait out their delay), so
//! the link adds latency without limiting throughput, up to a window of [`WINDOW_BYTES`] in
//! flight per direction, as a TCP window would. A new connection does not pay an extra round
//! trip for its handshake, and a reset on one side reaches the other as an orderly close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Result;

/// Largest chunk read at once.
const CHUNK_BYTES: usize = 64 * 1024;
/// Bytes in flight per direction: at a 50 ms round trip this still carries well over 1 GB/s.
pub const WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// A running proxy; it stops, closing every relayed connection, when this is dropped.
pub struct LatencyProxy {
    addr: SocketAddr,
    round_trip_nanos: Arc<AtomicU64>,
    task: JoinHandle<()>,
    _closing: watch::Sender<()>,
}

impl LatencyProxy {
    /// Listens on `127.0.0.1` (a free port) and relays every connection to `upstream`,
    /// `round_trip / 2` later in each direction.
    pub async fn start(upstream: SocketAddr, round_trip: Duration) -> Result<LatencyProxy> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let round_trip_nanos = Arc::new(AtomicU64::new(nanos(round_trip)));
        let (closing, closed) = watch::channel(());
        let delay = Arc::clone(&round_trip_nanos);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        let relay = relay(client, upstream, Arc::clone(&delay), closed.clone());
                        tokio::spawn(relay);
                    }
                    Err(err) => {
                        tracing::debug!(%err, "latency proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Ok(LatencyProxy {
            addr,
            round_trip_nanos,
            task,
            _closing: closing,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: stands in for the upstream's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn round_trip(&self) -> Duration {
        Duration::from_nanos(self.round_trip_nanos.load(Ordering::Relaxed))
    }

    /// Changes the round trip for chunks read from now on (open connections included).
    pub fn set_round_trip(&self, round_trip: Duration) {
        self.round_trip_nanos
            .store(nanos(round_trip), Ordering::Relaxed);
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    round_trip_nanos: Arc<AtomicU64>,
    mut closed: watch::Receiver<()>,
) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(err) => {
            // Refused upstream: the client sees its connection reset, not a silent close.
            tracing::debug!(%err, "latency proxy cannot reach its upstream");
            let _ = client.set_zero_linger();
            return;
        }
    };
    // Delay is the point; Nagle's algorithm would add its own on top.
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let both = futures_util::future::join(
        pipe(client_read, server_write, Arc::clone(&round_trip_nanos)),
        pipe(server_read, client_write, round_trip_nanos),
    );
    tokio::select! {
        _ = both => {}
        _ = closed.changed() => {}
    }
}

/// One direction: reads chunks as they come and writes each half a round trip after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, round_trip_nanos: Arc<AtomicU64>) {
    type Chunk = (Instant, Option<(Bytes, OwnedSemaphorePermit)>);
    let (chunks, mut due) = mpsc::unbounded_channel::<Chunk>();
    let window = Arc::new(Semaphore::new(WINDOW_BYTES as usize));
    let reader = async move {
        let mut buffer = vec![0_u8; CHUNK_BYTES];
        loop {
            let read = from.read(&mut buffer).await;
            let one_way = Duration::from_nanos(round_trip_nanos.load(Ordering::Relaxed) / 2);
            let at = Instant::now() + one_way;
            let chunk = match read {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    let bytes = u32::try_from(n).unwrap_or(WINDOW_BYTES);
                    let Ok(permit) = Arc::clone(&window).acquire_many_owned(bytes).await else {
                        return;
                    };
                    Some((Bytes::copy_from_slice(&buffer[..n]), permit))
                }
            };
            let end = chunk.is_none();
            if chunks.send((at, chunk)).is_err() || end {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            let Some((bytes, _permit)) = chunk else {
                let _ = to.shutdown().await;
                return;
            };
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    futures_util::future::join(reader, writer).await;
}
