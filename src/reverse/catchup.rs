//! Catch-up: fetches, through Supabase's API, the rows of reverse-synced tables changed since
//! the stored watermark, in keyset pages ordered by (version, key), and stores them in the
//! inbox through intake like webhook events. It covers what webhooks cannot: edits made while
//! the agent was down and deliveries pg_net dropped. Runs at start-up and when recovery is
//! asked for (`POST /api/sync/trigger`, `postgres-to-sql`); never on a timer.

use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::applier::ApplierHandle;
use super::counters::ReverseCounters;
use super::inbox::{Inbox, InboxError, Watermark};
use super::intake::{self, Intake};
use crate::mapping::{DriftLog, ResolvedMap, ResolvedTable};
use crate::retry::Backoff;
use crate::supabase::{PageRequest, PostgrestError, Since, SupabaseApi};

/// Rows per page (PostgREST's own default cap on Supabase is 1,000).
pub(crate) const PAGE: usize = 1000;

/// Re-read this much before the watermark: a transaction that wrote a row earlier but committed
/// after a later one would otherwise be skipped. Duplicates are harmless (versions dedupe).
pub(crate) const OVERLAP: ChronoDuration = ChronoDuration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatchupError {
    #[error("catch-up of {table}: {source}")]
    Postgrest {
        table: String,
        #[source]
        source: PostgrestError,
    },
    #[error(transparent)]
    Inbox(#[from] InboxError),
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct CatchupReport {
    pub(crate) tables: u64,
    pub(crate) pages: u64,
    pub(crate) rows_fetched: u64,
    pub(crate) events_stored: u64,
    /// Rows that cannot be decoded for SQL Server (logged, read again by the next run: the
    /// watermark never passes them).
    pub(crate) rows_rejected: u64,
}

/// One catch-up of every reverse-synced table, `page` rows per request; columns the map does
/// not know are reported to `drift` and ignored.
pub(crate) async fn run(
    supabase: &dyn SupabaseApi,
    map: &ResolvedMap,
    inbox: &Inbox,
    drift: &DriftLog,
    page: usize,
) -> Result<CatchupReport, CatchupError> {
    let mut report = CatchupReport::default();
    let watermarks = inbox.watermarks().await?;
    for table in map.tables.iter().filter(|t| t.spec.reverse.is_some()) {
        report.tables += 1;
        let start = watermarks
            .iter()
            .find(|(t, _)| t == &table.target)
            .map(|(_, w)| w);
        catch_up_table(supabase, table, inbox, drift, start, page, &mut report).await?;
    }
    tracing::info!(?report, "catch-up finished");
    Ok(report)
}

/// The first page of `table` after `start`: everything, or what changed since the watermark
/// less the overlap.
fn first_page(table: &ResolvedTable, start: Option<&Watermark>, limit: usize) -> PageRequest {
    let version_column = table
        .spec
        .reverse
        .as_ref()
        .map(|r| r.version_column.clone())
        .unwrap_or_default();
    let since = start
        .and_then(|w| DateTime::parse_from_rfc3339(&w.version).ok())
        .map(|t| Since {
            column: version_column.clone(),
            at: t - OVERLAP,
        });
    let mut order = vec![version_column];
    order.extend(table.on_conflict());
    PageRequest {
        order,
        after: Vec::new(),
        since,
        limit,
    }
}

async fn catch_up_table(
    supabase: &dyn SupabaseApi,
    table: &ResolvedTable,
    inbox: &Inbox,
    drift: &DriftLog,
    start: Option<&Watermark>,
    limit: usize,
    report: &mut CatchupReport,
) -> Result<(), CatchupError> {
    let mut page = first_page(table, start, limit);
    // Once a row cannot be applied the watermark stays before it, so the next catch-up reads
    // it again (after the map or the row is fixed); the rows after it are still stored.
    let mut held = false;
    loop {
        let rows = supabase
            .select_page(&table.target, &page)
            .await
            .map_err(|source| CatchupError::Postgrest {
                table: table.target.clone(),
                source,
            })?;
        report.pages += 1;
        report.rows_fetched += rows.len() as u64;
        let Some(last) = rows.last() else { break };
        page.after = position(&page.order, last);
        let full_page = rows.len() == limit;
        let mut events = Vec::with_capacity(rows.len());
        let mut mark = None;
        for row in rows {
            let at = position(&page.order, &row);
            drift.report(&table.unknown_columns(&row).collect::<Vec<_>>());
            match intake::current_row(table, row) {
                Ok(Intake::Accept(event)) => events.push(event),
                // A current row always needs its write; nothing to store otherwise.
                Ok(Intake::Ignore(_)) => {}
                Err(refusal) => {
                    tracing::warn!(table = %table.target, reason = %refusal, "catch-up row cannot be applied to SQL Server; read again next time");
                    report.rows_rejected += 1;
                    held = true;
                }
            }
            if !held {
                mark = Some(at);
            }
        }
        report.events_stored += events.len() as u64;
        let watermark = mark.map(|at| (table.target.clone(), watermark_at(&at)));
        if !events.is_empty() || watermark.is_some() {
            inbox.append(events, watermark).await?;
        }
        if !full_page {
            break;
        }
    }
    Ok(())
}

/// A row's place in the page order: its `(column, value)` for each ordering column.
fn position(order: &[String], row: &Map<String, Value>) -> Vec<(String, Value)> {
    order
        .iter()
        .map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Value::Null)))
        .collect()
}

