//! The SQL Server side of syncbridge, behind one narrow trait ([`SqlStore`]), with the value
//! model it speaks: typed values (`value`), record keys (`key`), the queue's vocabulary
//! (`queue`), table names (`table_name`), the catalog (`catalog`) and reverse writes (`write`).
//! `tds` is the real implementation (tiberius; every line of T-SQL lives there and in `sql/`);
//! `memory` is the in-memory double the test suite and benchmarks drive. Nothing above this
//! module knows which one it talks to, and nothing here knows of JSON or the table map.

mod catalog;
mod key;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
mod page;
mod queue;
#[cfg(feature = "test-support")]
pub mod remote;
mod table_name;
pub mod tds;
mod value;
mod write;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::retry::ErrorClass;

pub(crate) use catalog::DescribedTables;
pub use catalog::{SetupReport, SourceColumn};
pub(crate) use key::same_identifier;
pub use key::{KeyPart, RecordKey, RecordKeyError};
pub(crate) use page::{ordered_parts, trigger_record_id};
pub use page::{Enqueued, KeyPage};
pub use queue::{
    ClaimToken, FailedItem, QueueId, QueueItem, QueueStats, RetryFilter, SettleItem, Settlement,
    WriterWait,
};
pub(crate) use queue::{Op, UnknownOp};
pub use table_name::{BadTableName, TableName};
pub use value::{Decimal, Row, SqlType, SqlValue};
pub use write::{ReverseWrite, WriteAction, WriteOutcome};

/// Errors from the SQL Server layer. The workers decide retries by asking
/// [`StoreError::class`], never by inspecting messages.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Cannot connect or the connection broke: SQL Server is down or unreachable.
    #[error("SQL Server is unavailable: {0}")]
    Unavailable(String),
    /// Deadlock victim, lock timeout, or similar: the same statement may succeed later.
    #[error("transient SQL Server error: {0}")]
    Transient(String),
    /// SQL Server refused the statement for this data (constraint, conversion, permissions).
    #[error("SQL Server rejected the statement: {0}")]
    Rejected(String),
    /// The request was invalid before reaching SQL Server (unknown table or column, bad key).
    #[error("{0}")]
    Invalid(String),
    /// A table, column or procedure the statement names is missing, or the agent's login lacks
    /// a permission: every row of the table fails alike until someone fixes the setup, so no
    /// row's attempts are spent on it.
    #[error("SQL Server setup: {0}")]
    Misconfigured(String),
}

impl StoreError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) | Self::Transient(_) => ErrorClass::Outage,
            Self::Rejected(_) | Self::Invalid(_) => ErrorClass::Rejected,
            Self::Misconfigured(_) => ErrorClass::ConfigFault,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }
}

/// Everything the sync engine needs from SQL Server, and nothing more.
///
/// Implementations must make every connection they use identify itself as the agent
/// (`SESSION_CONTEXT(N'syncbridge') = 1`) so that the change triggers skip the agent's own
/// writes: that is what keeps reverse-synced rows from echoing back to Supabase. Only its
/// direct writes: what the clinic's own triggers change because of them is queued and sent.
#[async_trait]
pub trait SqlStore: Send + Sync + 'static {
    /// Cheap round trip, for `check` and health.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The columns of `table` (`dbo` unless schema-qualified), or `None` if it does not exist.
    async fn describe_table(&self, table: &str) -> Result<Option<Vec<SourceColumn>>, StoreError>;

    /// Takes up to `limit` due `Pending` items, oldest first, plus every other due `Pending`
    /// item of the same records (so they coalesce). Taken items become due again only after
    /// `lease`, so a crashed agent's batch is retried, never lost. Rows locked by an open
    /// transaction are skipped, not waited on.
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<QueueItem>, StoreError>;

    /// Records outcomes; an item whose claim token no longer matches is left alone.
    async fn settle(&self, items: &[SettleItem]) -> Result<(), StoreError>;

    /// Time until the earliest `Pending` item is due (zero if one is due now), `None` if the
    /// queue holds no `Pending` item at all.
    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError>;

    /// When `claim` found nothing: if due `Pending` rows exist that an open transaction holds
    /// (the trigger notified us before its writer committed), block until that writer ends or
    /// `max_wait` passes. Returns at once with [`WriterWait::Idle`] otherwise.
    async fn wait_for_writers(&self, max_wait: Duration) -> Result<WriterWait, StoreError>;

    /// Makes items this agent had claimed before it stopped (crash, kill) due now.
    async fn release_own_claims(&self) -> Result<u64, StoreError>;

    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;

    /// Whether the queue holds an unsettled item (`Pending`: due or not, claimed by anyone or
    /// not) of any of `tables`, named as the change triggers write `SyncQueue.TableName`
    /// (compared as SQL Server compares names). Rows an open transaction holds are not waited
    /// on. The forward path asks it about a row refused for a foreign key: a missing parent
    /// that is itself still queued is not the row's fault.
    async fn unsettled_in(&self, tables: &[String]) -> Result<bool, StoreError>;

    /// Puts the `Failed` items `filter` selects back to `Pending` with no attempts made, due
    /// now (`syncbridge retry-failed`, after the cause was fixed); returns how many. Wakes
    /// nobody: the caller notifies the agent.
    async fn retry_failed(&self, filter: &RetryFilter) -> Result<u64, StoreError>;

    /// The newest `limit` `Failed` items with their last errors, newest first.
    async fn recent_failures(&self, limit: usize) -> Result<Vec<FailedItem>, StoreError>;

    /// Whether notifications can be sent and which tables have change triggers.
    async fn setup_report(&self) -> Result<SetupReport, StoreError>;

    /// The current rows of `table` for `keys`, with `columns` selected. Missing rows are absent,
    /// and so are keys that cannot be of their column's type. Text keys match exactly (case
    /// and trailing spaces count), as Supabase compares them, whatever the column's collation.
    async fn load_rows(
        &self,
        table: &str,
        columns: &[SourceColumn],
        keys: &[RecordKey],
    ) -> Result<Vec<Row>, StoreError>;

    /// Applies one reverse-sync write atomically.
    async fn apply(&self, write: &ReverseWrite) -> Result<WriteOutcome, StoreError>;

    /// `syncbridge backfill`: queues one `UPDATE` item per row of `page` (in key order, so
    /// QueueIDs follow the key order) in one statement, and returns how many and the page's last
    /// key. The rows themselves are not read here: the forward worker loads each record as it
    /// is when it sends it, so a backfill never sends an older copy than a concurrent edit.
    async fn backfill_page(&self, page: &KeyPage) -> Result<Enqueued, StoreError>;

    /// `syncbridge verify`: the rows of `page`, in key order, with `columns` selected (read as
    /// `load_rows` reads them).
    async fn read_page(
        &self,
        page: &KeyPage,
        columns: &[SourceColumn],
    ) -> Result<Vec<Row>, StoreError>;

    /// `syncbridge verify --fix`: queues one `UPDATE` item per record of `table` (key columns
    /// `key_columns`, declared, in key order) for the forward worker, which sends each as it is
    /// then: upserted if the row exists, deleted in Supabase if it does not. A record that
    /// already has an item waiting unclaimed is left alone: that item reads the row when it is
    /// claimed, later than now, so a second would only send the same row again. Returns how
    /// many were queued. With `unless_newer_than`, a record is also left alone when any of its
    /// items (whatever its status) was made after that time: a clinic change newer than what
    /// Supabase was seen holding has gone, or is going, the same way.
    async fn queue_records(
        &self,
        table: &str,
        key_columns: &[String],
        records: &[RecordKey],
        unless_newer_than: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError>;
}
