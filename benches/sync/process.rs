//! Idle cost and memory of the agent in a process of its own: the real binary (`syncbridge
//! run`, as `cargo bench` builds it) over the SQL Server double served from this process
//! (`test_support::remote`: line-JSON over TCP, as the process tests use it), so that what the
//! child holds is the agent's alone, the double's rows staying here. This process reads the
//! child's CPU ticks, context switches and RSS from /proc.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::test_support::remote::RemoteServer;

use crate::env::{self, Side};
use crate::workload;

const BIN: &str = env!("CARGO_BIN_EXE_syncbridge");

pub struct ProcessFigures {
    pub idle_window: Duration,
    pub idle_ticks: u64,
    pub idle_switches: u64,
    pub rss_idle_kb: u64,
    /// The peak while the agent drains the burst (the high-water mark reset at its start).
    pub rss_peak_kb: u64,
    pub burst: usize,
    pub burst_took: Duration,
}

impl ProcessFigures {
    pub fn peak_mb(&self) -> f64 {
        self.rss_peak_kb as f64 / 1024.0
    }
}

/// [`measure`] in `plan.process_runs` fresh child processes, one after another.
pub async fn measure_runs(plan: &crate::Plan) -> Vec<ProcessFigures> {
    let mut runs = Vec::new();
    for _ in 0..plan.process_runs {
        let run = measure(plan.idle, plan.process_burst).await;
        println!("  the binary's peak RSS: {:.1} MB", run.peak_mb());
        runs.push(run);
    }
    runs
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Context switches (voluntary and not) summed over every thread: each is a wake-up.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// The binary, killed when dropped: a measurement that panics leaves no agent running.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `syncbridge run` in `dir` (no `.env` there: the settings are its environment), on `port`;
/// its log lines dropped, its start-up errors (stderr) shown.
fn spawn(side: &Side, double: &RemoteServer, dir: &tempfile::TempDir, port: u16) -> Agent {
    let data = dir.path().join("data").display().to_string();
    Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .envs(env::settings(
            &side.url(),
            side.keys.service_role_jwt(),
            &data,
            None,
        ))
        // Set after the common settings, so these two replace theirs.
        .env("MSSQL_CONNECTION_STRING", double.connection_string())
        .env("SYNC_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Agent)
        .expect("syncbridge run")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Idle for `idle`, then a forward burst of `burst` changes.
pub async fn measure(idle: Duration, burst: usize) -> ProcessFigures {
    let side = Side::start(Duration::ZERO).await;
    let double = RemoteServer::start(MemoryStore::sample_clinic())
        .await
        .expect("the SQL Server double");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let agent = spawn(&side, &double, &dir, port);
    let pid = agent.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    env::wait_ready(&http, &base).await;
    // Let start-up (catch-up, schema reads) finish before the idle window opens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks = || crate::cpu::process_ticks(&pid.to_string());
    let (t0, s0) = (ticks(), switches(pid));
    tokio::time::sleep(idle).await;
    let (t1, s1) = (ticks(), switches(pid));
    let rss_idle_kb = status_kb(pid, "VmRSS");
    // The burst goes into the double, in this process: the child's memory never holds it.
    let workload = workload::burst(burst);
    workload::write(double.store(), &workload.existing);
    double.store().clear_queue();
    workload::write(double.store(), &workload.changes);
    // The peak is read from here on (writing 5 to clear_refs resets VmHWM, Linux 4.0+).
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        eprintln!("cannot reset the child's peak RSS ({e}): the peak includes start-up");
    }
    let batches = workload
        .changes
        .iter()
        .filter(|c| c.table == 3 && c.row.is_some())
        .count() as i64;
    let started = Instant::now();
    env::notify(&http, &base).await;
    while side.count("aligner_batches").await < batches {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the binary never synced its burst"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let burst_took = started.elapsed();
    let rss_peak_kb = status_kb(pid, "VmHWM");
    drop(agent);
    ProcessFigures {
        idle_window: idle,
        idle_ticks: t1.saturating_sub(t0),
        // A thread that exits in the window takes its count with it: never below zero.
        idle_switches: s1.saturating_sub(s0),
        rss_idle_kb,
        rss_peak_kb,
        burst,
        burst_took,
    }
}
