//! Idle cost and memory of the agent in a process of its own: this benchmark binary started
//! again as a child (`BENCH_CHILD_AGENT=1`), running the agent over the SQL Server double (the
//! real binary needs a SQL Server, which this machine does not have). The parent reads the
//! child's CPU ticks, context switches and RSS from /proc.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use syncbridge::sqlserver::memory::MemoryStore;

use crate::env::{self, Side};
use crate::workload;

pub const CHILD_ENV: &str = "BENCH_CHILD_AGENT";

/// The child's side: the agent from the environment, then commands on stdin.
pub async fn child_main() {
    let config = syncbridge::Config::from_lookup(&|k: &str| std::env::var(k).ok()).expect("config");
    let store = MemoryStore::sample_clinic();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let agent = syncbridge::Agent {
        config,
        store: std::sync::Arc::new(store.clone()),
        map: workload::bench_map(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(syncbridge::run(agent, listener, shutdown.clone()));
    env::wait_ready(&reqwest::Client::new(), &base).await;
    println!("ready {base}");
    // Commands on stdin, read by a thread of their own (blocked in read: no wake-ups).
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = commands.recv().await {
        if let Some(n) = line.strip_prefix("burst ").and_then(|n| n.parse().ok()) {
            let burst = workload::burst(n);
            workload::write(&store, &burst.existing);
            store.clear_queue();
            workload::write(&store, &burst.changes);
            println!("written");
        }
    }
    shutdown.cancel();
}

pub struct ProcessFigures {
    pub idle_window: Duration,
    pub idle_ticks: u64,
    pub idle_switches: u64,
    pub rss_idle_kb: u64,
    /// Once the burst is written into the double (its rows and queue, in this same process),
    /// before the agent is told of it.
    pub rss_loaded_kb: u64,
    /// The peak while the agent drains the burst (the high-water mark reset once loaded).
    pub rss_peak_kb: u64,
    pub burst: usize,
    pub burst_took: Duration,
}

impl ProcessFigures {
    /// The agent's own at peak: idle + (peak − loaded), the double's rows being SQL Server's
    /// memory, in MB.
    pub fn own_peak_mb(&self) -> f64 {
        (self.rss_idle_kb + self.rss_peak_kb.saturating_sub(self.rss_loaded_kb)) as f64 / 1024.0
    }
}

/// [`measure`] in `plan.process_runs` fresh child processes, one after another.
pub async fn measure_runs(plan: &crate::Plan) -> Vec<ProcessFigures> {
    let mut runs = Vec::new();
    for _ in 0..plan.process_runs {
        let run = measure(plan.idle, plan.process_burst).await;
        println!("  agent's own peak RSS: {:.1} MB", run.own_peak_mb());
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

fn spawn(
    side: &Side,
    dir: &tempfile::TempDir,
) -> (Child, ChildStdin, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe().expect("current exe");
    let data = dir.path().display().to_string();
    let mut child = Command::new(exe)
        .env(CHILD_ENV, "1")
        .envs(env::settings(
            &side.url(),
            side.keys.service_role_jwt(),
            &data,
            None,
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child agent");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (child, stdin, stdout)
}

fn read_line(out: &mut BufReader<std::process::ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).expect("child output");
    line.trim().to_owned()
}

/// Idle for `idle`, then a forward burst of `burst` changes.
pub async fn measure(idle: Duration, burst: usize) -> ProcessFigures {
    let side = Side::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, mut stdin, mut out) = spawn(&side, &dir);
    let pid = child.id();
    let ready = tokio::task::block_in_place(|| read_line(&mut out));
    let base = ready
        .strip_prefix("ready ")
        .expect("child ready line")
        .to_owned();
    // Let start-up (catch-up, schema reads) finish before the idle window opens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks = || crate::cpu::process_ticks(&pid.to_string());
    let (t0, s0) = (ticks(), switches(pid));
    tokio::time::sleep(idle).await;
    let (t1, s1) = (ticks(), switches(pid));
    let rss_idle_kb = status_kb(pid, "VmRSS");
    writeln!(stdin, "burst {burst}").expect("command");
    assert_eq!(
        tokio::task::block_in_place(|| read_line(&mut out)),
        "written"
    );
    // The double's rows are SQL Server's memory, not the agent's: the peak is read from here
    // on (writing 5 to clear_refs resets VmHWM, Linux 4.0+).
    let rss_loaded_kb = status_kb(pid, "VmRSS");
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        eprintln!("cannot reset the child's peak RSS ({e}): the peak includes loading");
    }
    let workload = workload::burst(burst);
    let batches = workload
        .changes
        .iter()
        .filter(|c| c.table == 3 && c.row.is_some())
        .count() as i64;
    let started = Instant::now();
    env::notify(&reqwest::Client::new(), &base).await;
    while side.count("aligner_batches").await < batches {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "child never synced its burst"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let burst_took = started.elapsed();
    let rss_peak_kb = status_kb(pid, "VmHWM");
    drop(stdin);
    let _ = child.wait();
    ProcessFigures {
        idle_window: idle,
        idle_ticks: t1.saturating_sub(t0),
        // A thread that exits in the window takes its count with it: never below zero.
        idle_switches: s1.saturating_sub(s0),
        rss_idle_kb,
        rss_loaded_kb,
        rss_peak_kb,
        burst,
        burst_took,
    }
}
