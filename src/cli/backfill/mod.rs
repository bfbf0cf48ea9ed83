//! `syncbridge backfill [--table T]... [--dry-run] [--restart]`: the initial load. The rows SQL
//! Server already has reach Supabase only when they change, so backfill queues every row of
//! each mapped table into `dbo.SyncQueue` — parents before children (the map's order), in key
//! order, one set-based statement per page ([`SqlStore::backfill_page`]) — and the agent's
//! forward worker sends them as it sends any change. It never reads and sends rows itself: the
//! worker loads each record as it is when it sends it, so a clinic edit made during the
//! backfill is never overwritten by an older copy, and a row deleted meanwhile is deleted in
//! Supabase too. After each page the checkpoint (the last key queued) is written durably to
//! the local SQLite file, so an interrupted backfill resumes after the last page it queued; a
//! finished table is remembered (`--restart` queues it again). The running agent is woken
//! after every page (`queue-notify`); with no agent running the items wait for it.
//!
//! Progress is the command's own (a bar on a terminal, log lines otherwise), not a metric of
//! the agent: the agent only sees queue items.

mod progress;

use std::process::ExitCode;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::progress::Progress;
use super::agent_client::{AgentCallError, AgentClient};
use super::mapped::{self, key_columns, MappedError};
use super::EXIT_FAILURE;
use crate::checkpoints::{Checkpoint, Checkpoints};
use crate::local_db::{LocalDb, LocalDbError};
use crate::mapping::ResolvedTable;
use crate::sqlserver::{KeyPage, RecordKey, SqlStore, StoreError};
use crate::Agent;

/// Rows per statement: big enough that 100,000 rows take a hundred short statements, small
/// enough that one statement holds its shared locks on the clinic's table only briefly.
const DEFAULT_PAGE: u32 = 1000;
/// Keys per read when counting rows (key columns only).
const COUNT_PAGE: usize = 10_000;

#[derive(clap::Args, Debug, Clone)]
pub struct BackfillArgs {
    /// Only this table (repeatable): its SQL Server name (tblX, dbo.tblX) or its Supabase name.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Count the rows each table would queue; queue nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Queue the selected tables again from their first row, finished ones too.
    #[arg(long)]
    pub restart: bool,
    /// Rows queued per statement.
    #[arg(long, default_value_t = DEFAULT_PAGE, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub page_size: u32,
}

impl Default for BackfillArgs {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            dry_run: false,
            restart: false,
            page_size: DEFAULT_PAGE,
        }
    }
}

/// Why a backfill stopped before its end.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BackfillError(Fault);

#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error(transparent)]
    Tables(#[from] MappedError),
    #[error("SQL Server: {0}")]
    Store(#[from] StoreError),
    #[error("checkpoint file: {0}")]
    Checkpoint(#[from] LocalDbError),
}

impl From<MappedError> for BackfillError {
    fn from(e: MappedError) -> Self {
        Self(e.into())
    }
}

impl From<StoreError> for BackfillError {
    fn from(e: StoreError) -> Self {
        Self(e.into())
    }
}

impl From<LocalDbError> for BackfillError {
    fn from(e: LocalDbError) -> Self {
        Self(e.into())
    }
}

/// How one table ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    /// Every row is queued.
    Done,
    /// Done by an earlier run; nothing queued (`--restart` to redo).
    AlreadyDone,
    /// Stopped between two pages (Ctrl+C); the next run resumes here.
    Stopped,
    /// `--dry-run`: counted only.
    Counted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The SQL Server table, as the queue names it.
    pub table: String,
    /// Rows the table has (counted at the start).
    pub rows: u64,
    /// Items this run queued.
    pub queued_now: u64,
    /// Items queued for the table since its last restart, this run included.
    pub queued_total: u64,
    pub state: TableState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    pub tables: Vec<TableReport>,
    /// A running agent was told after each page.
    pub agent_woken: bool,
}

/// Counts `table`'s rows by reading its keys in pages (an index-only read).
async fn count(store: &dyn SqlStore, table: &ResolvedTable) -> Result<u64, StoreError> {
    let keys: Vec<_> = table.key_columns().map(|c| c.source.clone()).collect();
    let mut page = KeyPage {
        table: table.source().to_owned(),
        keys: key_columns(table),
        after: None,
        limit: COUNT_PAGE,
    };
    let mut n = 0;
    loop {
        let rows = store.read_page(&page, &keys).await?;
        n += rows.len() as u64;
        if rows.len() < COUNT_PAGE {
            return Ok(n);
        }
        page.after = rows.last().and_then(|r| table.key_of_row(r));
    }
}

/// Wakes the running agent after a page, until it turns out none runs.
struct Waker {
    client: Option<AgentClient>,
    woken: bool,
}

impl Waker {
    async fn wake(&mut self) {
        let Some(client) = &self.client else { return };
        match client
            .post("/api/sync/queue-notify", &json!({"source": "backfill"}))
            .await
        {
            Ok(_) => self.woken = true,
            Err(e @ AgentCallError::NotRunning { .. }) => {
                tracing::info!("{e}: the queued rows are sent when the agent starts");
                self.client = None;
            }
            Err(e) => tracing::warn!(error = %e, "cannot wake the agent"),
        }
    }
}

struct Run<'a> {
    store: &'a dyn SqlStore,
    checkpoints: Checkpoints,
    page_size: usize,
    stop: &'a CancellationToken,
    show: bool,
    waker: Waker,
}

