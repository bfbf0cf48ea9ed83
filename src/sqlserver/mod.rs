//! The SQL Server side of syncbridge, behind one narrow trait ([`SqlStore`]).
//! `tds` is the real implementation (tiberius; every line of T-SQL lives there and in `sql/`);
//! `memory` is the in-memory double the test suite and benchmarks drive. Nothing above this
//! module knows which one it talks to.

pub mod memory;
pub mod tds;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::mapping::value::{SqlType, SqlValue};

/// One row read from SQL Server: source column name → value.
pub type Row = BTreeMap<String, SqlValue>;

/// `SyncQueue.QueueID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub i64);

/// The token a claim stamps on the rows it takes, so a late acknowledgement can never settle a
/// row that another claim has taken since (after a lease expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(pub Uuid);

/// One part of a record's primary key. Clinic keys are integers, GUIDs or short strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyPart {
    Int(i64),
    Text(String),
}

impl KeyPart {
    pub fn to_sql(&self) -> SqlValue {
        match self {
            Self::Int(i) => SqlValue::Int(*i),
            Self::Text(s) => SqlValue::Text(s.clone()),
        }
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Text(s) => f.write_str(s),
        }
    }
}

/// A record's key: source key column → value. `SyncQueue.RecordID` stores it as a JSON object,
/// e.g. `{"PersonID":123}` or `{"WorkID":5,"ToothNo":11}`, which is what the triggers in
/// `sql/sqlserver/` write with `FOR JSON PATH, WITHOUT_ARRAY_WRAPPER`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey(pub BTreeMap<String, KeyPart>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RecordID {0:?} is not a JSON object of key columns to integers or strings")]
pub struct RecordKeyError(pub String);

impl RecordKey {
    pub fn parse(record_id: &str) -> Result<Self, RecordKeyError> {
        let bad = || RecordKeyError(record_id.chars().take(200).collect());
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(record_id).map_err(|_| bad())?;
        if map.is_empty() {
            return Err(bad());
        }
        map.into_iter()
            .map(|(column, value)| {
                let part = match value {
                    serde_json::Value::Number(n) => KeyPart::Int(n.as_i64().ok_or_else(bad)?),
                    serde_json::Value::String(s) => KeyPart::Text(s),
                    _ => return Err(bad()),
                };
                Ok((column, part))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The canonical JSON text (columns sorted), as stored in `RecordID`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    pub fn get(&self, column: &str) -> Option<&KeyPart> {
        self.0.get(column)
    }

    /// The same key with each column named as `declared` spells it, matched as SQL Server
    /// matches identifiers ([`same_identifier`]): a RecordID written as `{"personid":1}` by a
    /// trigger installed with `@KeyColumns = N'personid'` is the key of `PersonID`. Parts that
    /// match no declared name keep theirs.
    pub fn with_declared_names<'a>(&self, declared: impl IntoIterator<Item = &'a str>) -> Self {
        let declared: Vec<&str> = declared.into_iter().collect();
        let name = |column: &str| {
            declared
                .iter()
                .find(|d| **d == column)
                .or_else(|| declared.iter().find(|d| same_identifier(d, column)))
                .map_or_else(|| column.to_owned(), |d| (*d).to_owned())
        };
        Self(
            self.0
                .iter()
                .map(|(column, part)| (name(column), part.clone()))
                .collect(),
        )
    }
}

/// Whether two identifiers name the same column or table the way SQL Server resolves names under
/// a case-insensitive collation (every default install): equal once lower-cased. Callers try an
/// exact match first, so a case-sensitive database with both `a` and `A` still resolves each.
pub fn same_identifier(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// A `SyncQueue` row taken by [`SqlStore::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    pub id: QueueId,
    pub table: String,
    /// Raw `RecordID`; parsed by the worker so a malformed one fails only its own item.
    pub record_id: String,
    /// Raw `Operation` (`INSERT`, `UPDATE`, `DELETE`).
    pub operation: String,
    /// Attempts made before this claim.
    pub attempts: u32,
    pub claim: ClaimToken,
}

/// What became of a claimed item.
#[derive(Debug, Clone, PartialEq)]
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
pub struct SettleItem {
    pub id: QueueId,
    pub claim: ClaimToken,
    pub outcome: Settlement,
}

/// The answer of [`SqlStore::wait_for_writers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterWait {
    /// No due `Pending` row is held by an open transaction: the queue is drained.
    Idle,
    /// A writer's uncommitted queue rows were waited on (committed, rolled back, or the wait
    /// timed out): claim again.
    Waited,
}

/// A column of a SQL Server table, from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceColumn {
    pub name: String,
    pub sql_type: SqlType,
    pub nullable: bool,
    pub identity: bool,
    pub computed: bool,
}

/// Counts for `GET /api/sync/status` and the monitoring views.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub pending: u64,
    pub synced: u64,
    pub failed: u64,
    /// Age in seconds of the oldest `Pending` item, if any.
    pub oldest_pending_age_secs: Option<u64>,
}

/// What the forward path needs installed in SQL Server, for `syncbridge check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    /// `Ole Automation Procedures` is on (`sp_NotifyAppOfSync` can POST).
    pub ole_automation: bool,
    /// `SyncConfig.NotifyUrl`, if set.
    pub notify_url: Option<String>,
    /// Tables (as `schema.table`) that have an enabled `trg_<table>_SyncQueue` trigger.
    pub tables_with_trigger: Vec<String>,
}

/// A reverse-sync write into one row of a clinic table.
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseWrite {
    pub table: String,
    /// Key column → value; identifies the row.
    pub key: Vec<(String, SqlValue)>,
    pub action: WriteAction,
}

#[derive(Debug, Clone, PartialEq)]
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
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    Inserted,
    Updated,
    /// The row already held these values: nothing written, no trigger fired.
    Unchanged,
    Deleted,
    /// The row does not exist (update-only or delete): nothing written.
    Missing,
}

/// Errors from the SQL Server layer. The worker decides retries by asking
/// [`StoreError::is_retryable`], never by inspecting messages.
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
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Transient(_))
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
}
