//! The reverse path's writes into SQL Server: one row, upserted, updated or deleted, and what
//! became of it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::value::SqlValue;

/// A reverse-sync write into one row of a clinic table.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub struct ReverseWrite {
    pub table: String,
    /// Key column → value; identifies the row.
    pub key: Vec<(String, SqlValue)>,
    pub action: WriteAction,
    /// When set, an existing row is updated only if no `Pending` `SyncQueue` item of this
    /// record was created after `newer_than` (a clinic edit not yet sent, newer than the
    /// portal's): the check and the write are one atomic step. Otherwise nothing is written
    /// and the outcome is [`WriteOutcome::Guarded`].
    pub guard: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub enum WriteAction {
    /// Update `update` where the row exists and any of them differs; insert `insert` (which
    /// includes the key) when the row does not exist.
    Upsert {
        insert: Vec<(String, SqlValue)>,
        update: Vec<(String, SqlValue)>,
    },
    /// Update `update` where the row exists and any of them differs; never insert.
    UpdateOnly {
        update: Vec<(String, SqlValue)>,
    },
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "test-support", derive(serde::Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    Inserted,
    Updated,
    /// The row already held these values: nothing written, no trigger fired.
    Unchanged,
    Deleted,
    /// The row does not exist (update-only or delete): nothing written.
    Missing,
    /// A newer clinic edit of the record is queued ([`ReverseWrite::guard`]): nothing written.
    Guarded,
}
