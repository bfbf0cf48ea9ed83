//! The forward queue's vocabulary (`dbo.SyncQueue`): what a claim returns, how an item is
//! settled, and the counts the status endpoint shows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `SyncQueue.QueueID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub i64);

/// The token a claim stamps on the rows it takes, so a late acknowledgement can never settle a
/// row that another claim has taken since (after a lease expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub struct ClaimToken(pub Uuid);

/// A row operation, as the change triggers write it to `SyncQueue.Operation` and Supabase's
/// Database Webhooks send it as `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation name that is none of `INSERT`, `UPDATE`, `DELETE` (exact spelling).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation {0:?}")]
pub(crate) struct UnknownOp(pub(crate) String);

impl FromStr for Op {
    type Err = UnknownOp;

    fn from_str(s: &str) -> Result<Self, UnknownOp> {
        match s {
            "INSERT" => Ok(Self::Insert),
            "UPDATE" => Ok(Self::Update),
            "DELETE" => Ok(Self::Delete),
            other => Err(UnknownOp(other.to_owned())),
        }
    }
}

/// A `SyncQueue` row taken by [`super::SqlStore::claim`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub struct QueueItem {
    pub id: QueueId,
    pub table: String,
    /// Raw `RecordID`; parsed by the worker so a malformed one fails only its own item.
    pub record_id: String,
    /// Raw `Operation`; parsed into an `Op` by the worker, for the same reason.
    pub operation: String,
    /// Attempts made before this claim.
    pub attempts: u32,
    pub claim: ClaimToken,
    /// `CreatedAt`: when the clinic's change was queued (SQL Server's clock, UTC). The time of
    /// the clinic's edit when it meets a portal edit of the same column (README "Who wins").
    pub created_at: DateTime<Utc>,
}

/// What became of a claimed item.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub enum Settlement {
    /// Done: `Status = 'Synced'`.
    Synced,
    /// Failed this time: `Attempts + 1`, `LastError`, due again after `delay`.
    Retry { delay: Duration, error: String },
    /// Given up: `Attempts + 1`, `Status = 'Failed'`, `LastError`.
    Failed { error: String },
    /// Not attempted (configuration fault, shutdown): due again after `delay`, attempts untouched.
    Release {
        delay: Duration,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub struct SettleItem {
    pub id: QueueId,
    pub claim: ClaimToken,
    pub outcome: Settlement,
}

/// The answer of [`super::SqlStore::wait_for_writers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub enum WriterWait {
    /// No due `Pending` row is held by an open transaction: the queue is drained.
    Idle,
    /// A writer's uncommitted queue rows were waited on (committed, rolled back, or the wait
    /// timed out): claim again.
    Waited,
}

/// Counts for `GET /api/sync/status` and the monitoring views.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "test-support", derive(serde::Deserialize))]
pub struct QueueStats {
    pub pending: u64,
    pub synced: u64,
    pub failed: u64,
    /// Age in seconds of the oldest `Pending` item, if any.
    pub oldest_pending_age_secs: Option<u64>,
}

/// Which `Failed` items [`super::SqlStore::retry_failed`] puts back: all of them, one table's
/// (`SyncQueue.TableName`, compared by SQL Server under the column's collation), one item, or
/// both conditions at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub struct RetryFilter {
    pub table: Option<String>,
    pub id: Option<QueueId>,
}

/// A `Failed` queue item and why it failed, for `syncbridge status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "test-support", derive(serde::Deserialize))]
pub struct FailedItem {
    pub id: QueueId,
    pub table: String,
    pub record_id: String,
    pub operation: String,
    pub attempts: u32,
    pub error: Option<String>,
    /// `LastAttempt`, when SQL Server keeps it (the double does not).
    pub last_attempt: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_only_in_their_exact_spelling() {
        for op in [Op::Insert, Op::Update, Op::Delete] {
            assert_eq!(op.as_str().parse(), Ok(op));
        }
        assert_eq!("delete".parse::<Op>(), Err(UnknownOp("delete".to_owned())));
        assert!("UPSERT".parse::<Op>().is_err());
    }
}
