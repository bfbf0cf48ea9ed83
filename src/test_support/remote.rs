//! The server side of the out-of-process SQL Server double: the test process hosts a
//! [`MemoryStore`] and answers the real binary's `RemoteStore` calls
//! (`syncbridge-test-double://ADDR`), with faults the test turns on: a call that answers late or
//! fails as SQL Server being unavailable, and the whole server unreachable (nothing listening).
//! The double's own hooks (`set_down`, `reject_next_applies`, ...) work as they do in process.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::TEST_DOUBLE_SCHEME;
use crate::sqlserver::memory::MemoryStore;
use crate::sqlserver::remote::wire::{Reply, Request, WireError};

/// Faults per trait method (`"claim"`, `"settle"`, `"load_rows"`, ...).
#[derive(Debug, Default)]
struct Faults {
    /// Each call of the method is answered this much later (after it ran).
    delay: BTreeMap<String, Duration>,
    /// The next n calls of the method fail as SQL Server being unavailable, without running.
    fail: BTreeMap<String, u32>,
    /// Calls received per method, failed ones included.
    seen: BTreeMap<String, u64>,
}

/// The double, listening. Stops when dropped.
pub struct RemoteServer {
    addr: SocketAddr,
    store: MemoryStore,
    faults: Arc<Mutex<Faults>>,
    stop: Mutex<CancellationToken>,
}

impl RemoteServer {
    /// Serves `store` on a free port of 127.0.0.1.
    pub async fn start(store: MemoryStore) -> io::Result<Self> {
        Self::start_on(store, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves `store` on `addr`.
    pub async fn start_on(store: MemoryStore, addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let server = Self {
            addr: listener.local_addr()?,
            store,
            faults: Arc::default(),
            stop: Mutex::new(CancellationToken::new()),
        };
        server.serve(listener);
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `MSSQL_CONNECTION_STRING` that makes the binary use this double.
    pub fn connection_string(&self) -> String {
        format!("{TEST_DOUBLE_SCHEME}{}", self.addr)
    }

    /// The double behind it (shared state: what the test changes, the binary sees).
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// Answers each `method` call `delay` after running it (zero: no delay).
    pub fn delay(&self, method: &str, delay: Duration) {
        self.faults().delay.insert(method.to_owned(), delay);
    }

    /// The next `n` calls of `method` fail as SQL Server being unavailable.
    pub fn fail_next(&self, method: &str, n: u32) {
        self.faults().fail.insert(method.to_owned(), n);
    }

    /// Ends every fault (the call counts stay).
    pub fn clear_faults(&self) {
        let mut f = self.faults();
        f.delay.clear();
        f.fail.clear();
    }

    /// Calls of `method` received, including those a fault failed.
    pub fn calls(&self, method: &str) -> u64 {
        self.faults().seen.get(method).copied().unwrap_or(0)
    }

    /// Stops listening (connections are refused, calls in flight broken), or listens again on
    /// the same address.
    pub async fn set_unreachable(&self, unreachable: bool) -> io::Result<()> {
        if unreachable {
            self.lock_stop().cancel();
            return Ok(());
        }
        if !self.lock_stop().is_cancelled() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        *self.lock_stop() = CancellationToken::new();
        self.serve(listener);
        Ok(())
    }

    fn serve(&self, listener: TcpListener) {
        let stop = self.lock_stop().clone();
        let (store, faults) = (self.store.clone(), self.faults.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let (store, faults, stop) = (store.clone(), faults.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = answer(stream, &store, &faults) => {}
                    }
                });
            }
        });
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    fn lock_stop(&self) -> MutexGuard<'_, CancellationToken> {
        self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        self.lock_stop().cancel();
    }
}

fn lock(faults: &Mutex<Faults>) -> MutexGuard<'_, Faults> {
    faults.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads one request line, runs it (faults first), writes one reply line.
async fn answer(stream: TcpStream, store: &MemoryStore, faults: &Mutex<Faults>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let reply: Reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Err(WireError::Invalid(format!("bad request: {e}"))),
        Ok(request) => {
            let method = request.call.method();
            let (fail, delay) = {
                let mut f = lock(faults);
                *f.seen.entry(method.to_owned()).or_default() += 1;
                let fail = f.fail.get_mut(method).filter(|n| **n > 0).map(|n| *n -= 1);
                (fail.is_some(), f.delay.get(method).copied())
            };
            let reply = if fail {
                Err(WireError::Unavailable(format!(
                    "{method} failed (test double fault)"
                )))
            } else {
                let store = store.as_agent(&request.agent);
                request.call.dispatch(&store).await
            };
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            reply
        }
    };
    if let Ok(mut bytes) = serde_json::to_vec(&reply) {
        bytes.push(b'\n');
        let _ = write.write_all(&bytes).await;
    }
}