/// The watermark just after the row at `at` (version first, then the key columns).
fn watermark_at(at: &[(String, Value)]) -> Watermark {
    Watermark {
        version: text(at.first().map(|(_, v)| v)),
        key: serde_json::to_string(at.get(1..).unwrap_or_default()).unwrap_or_default(),
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

type Reply = oneshot::Sender<Result<CatchupReport, CatchupError>>;

/// Asks the catch-up task for a run.
#[derive(Clone)]
pub(crate) struct CatchupHandle {
    requests: mpsc::Sender<Reply>,
}

impl CatchupHandle {
    /// Runs a catch-up now (after any run in progress) and returns its report; `None` when the
    /// task has stopped.
    pub(crate) async fn run_now(&self) -> Option<Result<CatchupReport, CatchupError>> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).await.ok()?;
        rx.await.ok()
    }
}

/// What the catch-up task needs.
pub(crate) struct Catchup {
    pub(crate) supabase: Arc<dyn SupabaseApi>,
    pub(crate) map: Arc<ResolvedMap>,
    pub(crate) inbox: Inbox,
    pub(crate) drift: Arc<DriftLog>,
    pub(crate) counters: Arc<ReverseCounters>,
    pub(crate) applier: ApplierHandle,
    pub(crate) backoff: Backoff,
}

impl Catchup {
    /// Starts the task: one run at start-up (retried with backoff until it succeeds once), then
    /// one per request.
    pub(crate) fn spawn(
        self,
        cancel: CancellationToken,
    ) -> (CatchupHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(8);
        (
            CatchupHandle { requests: tx },
            tokio::spawn(self.serve(rx, cancel)),
        )
    }

    async fn once(&self) -> Result<CatchupReport, CatchupError> {
        let result = run(
            self.supabase.as_ref(),
            &self.map,
            &self.inbox,
            &self.drift,
            PAGE,
        )
        .await;
        self.counters
            .record_catchup(result.as_ref().err().map(ToString::to_string));
        match &result {
            Ok(report) if report.events_stored > 0 => self.applier.wake(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "catch-up failed"),
        }
        result
    }

    async fn serve(self, mut requests: mpsc::Receiver<Reply>, cancel: CancellationToken) {
        let mut failures = 0;
        let mut retry_at = Some(tokio::time::Instant::now());
        loop {
            let reply = tokio::select! {
                _ = cancel.cancelled() => break,
                r = requests.recv() => match r { Some(r) => Some(r), None => break },
                _ = crate::retry::sleep_until(retry_at) => None,
            };
            let result = self.once().await;
            retry_at = match (&result, reply.is_some()) {
                (Ok(_), _) => {
                    failures = 0;
                    None
                }
                // A failed start-up run is retried until one succeeds; a failed manual run is
                // reported to its caller instead.
                (Err(_), false) => {
                    failures += 1;
                    Some(tokio::time::Instant::now() + self.backoff.next(failures, None))
                }
                (Err(_), true) => retry_at,
            };
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
#[path = "catchup_tests.rs"]
mod tests;
