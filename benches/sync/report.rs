//! The run's figures as one markdown table, each forward figure beside the ceiling and the
//! old pattern measured in the same run.

use std::fmt::Write;
use std::time::Duration;

use crate::forward::Rate;
use crate::mssql::{self, MssqlFigures};
use crate::process::ProcessFigures;
use crate::reverse::Ingest;
use crate::Plan;

#[derive(Default)]
pub struct Figures {
    /// Per `SYNC_BATCH_SIZE`, in the plan's order (the default first).
    pub agent: Vec<(usize, [Option<Rate>; 2])>,
    pub ceiling: [Option<(Rate, (usize, usize))>; 2],
    /// The ceiling's best configuration again, its rows carrying the row version column.
    pub ceiling_versioned: [Option<Rate>; 2],
    pub old: [Option<Rate>; 2],
    /// Sorted.
    pub notify: [Vec<Duration>; 2],
    pub ingest: Option<Ingest>,
    /// Sorted.
    pub applied: Vec<Duration>,
    /// One per fresh agent process.
    pub process: Vec<ProcessFigures>,
    /// Against a real SQL Server; `None` when `MSSQL_TEST_URL` is unset.
    pub mssql: Option<MssqlFigures>,
}

impl Figures {
    /// The agent's figures at `batch`, made on first use.
    pub fn agent_rate(&mut self, batch: usize) -> &mut [Option<Rate>; 2] {
        let at = match self.agent.iter().position(|(b, _)| *b == batch) {
            Some(at) => at,
            None => {
                self.agent.push((batch, [None, None]));
                self.agent.len() - 1
            }
        };
        &mut self.agent[at].1
    }

    /// The agent at the default batch size: what a clinic gets.
    fn default_agent(&self) -> [Option<Rate>; 2] {
        self.agent
            .iter()
            .find(|(b, _)| *b == crate::DEFAULT_BATCH)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    }
}

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn rate(r: &Option<Rate>, unit: &str) -> String {
    match r {
        Some(r) if r.complete => format!("{:.0} {unit}/s", r.per_sec()),
        Some(r) => format!(
            "{:.0} {unit}/s (cut at {} of them, {:.0} s)",
            r.per_sec(),
            r.n,
            r.took.as_secs_f64()
        ),
        None => "—".to_owned(),
    }
}

fn cpu(r: Option<&Rate>) -> String {
    match r.and_then(|r| r.cpu) {
        Some(c) => format!(
            "{:.0} + {:.0} µs ({:.0} % busy)",
            c.own_us,
            c.rest_us,
            c.busy * 100.0
        ),
        None => "—".to_owned(),
    }
}

fn ratio(a: &Option<Rate>, b: Option<&Rate>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a.per_sec() / b.per_sec()),
        _ => "—".to_owned(),
    }
}

