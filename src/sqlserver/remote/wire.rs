//! The test double's protocol: one JSON line per request (the caller's agent id and one
//! [`Call`], a variant per [`SqlStore`] method with its arguments), one JSON line per reply
//! (`{"Ok": <the method's return value>}` or `{"Err": <WireError>}`), one connection per call.
//! Record keys travel as their canonical `RecordID` text, which is how the queue stores them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sqlserver::{
    KeyPage, RecordKey, RetryFilter, ReverseWrite, SettleItem, SourceColumn, SqlStore, StoreError,
    WriteOutcome,
};

/// One request line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    /// `SYNC_AGENT_ID` of the caller, so two agents on one double own their own claims.
    pub(crate) agent: String,
    pub(crate) call: Call,
}

/// One [`SqlStore`] call. Adding a method to the trait means one variant here, one arm in
/// [`Call::dispatch`] and one method on the client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Call {
    Ping,
    DescribeTable {
        table: String,
    },
    Claim {
        limit: usize,
        lease: Duration,
    },
    Settle {
        items: Vec<SettleItem>,
    },
    NextDueIn,
    WaitForWriters {
        max_wait: Duration,
    },
    ReleaseOwnClaims,
    QueueStats,
    UnsettledIn {
        tables: Vec<String>,
    },
    RetryFailed {
        filter: RetryFilter,
    },
    RecentFailures {
        limit: usize,
    },
    SetupReport,
    LoadRows {
        table: String,
        columns: Vec<SourceColumn>,
        /// Canonical `RecordID` texts ([`RecordKey::to_json`]).
        keys: Vec<String>,
    },
    Apply {
        write: ReverseWrite,
    },
    BackfillPage {
        page: WirePage,
    },
    ReadPage {
        page: WirePage,
        columns: Vec<SourceColumn>,
    },
    QueueRecords {
        table: String,
        key_columns: Vec<String>,
        records: Vec<String>,
        unless_newer_than: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// A [`KeyPage`] on the wire, its `after` key as `RecordID` text.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WirePage {
    table: String,
    keys: Vec<String>,
    after: Option<String>,
    limit: usize,
}

impl From<&KeyPage> for WirePage {
    fn from(p: &KeyPage) -> Self {
        Self {
            table: p.table.clone(),
            keys: p.keys.clone(),
            after: p.after.as_ref().map(RecordKey::to_json),
            limit: p.limit,
        }
    }
}

impl WirePage {
    fn page(self) -> Result<KeyPage, StoreError> {
        Ok(KeyPage {
            table: self.table,
            keys: self.keys,
            after: self.after.as_deref().map(parse_key).transpose()?,
            limit: self.limit,
        })
    }
}

pub(crate) fn parse_key(text: &str) -> Result<RecordKey, StoreError> {
    RecordKey::parse(text).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// A [`StoreError`] on the wire: its variant and message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    Unavailable(String),
    Transient(String),
    Rejected(String),
    Invalid(String),
    Misconfigured(String),
}

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Transient(m) => Self::Transient(m),
            StoreError::Rejected(m) => Self::Rejected(m),
            StoreError::Invalid(m) => Self::Invalid(m),
            StoreError::Misconfigured(m) => Self::Misconfigured(m),
        }
    }
}

impl From<WireError> for StoreError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Unavailable(m) => Self::Unavailable(m),
            WireError::Transient(m) => Self::Transient(m),
            WireError::Rejected(m) => Self::Rejected(m),
            WireError::Invalid(m) => Self::Invalid(m),
            WireError::Misconfigured(m) => Self::Misconfigured(m),
        }
    }
}

/// One reply line.
pub(crate) type Reply = Result<serde_json::Value, WireError>;

impl Call {
    /// The trait method's name, as `MemoryStore::calls` counts it.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::DescribeTable { .. } => "describe_table",
            Self::Claim { .. } => "claim",
            Self::Settle { .. } => "settle",
            Self::NextDueIn => "next_due_in",
            Self::WaitForWriters { .. } => "wait_for_writers",
            Self::ReleaseOwnClaims => "release_own_claims",
            Self::QueueStats => "queue_stats",
            Self::UnsettledIn { .. } => "unsettled_in",
            Self::RetryFailed { .. } => "retry_failed",
            Self::RecentFailures { .. } => "recent_failures",
            Self::SetupReport => "setup_report",
            Self::LoadRows { .. } => "load_rows",
            Self::Apply { .. } => "apply",
            Self::BackfillPage { .. } => "backfill_page",
            Self::ReadPage { .. } => "read_page",
            Self::QueueRecords { .. } => "queue_records",
        }
    }

    /// Runs the call on `store` (the server side) and encodes its answer.
    pub(crate) async fn dispatch(self, store: &dyn SqlStore) -> Reply {
        match self {
            Self::Ping => encode(store.ping().await),
            Self::DescribeTable { table } => encode(store.describe_table(&table).await),
            Self::Claim { limit, lease } => encode(store.claim(limit, lease).await),
            Self::Settle { items } => encode(store.settle(&items).await),
            Self::NextDueIn => encode(store.next_due_in().await),
            Self::WaitForWriters { max_wait } => encode(store.wait_for_writers(max_wait).await),
            Self::ReleaseOwnClaims => encode(store.release_own_claims().await),
            Self::QueueStats => encode(store.queue_stats().await),
            Self::UnsettledIn { tables } => encode(store.unsettled_in(&tables).await),
            Self::RetryFailed { filter } => encode(store.retry_failed(&filter).await),
            Self::RecentFailures { limit } => encode(store.recent_failures(limit).await),
            Self::SetupReport => encode(store.setup_report().await),
            Self::LoadRows {
                table,
                columns,
                keys,
            } => {
                let keys = keys
                    .iter()
                    .map(|k| RecordKey::parse(k))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                encode(store.load_rows(&table, &columns, &keys).await)
            }
            Self::Apply { write } => encode::<WriteOutcome>(store.apply(&write).await),
            Self::BackfillPage { page } => {
                let done = store.backfill_page(&page.page()?).await?;
                encode(Ok((
                    done.enqueued,
                    done.last.as_ref().map(RecordKey::to_json),
                )))
            }
            Self::ReadPage { page, columns } => {
                encode(store.read_page(&page.page()?, &columns).await)
            }
            Self::QueueRecords {
                table,
                key_columns,
                records,
                unless_newer_than,
            } => {
                let records = records
                    .iter()
                    .map(|k| parse_key(k))
                    .collect::<Result<Vec<_>, _>>()?;
                let queued = store.queue_records(&table, &key_columns, &records, unless_newer_than);
                encode(queued.await)
            }
        }
    }
}

fn encode<T: Serialize>(result: Result<T, StoreError>) -> Reply {
    let value = result?;
    serde_json::to_value(value)
        .map_err(|e| WireError::Invalid(format!("cannot encode the reply: {e}")))
}