impl Run<'_> {
    /// Queues `table` from its checkpoint on, page by page, until it is done or `stop` fires.
    async fn table(
        &mut self,
        table: &ResolvedTable,
        rows: u64,
    ) -> Result<TableReport, BackfillError> {
        let name = table.source().to_owned();
        let mut point: Checkpoint = self.checkpoints.get(&name).await?;
        point.rows = rows;
        let mut report = TableReport {
            table: name.clone(),
            rows,
            queued_now: 0,
            queued_total: point.enqueued,
            state: TableState::AlreadyDone,
        };
        if point.done {
            return Ok(report);
        }
        let mut progress = Progress::start(&name, rows, point.enqueued, self.show);
        let mut page = KeyPage {
            table: name.clone(),
            keys: key_columns(table),
            // A key this version cannot read back restarts the table: queueing rows twice is
            // harmless, skipping them is not.
            after: point.last.as_deref().and_then(|k| RecordKey::parse(k).ok()),
            limit: self.page_size,
        };
        report.state = loop {
            if self.stop.is_cancelled() {
                break TableState::Stopped;
            }
            let queued = self.store.backfill_page(&page).await?;
            point.enqueued += queued.enqueued;
            report.queued_now += queued.enqueued;
            point.done = queued.last.is_none() || queued.enqueued < page.limit as u64;
            if let Some(last) = &queued.last {
                point.last = Some(last.to_json());
            }
            // The page is in SQL Server; the checkpoint follows it, so a crash in between
            // queues this page again on the next run (harmless: the worker coalesces items of
            // one record and sends each record as it is then), never skips it.
            self.checkpoints.put(&name, &point).await?;
            if queued.enqueued > 0 {
                self.waker.wake().await;
            }
            progress.update(point.enqueued, report.queued_now);
            if point.done {
                break TableState::Done;
            }
            page.after = queued.last;
        };
        report.queued_total = point.enqueued;
        progress.finish(point.enqueued);
        Ok(report)
    }
}

/// Runs the backfill `args` describes; stops between two pages once `stop` fires. `show`
/// turns the progress display on.
pub async fn execute(
    agent: &Agent,
    args: &BackfillArgs,
    stop: &CancellationToken,
    show: bool,
) -> Result<BackfillReport, BackfillError> {
    let store = agent.store.as_ref();
    let map = mapped::resolve(store, &agent.map, None).await?;
    let tables = mapped::select(&map, &args.tables)?;
    let checkpoints = Checkpoints::open(LocalDb::open_for_writing(&agent.config.data_dir)?)?;
    let client = if args.dry_run {
        None
    } else {
        AgentClient::new(&agent.config).ok()
    };
    let mut run = Run {
        store,
        checkpoints,
        page_size: args.page_size as usize,
        stop,
        show,
        waker: Waker {
            client,
            woken: false,
        },
    };
    let mut reports = Vec::new();
    for table in tables {
        if args.restart && !args.dry_run {
            run.checkpoints.clear(table.source()).await?;
        }
        let rows = count(store, table).await?;
        if args.dry_run {
            let point = run.checkpoints.get(table.source()).await?;
            reports.push(TableReport {
                table: table.source().to_owned(),
                rows,
                queued_now: 0,
                queued_total: if args.restart { 0 } else { point.enqueued },
                state: TableState::Counted,
            });
            continue;
        }
        let report = run.table(table, rows).await?;
        let stopped = report.state == TableState::Stopped;
        reports.push(report);
        if stopped {
            break;
        }
    }
    Ok(BackfillReport {
        tables: reports,
        agent_woken: run.waker.woken,
    })
}

/// The report as the command prints it.
pub fn render(report: &BackfillReport, dry_run: bool) -> String {
    let mut out = String::from(if dry_run {
        "syncbridge backfill --dry-run (nothing queued)\n"
    } else {
        "syncbridge backfill\n"
    });
    for t in &report.tables {
        let state = match t.state {
            TableState::Done => format!(
                "done: {} queued now, {} in all",
                t.queued_now, t.queued_total
            ),
            TableState::AlreadyDone => "already done (--restart to queue it again)".to_owned(),
            TableState::Stopped => format!(
                "stopped after {} queued now; run again to resume",
                t.queued_now
            ),
            TableState::Counted if t.queued_total > 0 => {
                format!("would resume after {} already queued", t.queued_total)
            }
            TableState::Counted => "would queue every row".to_owned(),
        };
        out.push_str(&format!("  {:<24} {:>10} rows  {state}\n", t.table, t.rows));
    }
    if !dry_run {
        out.push_str(if report.agent_woken {
            "  (the running agent was woken and sends them now)\n"
        } else {
            "  (no agent answered: the items are sent when it starts)\n"
        });
    }
    out
}

/// `syncbridge backfill`: Ctrl+C stops it between two pages.
pub async fn run(agent: Agent, args: &BackfillArgs) -> ExitCode {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    match execute(&agent, args, &stop, !args.dry_run).await {
        Ok(report) => {
            print!("{}", render(&report, args.dry_run));
            let stopped = report.tables.iter().any(|t| t.state == TableState::Stopped);
            ExitCode::from(if stopped { EXIT_FAILURE } else { 0 })
        }
        Err(e) => {
            eprintln!("syncbridge backfill: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
