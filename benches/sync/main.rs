//! The benchmark harness: `cargo bench --bench sync` (needs the test PostgreSQL:
//! `eval "$(scripts/pg-test-env.sh)"`; `BENCH_QUICK=1` for a small run). One run measures, on
//! this machine, and prints a table (also written to `target/bench-report.md`):
//! - forward: a burst of changes over four tables drained by the agent over the SQL Server
//!   double, at 0 ms and at a 50 ms round trip to the REST server (`forward`, `workload`);
//!   beside it the ceiling (the same rows sent straight to the REST server, best batch size
//!   and concurrency) and the old processor's pattern (one upsert per item, sequentially);
//! - notify → visible in Supabase at light load, p50 and p99;
//! - reverse: webhooks accepted per second from concurrent clients (fsync'd inbox), accept
//!   latency, webhook → applied (`reverse`);
//! - idle CPU ticks, wake-ups (context switches) and RSS of the real binary over the SQL Server
//!   double served from here, and its peak RSS under a burst (`process`);
//! - with `MSSQL_TEST_URL` set (an ADO connection string to SQL Server 2017+), forward against
//!   a real SQL Server: the agent with the tiberius store draining a 6,000-change burst the
//!   clinic wrote with set-based T-SQL (its triggers queueing it), at both round trips and
//!   batch sizes 1000 and 50, and the SQL side alone (claim → load rows → settle, no
//!   Supabase), each in a fresh database dropped afterwards (`mssql`). Unset: not run, no
//!   connection attempted, and the report says so.
//!
//! `BENCH_PIPELINE_DEPTH=n` runs the agent with `SYNC_PIPELINE_DEPTH=n` instead of the default;
//! `BENCH_BURST=n` sets the forward burst's size. For experiments: `BENCH_BATCHES=1000,50`
//! picks the agent's batch sizes over the double, `BENCH_ROUND_TRIPS=50` one of the two round
//! trips (the real server's runs too), `BENCH_PROCESS_ONLY=1` runs only the idle and peak-RSS
//! figures of the agent's own process, `BENCH_FORWARD_ONLY=1` skips the reverse and process
//! measurements (not the real server's, which are forward), and `BENCH_AGENT_ONLY=1` leaves
//! out the forward runs other than the agent's (ceiling, old pattern, light load), so that a
//! profiler sees the agent alone.
//!
//! Figures are wall clock on a shared machine: compare rows of one run, not runs.

mod cpu;
mod env;
#[allow(dead_code)]
#[path = "../../tests/common/fixtures.rs"]
mod fixtures;
mod forward;
mod mssql;
mod process;
mod report;
mod reverse;
mod workload;

use std::time::Duration;

/// Sizes of one run.
pub struct Plan {
    pub quick: bool,
    pub burst: usize,
    pub agent_deadline: Duration,
    /// `SYNC_BATCH_SIZE` values the agent drains the burst with (the default first).
    pub agent_batches: Vec<usize>,
    pub old_deadline: Duration,
    pub ceiling_configs: Vec<(usize, usize)>,
    pub notify_samples: [usize; 2],
    pub webhooks: usize,
    pub webhook_clients: usize,
    pub applied_samples: usize,
    pub idle: Duration,
    pub process_burst: usize,
    /// Fresh agent processes measured, one after another: peak RSS varies run to run.
    pub process_runs: usize,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1") {
            return Plan {
                quick: true,
                burst: 2_000,
                agent_deadline: Duration::from_secs(60),
                agent_batches: vec![DEFAULT_BATCH, 50],
                old_deadline: Duration::from_secs(3),
                ceiling_configs: vec![(500, 4)],
                notify_samples: [10, 10],
                webhooks: 300,
                webhook_clients: 16,
                applied_samples: 10,
                idle: Duration::from_secs(2),
                process_burst: 1_000,
                process_runs: 1,
            };
        }
        Plan {
            quick: false,
            burst: std::env::var("BENCH_BURST")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(100_000),
            agent_deadline: Duration::from_secs(90),
            agent_batches: list_env("BENCH_BATCHES")
                .unwrap_or_else(|| vec![DEFAULT_BATCH, 50, 500]),
            old_deadline: Duration::from_secs(20),
            ceiling_configs: vec![(500, 4), (1000, 4), (1000, 8), (2000, 8)],
            notify_samples: [100, 50],
            webhooks: 5_000,
            webhook_clients: 32,
            applied_samples: 50,
            idle: Duration::from_secs(20),
            process_burst: 20_000,
            process_runs: 3,
        }
    }
}

/// The agent's default `SYNC_BATCH_SIZE` (README, `.env.example`).
pub const DEFAULT_BATCH: usize = 1000;

pub const ROUND_TRIPS: [Duration; 2] = [Duration::ZERO, Duration::from_millis(50)];

/// A comma-separated list of numbers from the environment, if set.
fn list_env(name: &str) -> Option<Vec<usize>> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` only checks that the harness builds
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let plan = Plan::from_env();
    let figures = runtime.block_on(run(&plan));
    let table = report::markdown(&plan, &figures);
    println!("\n{table}");
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_owned());
    let path = std::path::Path::new(&target).join("bench-report.md");
    match std::fs::write(&path, &table) {
        Ok(()) => println!("written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

async fn run(plan: &Plan) -> report::Figures {
    let burst = workload::burst(plan.burst);
    let mut f = report::Figures::default();
    if std::env::var("BENCH_PROCESS_ONLY").is_ok_and(|v| v == "1") {
        f.process = process::measure_runs(plan).await;
        return f;
    }
    let round_trips = list_env("BENCH_ROUND_TRIPS");
    let selected = |rtt: Duration| {
        round_trips
            .as_ref()
            .is_none_or(|only| only.contains(&(rtt.as_millis() as usize)))
    };
    for (i, rtt) in ROUND_TRIPS.into_iter().enumerate() {
        if !selected(rtt) {
            continue;
        }
        println!("round trip {} ms", rtt.as_millis());
        for &batch in &plan.agent_batches {
            let rate = forward::agent_burst(&burst, rtt, Some(batch), plan.agent_deadline).await;
            println!("  agent, batch {batch}: {rate:?}");
            f.agent_rate(batch)[i] = Some(rate);
        }
        if std::env::var("BENCH_AGENT_ONLY").is_ok_and(|v| v == "1") {
            continue; // the report's other rows for this round trip stay empty
        }
        let (best, config) = forward::ceiling(&burst, rtt, &plan.ceiling_configs).await;
        f.ceiling[i] = Some((best, config));
        let versioned = forward::ceiling_run(&burst, rtt, config, forward::Rows::Versioned).await;
        println!("    ceiling with the row version, {config:?}: {versioned:?}");
        f.ceiling_versioned[i] = Some(versioned);
        f.old[i] = Some(forward::old_pattern(&burst, rtt, plan.old_deadline).await);
        println!("  old pattern: {:?}", f.old[i]);
        f.notify[i] = forward::notify_latency(rtt, plan.notify_samples[i]).await;
    }
    // Only with a real server named: otherwise nothing below connects anywhere.
    if mssql::configured() {
        println!("real SQL Server (MSSQL_TEST_URL)");
        f.mssql = Some(mssql::measure(plan, selected).await);
    }
    if std::env::var("BENCH_FORWARD_ONLY").is_ok_and(|v| v == "1") {
        return f;
    }
    println!("reverse");
    f.ingest = Some(reverse::ingest(plan.webhooks, plan.webhook_clients).await);
    f.applied = reverse::applied_latency(plan.applied_samples).await;
    println!("process");
    f.process = process::measure_runs(plan).await;
    f
}
