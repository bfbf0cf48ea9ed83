//! Retrying what was given up on: `Failed` queue items back to `Pending` (no attempts made, due
//! now) in SQL Server, and dead inbox events back to live in the local inbox. The running agent
//! does it for `POST /api/sync/retry-failed` and wakes its workers at once; `syncbridge
//! retry-failed` does the same with [`retry`] when no agent runs (whose start-up drains the
//! queue and applies the inbox anyway).

use serde::{Deserialize, Serialize};

use super::handle::AgentHandle;
use crate::reverse::Inbox;
use crate::sqlserver::{RetryFilter, SqlStore};

/// What to retry: `None` leaves that side alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryScope {
    /// Failed `SyncQueue` items: of one `TableName`, one `QueueID`, or all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) queue: Option<Selection>,
    /// Dead inbox events: of one Supabase table, one event id, or all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) inbox: Option<Selection>,
}

/// Which items of one side: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Selection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<i64>,
}

impl RetryScope {
    /// Everything, on both sides.
    pub(crate) fn everything() -> Self {
        Self {
            queue: Some(Selection::default()),
            inbox: Some(Selection::default()),
        }
    }
}

/// How many were put back on each side asked for, or why that side could not be done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetryReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) queue_items_reset: Option<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dead_events_revived: Option<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Part {
    Done(u64),
    Failed { error: String },
}

impl Part {
    fn done(&self) -> u64 {
        match self {
            Self::Done(n) => *n,
            Self::Failed { .. } => 0,
        }
    }

    pub(crate) fn is_failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// Does `scope` on `store` and `inbox` (when there is one: no inbox file, no dead events).
/// One side failing does not stop the other.
pub(crate) async fn retry(
    store: &dyn SqlStore,
    inbox: Option<&Inbox>,
    scope: &RetryScope,
) -> RetryReport {
    let mut report = RetryReport::default();
    if let Some(q) = &scope.queue {
        let filter = RetryFilter {
            table: q.table.clone(),
            id: q.id.map(crate::sqlserver::QueueId),
        };
        report.queue_items_reset = Some(match store.retry_failed(&filter).await {
            Ok(n) => Part::Done(n),
            Err(e) => Part::Failed {
                error: e.to_string(),
            },
        });
    }
    if let Some(i) = &scope.inbox {
        let revived = match inbox {
            None => Ok(0),
            Some(inbox) => inbox.revive(i.table.clone(), i.id).await,
        };
        report.dead_events_revived = Some(match revived {
            Ok(n) => Part::Done(n as u64),
            Err(e) => Part::Failed {
                error: e.to_string(),
            },
        });
    }
    report
}

impl AgentHandle {
    /// [`retry`] on the agent's own store and inbox, then wakes the worker of each side that
    /// got something back (before the map is resolved, start-up picks it all up).
    pub(crate) async fn retry_failed(&self, scope: &RetryScope) -> RetryReport {
        let s = &self.shared;
        let report = retry(s.store.as_ref(), Some(&s.inbox), scope).await;
        tracing::info!(?report, "retry-failed");
        if let Some(ready) = s.ready.get() {
            if report
                .queue_items_reset
                .as_ref()
                .is_some_and(|p| p.done() > 0)
            {
                ready.forward.notify();
            }
            if report
                .dead_events_revived
                .as_ref()
                .is_some_and(|p| p.done() > 0)
            {
                ready.reverse.wake();
            }
        }
        report
    }
}
