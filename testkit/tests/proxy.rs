//! The latency proxy: every request pays the round trip, bulk transfers are not throttled to a
//! chunk per round trip, and a refused upstream reaches the client as a failed connection.

mod common;

use std::time::{Duration, Instant};

use common::{send, Env};
use reqwest::Method;
use syncbridge_testkit::LatencyProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn each_request_pays_the_round_trip() {
    let env = Env::start().await;
    let round_trip = Duration::from_millis(200);
    let proxy = LatencyProxy::start(env.api.addr(), round_trip)
        .await
        .expect("proxy");
    let http = common::client();
    let key = env.api.keys().secret_key().to_owned();
    let get = || {
        http.request(Method::GET, format!("{}/rest/v1/patients", proxy.url()))
            .header("apikey", &key)
    };
    // Twice: the second request reuses the connection and still pays the full round trip.
    for _ in 0..2 {
        let started = Instant::now();
        assert_eq!(send(get()).await, (200, "[]".to_owned()));
        assert!(started.elapsed() >= round_trip, "{:?}", started.elapsed());
    }
    proxy.set_round_trip(Duration::ZERO);
    assert_eq!(proxy.round_trip(), Duration::ZERO);
    let started = Instant::now();
    assert_eq!(send(get()).await.0, 200);
    assert!(started.elapsed() < round_trip, "{:?}", started.elapsed());
}

/// Reads everything until EOF, then answers with the byte count and a checksum.
async fn sink() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buffer = vec![0_u8; 64 * 1024];
        let (mut count, mut sum) = (0_u64, 0_u64);
        loop {
            let n = stream.read(&mut buffer).await.expect("read");
            if n == 0 {
                break;
            }
            count += n as u64;
            sum = buffer[..n]
                .iter()
                .fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
        }
        let reply = format!("{count} {sum}");
        stream.write_all(reply.as_bytes()).await.expect("reply");
    });
    addr
}

#[tokio::test]
async fn bulk_transfer_is_pipelined_not_one_chunk_per_round_trip() {
    let round_trip = Duration::from_millis(100);
    let proxy = LatencyProxy::start(sink().await, round_trip)
        .await
        .expect("proxy");
    // 16 MiB is at least 256 chunks: one chunk per one-way delay would take over 12 s.
    let data: Vec<u8> = (0..16 * 1024 * 1024_u32).map(|i| (i % 251) as u8).collect();
    let expected = data
        .iter()
        .fold(0_u64, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    for chunk in data.chunks(64 * 1024) {
        stream.write_all(chunk).await.expect("write");
    }
    stream.shutdown().await.expect("shutdown");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("reply");
    let elapsed = started.elapsed();
    assert_eq!(
        reply,
        format!("{} {expected}", data.len()),
        "every byte, in order"
    );
    assert!(elapsed >= round_trip, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "throttled: {elapsed:?}");
}

#[tokio::test]
async fn a_refused_upstream_fails_the_clients_connection() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = closed.local_addr().expect("addr");
    drop(closed);
    let proxy = LatencyProxy::start(upstream, Duration::from_millis(10))
        .await
        .expect("proxy");
    let result = common::client()
        .get(format!("{}/rest/v1/", proxy.url()))
        .send()
        .await;
    assert!(
        result.is_err_and(|err| !err.is_timeout()),
        "no answer from nowhere"
    );
}
