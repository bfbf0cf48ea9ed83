//! Catch-up: fetches, through PostgREST, the rows of reverse-synced tables changed since the
//! stored watermark, in keyset pages ordered by (version, key), and stores them in the inbox
//! like webhook events. It covers what webhooks cannot: edits made while the agent was down
//! and deliveries pg_net dropped. Runs at start-up and on `POST /api/sync/trigger`
//! (`postgres-to-sql`); never on a timer.

use chrono::{DateTime, Duration as ChronoDuration};
use serde::Serialize;
use serde_json::Value;

use super::event::{parse_version, record_key, EventSource, NewEvent};
use super::inbox::{Inbox, InboxError, Watermark};
use crate::mapping::{ResolvedMap, ResolvedTable};
use crate::supabase::{PageRequest, PostgrestError, Since, SupabaseApi};

/// Rows per page (PostgREST's own default cap on Supabase is 1,000).
pub const PAGE: usize = 1000;

/// Re-read this much before the watermark: a transaction that wrote a row earlier but committed
/// after a later one would otherwise be skipped. Duplicates are harmless (versions dedupe).
pub const OVERLAP: ChronoDuration = ChronoDuration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum CatchupError {
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
pub struct CatchupReport {
    pub tables: u64,
    pub pages: u64,
    pub rows_fetched: u64,
    pub events_stored: u64,
    /// Rows that cannot be decoded for SQL Server (logged, skipped).
    pub rows_rejected: u64,
}

pub async fn run(
    supabase: &dyn SupabaseApi,
    map: &ResolvedMap,
    inbox: &Inbox,
) -> Result<CatchupReport, CatchupError> {
    let mut report = CatchupReport::default();
    let watermarks = inbox.watermarks().await?;
    for table in map.tables.iter().filter(|t| t.spec.reverse.is_some()) {
        report.tables += 1;
        let start = watermarks
            .iter()
            .find(|(t, _)| t == &table.target)
            .map(|(_, w)| w.clone());
        catch_up_table(supabase, table, inbox, start, &mut report).await?;
    }
    tracing::info!(?report, "catch-up finished");
    Ok(report)
}

async fn catch_up_table(
    supabase: &dyn SupabaseApi,
    table: &ResolvedTable,
    inbox: &Inbox,
    start: Option<Watermark>,
    report: &mut CatchupReport,
) -> Result<(), CatchupError> {
    let Some(reverse) = table.spec.reverse.as_ref() else {
        return Ok(());
    };
    let version_col = reverse.version_column.clone();
    let mut order = vec![version_col.clone()];
    order.extend(table.on_conflict());
    let since = start
        .as_ref()
        .and_then(|w| DateTime::parse_from_rfc3339(&w.version).ok())
        .map(|t| Since {
            column: version_col.clone(),
            at: t - OVERLAP,
        });
    let mut page = PageRequest {
        order,
        after: Vec::new(),
        since,
        limit: PAGE,
    };
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
        page.after = page
            .order
            .iter()
            .map(|c| (c.clone(), last.get(c).cloned().unwrap_or(Value::Null)))
            .collect();
        let full_page = rows.len() == PAGE;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let (Some(key), Ok(_)) = (record_key(table, &row), table.decode_record(&row)) else {
                tracing::warn!(table = %table.target, "catch-up row cannot be applied to SQL Server; skipped");
                report.rows_rejected += 1;
                continue;
            };
            events.push(NewEvent {
                source: EventSource::Catchup,
                table: table.target.clone(),
                op: "UPSERT".to_owned(),
                record_key: key,
                version: row.get(&version_col).and_then(parse_version),
                record: Some(row),
                old_record: None,
            });
        }
        report.events_stored += events.len() as u64;
        let watermark = Watermark {
            version: last_text(&page.after, 0),
            key: serde_json::to_string(&page.after[1..]).unwrap_or_default(),
        };
        inbox
            .append(events, Some((table.target.clone(), watermark)))
            .await?;
        if !full_page {
            break;
        }
    }
    Ok(())
}

fn last_text(after: &[(String, Value)], i: usize) -> String {
    match after.get(i).map(|(_, v)| v) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<CatchupReport, String>>;

/// Asks the catch-up task for a run.
#[derive(Clone)]
pub struct CatchupHandle {
    requests: tokio::sync::mpsc::Sender<Reply>,
}

impl CatchupHandle {
    /// Runs a catch-up now (after any run in progress) and returns its report.
    pub async fn run_now(&self) -> Option<Result<CatchupReport, String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests.send(tx).await.ok()?;
        rx.await.ok()
    }
}

/// What the catch-up task needs.
pub struct Catchup {
    pub supabase: std::sync::Arc<dyn SupabaseApi>,
    pub map: std::sync::Arc<ResolvedMap>,
    pub inbox: Inbox,
    pub status: std::sync::Arc<crate::status::Status>,
    pub applier: super::ApplierHandle,
    pub backoff: crate::retry::Backoff,
}

impl Catchup {
    /// Starts the task: one run at start-up (retried with backoff until it succeeds once), then
    /// one per request.
    pub fn spawn(
        self,
        cancel: tokio_util::sync::CancellationToken,
    ) -> (CatchupHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        (
            CatchupHandle { requests: tx },
            tokio::spawn(self.serve(rx, cancel)),
        )
    }

    async fn once(&self) -> Result<CatchupReport, String> {
        let result = run(self.supabase.as_ref(), &self.map, &self.inbox)
            .await
            .map_err(|e| e.to_string());
        let mut r = self.status.reverse();
        r.catchup_last_run_at = Some(chrono::Utc::now());
        r.catchup_last_error = result.as_ref().err().cloned();
        drop(r);
        match &result {
            Ok(report) if report.events_stored > 0 => self.applier.wake(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "catch-up failed"),
        }
        result
    }

    async fn serve(
        self,
        mut requests: tokio::sync::mpsc::Receiver<Reply>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
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
