//! The one handle the HTTP layer calls: each method is one endpoint's work (notify, trigger,
//! webhook, status), answered with a typed outcome the handler maps to a status code. Before
//! the table map is resolved only what needs no map works (notifications are counted, the
//! status answers); the rest answers [`NotReady`] with the start-up problem.

use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::forward::{DrainReport, ForwardCounters, ForwardHandle};
use crate::mapping::DriftLog;
use crate::reverse::{
    Inbox, RecoveryReport, ReverseCounters, ReverseHandle, WebhookAnswer, WebhookError,
    WebhookPayload,
};
use crate::sqlserver::SqlStore;
use crate::telemetry::Telemetry;

/// What exists once the table map is resolved against SQL Server.
pub(crate) struct Ready {
    pub(crate) forward: ForwardHandle,
    pub(crate) reverse: ReverseHandle,
}

#[derive(Clone)]
pub(crate) struct AgentHandle {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) started_at: DateTime<Utc>,
    pub(super) store: Arc<dyn SqlStore>,
    pub(super) inbox: Inbox,
    pub(super) forward_counters: Arc<ForwardCounters>,
    pub(super) reverse_counters: Arc<ReverseCounters>,
    pub(super) telemetry: Telemetry,
    /// Columns on one side only, as reported so far.
    pub(super) drift: Arc<DriftLog>,
    /// Why the agent is not ready yet (SQL Server unreachable, the map does not match).
    pub(super) startup_problem: Mutex<Option<String>>,
    pub(super) ready: OnceLock<Ready>,
}

/// The agent cannot do this before its table map is resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the agent is not ready: {0}")]
pub(crate) struct NotReady(pub(crate) String);

/// Which directions a manual trigger runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    SqlToPostgres,
    PostgresToSql,
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown direction {0:?}: use sql-to-postgres, postgres-to-sql or both")]
pub(crate) struct UnknownDirection(pub(crate) String);

impl FromStr for Direction {
    type Err = UnknownDirection;

    fn from_str(s: &str) -> Result<Self, UnknownDirection> {
        match s {
            "sql-to-postgres" => Ok(Self::SqlToPostgres),
            "postgres-to-sql" => Ok(Self::PostgresToSql),
            "both" => Ok(Self::Both),
            other => Err(UnknownDirection(other.to_owned())),
        }
    }
}

/// What a manual trigger did, per direction asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct TriggerReport {
    /// The drain's report (`null` when the worker has stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sql_to_postgres: Option<Option<DrainReport>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) postgres_to_sql: Option<Recovery>,
}

/// A recovery's report, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum Recovery {
    Done(RecoveryReport),
    Failed { error: String },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentWebhookError {
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    Reverse(#[from] WebhookError),
}

impl AgentHandle {
    /// The handle over `store` and `inbox`, which should be timed into `telemetry`
    /// (`agent::timed`) for `GET /metrics` to show their latencies.
    pub(crate) fn new(store: Arc<dyn SqlStore>, inbox: Inbox, telemetry: Telemetry) -> Self {
        Self {
            shared: Arc::new(Shared {
                started_at: Utc::now(),
                store,
                inbox,
                forward_counters: Arc::default(),
                reverse_counters: Arc::default(),
                telemetry,
                drift: Arc::default(),
                startup_problem: Mutex::new(None),
                ready: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn forward_counters(&self) -> Arc<ForwardCounters> {
        self.shared.forward_counters.clone()
    }

    pub(crate) fn reverse_counters(&self) -> Arc<ReverseCounters> {
        self.shared.reverse_counters.clone()
    }

    /// Where both data paths report columns that exist on one side only.
    pub(crate) fn drift_log(&self) -> Arc<DriftLog> {
        self.shared.drift.clone()
    }

    pub(crate) fn set_startup_problem(&self, problem: Option<String>) {
        *self.shared.lock_problem() = problem;
    }

    /// Marks the agent ready. Only start-up calls this, once.
    pub(crate) fn set_ready(&self, ready: Ready) {
        // `set` fails only if already set, which cannot happen: start-up is the only writer.
        let _ = self.shared.ready.set(ready);
    }

    fn ready(&self) -> Result<&Ready, NotReady> {
        self.shared.ready.get().ok_or_else(|| {
            let why = self.shared.lock_problem().clone();
            NotReady(why.unwrap_or_else(|| "starting".to_owned()))
        })
    }

    /// `sp_NotifyAppOfSync`'s notification: counted, and the forward worker woken. Before the
    /// map is resolved the start-up drain will pick the items up anyway.
    pub(crate) fn notify(&self) {
        self.shared.forward_counters.notified();
        // Debug: SQL Server notifies on every clinic write; a line each would grow the log with them.
        tracing::debug!("Received queue notification from SQL Server");
        if let Ok(ready) = self.ready() {
            ready.forward.notify();
        }
    }

    /// Drains the queue now and/or recovers the reverse side, answering what was done.
    pub(crate) async fn trigger(&self, direction: Direction) -> Result<TriggerReport, NotReady> {
        let ready = self.ready()?;
        tracing::info!(?direction, "manual sync trigger");
        let mut report = TriggerReport::default();
        if matches!(direction, Direction::SqlToPostgres | Direction::Both) {
            report.sql_to_postgres = Some(ready.forward.drain_now().await);
        }
        if matches!(direction, Direction::PostgresToSql | Direction::Both) {
            report.postgres_to_sql = Some(match ready.reverse.recover_now().await {
                Ok(done) => Recovery::Done(done),
                Err(e) => Recovery::Failed {
                    error: e.to_string(),
                },
            });
        }
        Ok(report)
    }

    /// A decoded webhook: handed to the reverse side once the agent is ready.
    pub(crate) async fn accept_webhook(
        &self,
        payload: WebhookPayload,
    ) -> Result<WebhookAnswer, AgentWebhookError> {
        Ok(self.ready()?.reverse.accept_webhook(payload).await?)
    }

    /// A webhook refused before it was decoded (authentication, content type, JSON).
    pub(crate) fn webhook_refused(&self) {
        self.shared
            .reverse_counters
            .record_webhook(crate::reverse::counters::WebhookVerdict::Rejected);
    }
}

impl Shared {
    pub(super) fn lock_problem(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The text stays meaningful even if a panicking thread held the lock.
        self.startup_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