pub fn markdown(plan: &Plan, f: &Figures) -> String {
    let mut s = String::new();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "## syncbridge benchmark ({}; {cores} cores; `cargo bench --bench sync`{})\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if plan.quick { ", BENCH_QUICK=1" } else { "" }
    );
    let _ = writeln!(s, "| what | 0 ms round trip | 50 ms round trip |");
    let _ = writeln!(s, "|---|---|---|");
    let row = |s: &mut String, what: &str, a: String, b: String| {
        let _ = writeln!(s, "| {what} | {a} | {b} |");
    };
    let burst = plan.burst;
    for (batch, rates) in &f.agent {
        let default = if *batch == crate::DEFAULT_BATCH {
            " (the default)"
        } else {
            ""
        };
        row(
            &mut s,
            &format!(
                "forward, agent over the SQL Server double, {burst} changes, batch {batch}{default}"
            ),
            rate(&rates[0], "changes"),
            rate(&rates[1], "changes"),
        );
    }
    mssql_rows(&mut s, f.mssql.as_ref());
    let agent = f.default_agent();
    let ceiling = |i: usize| match &f.ceiling[i] {
        Some((r, (b, p))) => format!("{:.0} rows/s (batch {b}, {p} in flight)", r.per_sec()),
        None => "—".to_owned(),
    };
    row(
        &mut s,
        "ceiling: the same rows straight to the REST server",
        ceiling(0),
        ceiling(1),
    );
    row(
        &mut s,
        "the ceiling's best configuration, its rows carrying the row version (synced_at) as the agent's do",
        rate(&f.ceiling_versioned[0], "rows"),
        rate(&f.ceiling_versioned[1], "rows"),
    );
    row(
        &mut s,
        "old pattern: one upsert per item, sequential, batches of 50",
        rate(&f.old[0], "changes"),
        rate(&f.old[1], "changes"),
    );
    let c = |i: usize| f.ceiling[i].as_ref().map(|(r, _)| r);
    row(
        &mut s,
        "CPU per change, agent (default batch): this process (agent, double, REST server) + the rest of the machine (PostgreSQL); cores busy",
        cpu(agent[0].as_ref()),
        cpu(agent[1].as_ref()),
    );
    row(
        &mut s,
        "CPU per row, ceiling: this process (REST server) + the rest of the machine (PostgreSQL); cores busy",
        cpu(c(0)),
        cpu(c(1)),
    );
    row(
        &mut s,
        "CPU per row, ceiling with the row version",
        cpu(f.ceiling_versioned[0].as_ref()),
        cpu(f.ceiling_versioned[1].as_ref()),
    );
    row(
        &mut s,
        "agent (default batch) ÷ ceiling (target ≥ 0.8)",
        ratio(&agent[0], c(0)),
        ratio(&agent[1], c(1)),
    );
    row(
        &mut s,
        "agent (default batch) ÷ old pattern (target ≥ 500 at 50 ms)",
        ratio(&agent[0], f.old[0].as_ref()),
        ratio(&agent[1], f.old[1].as_ref()),
    );
    let lat = |v: &[Duration]| {
        format!(
            "p50 {}, p99 {} ({} samples)",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.99)),
            v.len()
        )
    };
    row(
        &mut s,
        "notify → visible, light load (target p99 ≤ rtt + 50 ms)",
        lat(&f.notify[0]),
        lat(&f.notify[1]),
    );
    if let Some(i) = &f.ingest {
        let per_sec = i.accepted as f64 / i.took.as_secs_f64();
        row(
            &mut s,
            &format!(
                "webhooks accepted, fsync'd inbox, {} concurrent clients (target ≥ 5,000/s)",
                plan.webhook_clients
            ),
            format!("{per_sec:.0}/s ({} webhooks)", i.accepted),
            "—".to_owned(),
        );
        row(
            &mut s,
            "accept latency under that load (target p99 ≤ 10 ms)",
            format!(
                "p50 {}, p99 {}",
                ms(pct(&i.accept, 0.5)),
                ms(pct(&i.accept, 0.99))
            ),
            "—".to_owned(),
        );
        row(
            &mut s,
            "those webhooks: first POST → all applied in SQL Server (double)",
            format!(
                "{} ({:.0}/s)",
                ms(i.all_applied),
                i.accepted as f64 / i.all_applied.as_secs_f64()
            ),
            "—".to_owned(),
        );
    }
    row(
        &mut s,
        "webhook → applied, light load",
        lat(&f.applied),
        "—".to_owned(),
    );
    if let Some(first) = f.process.first() {
        let each = |show: &dyn Fn(&ProcessFigures) -> String| {
            f.process.iter().map(show).collect::<Vec<_>>().join("; ")
        };
        row(
            &mut s,
            &format!(
                "idle {} s, the binary (`syncbridge run` over the out-of-process double): CPU ticks, wake-ups (context switches), per run",
                first.idle_window.as_secs()
            ),
            each(&|p| format!("{} ticks, {} switches", p.idle_ticks, p.idle_switches)),
            "—".to_owned(),
        );
        row(
            &mut s,
            &format!("the binary's RSS idle / peak while draining a {}-change burst, per run (target ≤ 20 / 64 MB)", first.burst),
            each(&|p| {
                format!(
                    "{:.1} / {:.1} MB (burst {:.1} s)",
                    p.rss_idle_kb as f64 / 1024.0,
                    p.peak_mb(),
                    p.burst_took.as_secs_f64()
                )
            }),
            "—".to_owned(),
        );
        let worst = f
            .process
            .iter()
            .map(ProcessFigures::peak_mb)
            .fold(0.0, f64::max);
        row(
            &mut s,
            "the binary's peak RSS, the highest of the runs (target ≤ 64 MB)",
            format!("{worst:.1} MB"),
            "—".to_owned(),
        );
    }
    let _ = writeln!(s, "\nThe burst: families of patient → work → aligner set → aligner batch; 70 % inserts, 20 % updates, 10 % deletes, \
        every change a distinct record; the sample map as shipped (aligner batches and notes take the versioned push, `rpc/syncbridge_push`), \
        every row carrying its row version (`synced_at`). The real SQL Server rows need `MSSQL_TEST_URL` (not run when unset): \
        a burst of {} changes (inserts and updates of the same families) written by set-based T-SQL and queued by the change triggers, \
        in a fresh database of its own per run.", mssql::CHANGES);
    s
}

/// The real SQL Server's rows (`mssql`), or the same rows saying why they were not run.
fn mssql_rows(s: &mut String, m: Option<&MssqlFigures>) {
    const UNSET: &str = "not run: MSSQL_TEST_URL unset";
    let n = mssql::CHANGES;
    for batch in mssql::BATCHES {
        let default = if batch == crate::DEFAULT_BATCH {
            " (the default)"
        } else {
            ""
        };
        let (a, b) = match m {
            None => (UNSET.to_owned(), UNSET.to_owned()),
            Some(m) => {
                let rates = m
                    .agent
                    .iter()
                    .find(|(b, _)| *b == batch)
                    .map(|(_, r)| *r)
                    .unwrap_or_default();
                (rate(&rates[0], "changes"), rate(&rates[1], "changes"))
            }
        };
        let _ = writeln!(
            s,
            "| forward, agent with the tiberius store over a real SQL Server, {n} changes, batch {batch}{default} | {a} | {b} |"
        );
    }
    for batch in mssql::BATCHES {
        let a = match m {
            None => UNSET.to_owned(),
            Some(m) => rate(
                &m.sql_alone
                    .iter()
                    .find(|(b, _)| *b == batch)
                    .map(|(_, r)| *r),
                "changes",
            ),
        };
        let _ = writeln!(
            s,
            "| SQL side alone on that server: claim → load rows → settle, {n} changes, batch {batch}, no Supabase | {a} | — |"
        );
    }
    let a = match m {
        None => UNSET.to_owned(),
        Some(m) => rate(&m.clinic_write, "changes"),
    };
    let _ = writeln!(
        s,
        "| the clinic's set-based writes of that burst, the change triggers queueing them | {a} | — |"
    );
}
