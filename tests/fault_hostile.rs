//! Hostile clients against the real binary (issue 6.9, fault suite): 1,000 half-open
//! connections and 400 unfinished, unauthenticated 1 MiB bodies, while the clinic's notify is
//! answered within a second each time, the process's RSS stays under 64 MB, and the refusals
//! write a handful of log lines rather than one each.
//!
//! SQL Server is unreachable here (nothing listens on port 1): the agent serves HTTP from its
//! first moment regardless, and `queue-notify` is answered while it keeps trying, so the
//! HTTP edge is tested without a SQL Server double in another process.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_syncbridge");
const HALF_OPEN: usize = 1000;
const BODIES: usize = 400;
const MIB: usize = 1 << 20;
const RSS_LIMIT_KB: u64 = 64 * 1024;

/// The agent's resident set, in KiB, from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// This test holds ~1,500 sockets at once.
fn raise_own_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

struct Agent {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_agent(rest: &FakePostgrest, keys: &ApiKeys) -> Agent {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stdout.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "info")
        .env(
            "MSSQL_CONNECTION_STRING",
            "Server=127.0.0.1,1;Database=Clinic;User Id=sync;Password=x",
        )
        .env("SUPABASE_URL", rest.url())
        .env("SUPABASE_SERVICE_ROLE_KEY", keys.service_role_jwt())
        .env("SUPABASE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("SYNC_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SYNC_NOTIFY_TOKEN", NOTIFY_TOKEN)
        .env("SYNC_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SYNC_LOG_KEEP_DAYS", "0")
        .stdout(Stdio::from(out.try_clone().expect("dup")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start agent");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("agent listening", || {
        let (http, url) = (http.clone(), format!("{base}/health"));
        async move { http.get(url).send().await.is_ok() }
    })
    .await;
    Agent {
        child,
        base,
        log,
        _dir: dir,
    }
}

/// Connections that send part of their headers and then nothing.
async fn half_open(addr: String, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr));
        if let Ok(Ok(mut tcp)) = connect.await {
            let _ = tcp
                .write_all(b"POST /api/sync/webhook HTTP/1.1\r\nHost: x\r\n")
                .await;
            held.push(tcp);
        }
    }
    held
}

/// An unauthenticated 1 MiB webhook, sent until the agent stops taking it, never finished.
async fn unfinished_body(addr: String) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(&addr).await.ok()?;
    let head = format!(
        "POST /api/sync/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {MIB}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.ok()?;
    let chunk = vec![b'x'; 64 * 1024];
    let send = async {
        // All but the last chunk: the body is never complete.
        for _ in 0..(MIB / chunk.len() - 1) {
            if tcp.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), send).await;
    Some(tcp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_clients_neither_starve_the_clinic_notify_nor_grow_memory_or_logs() {
    raise_own_fd_limit();
    let db = TestDb::create().await.expect("db");
    let keys = ApiKeys::generate();
    let rest = FakePostgrest::start(db.url(), keys.clone())
        .await
        .expect("rest");
    let agent = start_agent(&rest, &keys).await;
    let pid = agent.child.id();
    let addr = agent.base.trim_start_matches("http://").to_owned();
    let baseline_kb = rss_kb(pid);
    let started = Instant::now();

    // RSS sampled every 50 ms until the attack is over.
    let done = Arc::new(AtomicBool::new(false));
    let peak_kb = Arc::new(AtomicU64::new(baseline_kb));
    let sampler = tokio::spawn({
        let (done, peak) = (done.clone(), peak_kb.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    // The clinic's notify, each on a fresh connection, every 200 ms while the attack runs.
    let notifier = tokio::spawn({
        let (done, url) = (
            done.clone(),
            format!("{}/api/sync/queue-notify", agent.base),
        );
        async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client");
            let mut latencies = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let sent = http.post(&url).bearer_auth(NOTIFY_TOKEN).send();
                let answer = tokio::time::timeout(Duration::from_secs(5), sent).await;
                let status = match answer {
                    Ok(Ok(r)) => r.status().as_u16(),
                    _ => 0,
                };
                latencies.push((status, t.elapsed()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            latencies
        }
    });

    let opener = tokio::spawn(half_open(addr.clone(), HALF_OPEN));
    let bodies: Vec<_> = (0..BODIES)
        .map(|_| tokio::spawn(unfinished_body(addr.clone())))
        .collect();
    let mut held = opener.await.expect("opener");
    let half_open_count = held.len();
    for body in bodies {
        if let Some(tcp) = body.await.expect("body task") {
            held.push(tcp);
        }
    }
    // Everything held open a moment longer while the notifier keeps going.
    let attack_secs = started.elapsed();
    let body_count = held.len() - half_open_count;
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let latencies = notifier.await.expect("notifier");
    let peak_kb = peak_kb.load(Ordering::Relaxed);
    drop(held);
    let elapsed = started.elapsed();

    let slowest = latencies.iter().map(|(_, d)| *d).max().unwrap_or_default();
    println!(
        "hostile: {half_open_count} half-open, {body_count} bodies, attack {attack_secs:?}, {} notifies, slowest {slowest:?}; RSS baseline {baseline_kb} kB, peak {peak_kb} kB",
        latencies.len()
    );
    assert_eq!(
        half_open_count, HALF_OPEN,
        "every half-open connection was made"
    );
    assert_eq!(body_count, BODIES, "every body was started");
    assert!(latencies.len() >= 3, "too few notifies: {latencies:?}");
    for (status, latency) in &latencies {
        assert_eq!(*status, 202, "{latencies:?}");
        assert!(*latency < Duration::from_secs(1), "{latencies:?}");
    }
    assert!(peak_kb < RSS_LIMIT_KB, "RSS peaked at {peak_kb} kB");
    assert!(
        agent.child.id() == pid && rss_kb(pid) > 0,
        "the agent is still running"
    );

    // Stop the agent so its log is complete, then count the refusal lines: one per reason per
    // 10 s window at most, where each of the 1,400 refusals used to write its own.
    let log = agent_log_after_stop(agent);
    let windows = 2 + elapsed.as_secs() as usize / 10;
    let webhook_lines = log
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .count();
    let refusal_lines = log
        .lines()
        .filter(|l| l.contains("refused") || l.contains("connection closed"))
        .count();
    println!(
        "hostile: {webhook_lines} 'webhook refused' lines, {refusal_lines} refusal lines, log {} bytes, over {elapsed:?}",
        log.len()
    );
    assert!(webhook_lines >= 1, "the refusals were logged at all: {log}");
    assert!(webhook_lines <= windows, "{log}");
    assert!(refusal_lines <= 14 * windows, "{log}");
    assert!(log.len() < 64 * 1024, "{} bytes of log", log.len());
}

/// Stops the agent and returns its log.
fn agent_log_after_stop(mut agent: Agent) -> String {
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    std::fs::read_to_string(&agent.log).unwrap_or_default()
}
