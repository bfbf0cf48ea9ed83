//! The real [`SqlStore`]: SQL Server through tiberius. Every statement the agent sends lives in
//! this module's files (the install scripts live in `sql/sqlserver/`):
//! - `pool`: lazy connections marked as the agent's (SESSION_CONTEXT), discarded on failure;
//! - `queue`: claim, settle, next due time, waiting on writers, counts;
//! - `failed`: the Failed items put back, and listed;
//! - `catalog` + `rows`: table descriptions, and loading rows by key, exactly typed;
//! - `write`: reverse-sync upserts and deletes;
//! - `pages`: whole tables in key order, a page at a time (backfill, verify);
//! - `exec`: sending a statement and collecting its result sets;
//! - `error`: tiberius errors as [`StoreError`]s;
//! - `self_test`: `syncbridge check --self-test`, the same statements proven on scratch objects.
//!
//! Owns no sync logic: what to claim, load or write is decided above the trait.

mod catalog;
mod error;
mod exec;
mod failed;
mod pages;
mod pool;
mod queue;
mod rows;
pub mod self_test;
mod write;

#[cfg(test)]
mod script_tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use self::catalog::{TableCache, TableInfo};
use self::error::SqlResult;
use self::pool::{Pool, TdsClient};
use self::queue::QueueTable;
use crate::sqlserver::{
    Enqueued, FailedItem, KeyPage, QueueItem, QueueStats, RecordKey, RetryFilter, ReverseWrite,
    Row, SettleItem, SetupReport, SourceColumn, SqlStore, StoreError, WriteOutcome, WriterWait,
};

/// `SyncQueue.ClaimedBy` is nvarchar(128).
const MAX_AGENT_ID: usize = 128;

/// SQL Server behind [`SqlStore`]. Creating one does no I/O: connections are opened on first
/// use, so the agent starts (and keeps accepting webhooks) while SQL Server is down.
pub struct TdsStore {
    pool: Pool,
    agent_id: String,
    tables: TableCache,
    queue: QueueTable,
}

impl TdsStore {
    /// `config` from the ADO connection string (named instances `host\INSTANCE` are resolved
    /// through SQL Browser); `agent_id` is written to `SyncQueue.ClaimedBy` (at most 128
    /// characters kept); `pool_size` bounds the open connections (at least 1).
    pub fn new(config: tiberius::Config, agent_id: String, pool_size: u32) -> Self {
        Self {
            pool: Pool::new(config, pool_size),
            agent_id: agent_id.chars().take(MAX_AGENT_ID).collect(),
            tables: TableCache::default(),
            queue: QueueTable::default(),
        }
    }

    /// The same store working on `<schema>.SyncQueue` instead of `dbo.SyncQueue`: the
    /// self-test's scratch queue, so that it runs exactly the agent's statements.
    pub(crate) fn with_queue_schema(mut self, schema: &str) -> Self {
        self.queue = QueueTable::in_schema(schema);
        self
    }

    /// Runs `op` on a pooled connection. The connection goes back to the pool only when `op`
    /// succeeds; after an error, or if this future is dropped mid-statement, it is discarded, so
    /// no half-read response or open transaction reaches the next caller.
    async fn with_conn<T>(
        &self,
        op: impl AsyncFnOnce(&mut TdsClient) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get().await?;
        let out = op(conn.client()).await?;
        conn.done();
        Ok(out)
    }

    /// The table's description, from the cache or the catalog; unknown tables are `Invalid`.
    async fn table(&self, table: &str) -> Result<Arc<TableInfo>, StoreError> {
        if let Some(info) = self.tables.get(table) {
            return Ok(info);
        }
        let info = self
            .with_conn(async |c| catalog::describe(c, table).await)
            .await?;
        match info {
            Some(info) => Ok(self.tables.put(table, info)),
            None => Err(StoreError::Misconfigured(format!(
                "SQL Server has no table {table:?}"
            ))),
        }
    }

    /// After a rejected statement the table may have changed (a column dropped, a type
    /// altered): describe it afresh next time.
    fn forget_on_rejection<T>(
        &self,
        table: &str,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if matches!(
            result,
            Err(StoreError::Rejected(_) | StoreError::Misconfigured(_))
        ) {
            self.tables.forget(table);
        }
        result
    }
}

impl std::fmt::Debug for TdsStore {
    // Deliberately omits the configuration: it holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdsStore")
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SqlStore for TdsStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(async |c| {
            c.simple_query("SELECT 1;")
                .await
                .sql()?
                .into_results()
                .await
                .sql()?;
            Ok(())
        })
        .await
    }

    async fn describe_table(&self, table: &str) -> Result<Option<Vec<SourceColumn>>, StoreError> {
        let info = self
            .with_conn(async |c| catalog::describe(c, table).await)
            .await?;
        Ok(info.map(|info| self.tables.put(table, info).source_columns()))
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<QueueItem>, StoreError> {
        self.with_conn(async |c| queue::claim(c, &self.queue, limit, lease, &self.agent_id).await)
            .await
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        self.with_conn(async |c| queue::settle(c, &self.queue, items).await)
            .await
    }

    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        self.with_conn(async |c| queue::next_due_in(c, &self.queue).await)
            .await
    }

    async fn wait_for_writers(&self, max_wait: Duration) -> Result<WriterWait, StoreError> {
        let max_wait = max_wait.min(self.pool.max_lock_wait());
        let waited = self
            .with_conn(async |c| queue::wait_for_writers(c, &self.queue, max_wait).await)
            .await?;
        Ok(if waited {
            WriterWait::Waited
        } else {
            WriterWait::Idle
        })
    }

    async fn release_own_claims(&self) -> Result<u64, StoreError> {
        self.with_conn(async |c| queue::release_own_claims(c, &self.queue, &self.agent_id).await)
            .await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.with_conn(async |c| queue::stats(c, &self.queue).await)
            .await
    }

    async fn unsettled_in(&self, tables: &[String]) -> Result<bool, StoreError> {
        if tables.is_empty() {
            return Ok(false);
        }
        self.with_conn(async |c| queue::unsettled_in(c, &self.queue, tables).await)
            .await
    }

    async fn retry_failed(&self, filter: &RetryFilter) -> Result<u64, StoreError> {
        self.with_conn(async |c| failed::retry(c, &self.queue, filter).await)
            .await
    }

    async fn recent_failures(&self, limit: usize) -> Result<Vec<FailedItem>, StoreError> {
        self.with_conn(async |c| failed::recent(c, &self.queue, limit).await)
            .await
    }

    async fn setup_report(&self) -> Result<SetupReport, StoreError> {
        self.with_conn(async |c| queue::setup_report(c).await).await
    }

    async fn load_rows(
        &self,
        table: &str,
        columns: &[SourceColumn],
        keys: &[RecordKey],
    ) -> Result<Vec<Row>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let info = self.table(table).await?;
        let loaded = self
            .with_conn(async |c| rows::load(c, &info, columns, keys).await)
            .await;
        self.forget_on_rejection(table, loaded)
    }

    async fn apply(&self, write: &ReverseWrite) -> Result<WriteOutcome, StoreError> {
        let info = self.table(&write.table).await?;
        let applied = self
            .with_conn(async |c| write::apply(c, &info, write).await)
            .await;
        self.forget_on_rejection(&write.table, applied)
    }

    async fn backfill_page(&self, page: &KeyPage) -> Result<Enqueued, StoreError> {
        let info = self.table(&page.table).await?;
        let queued = self
            .with_conn(async |c| pages::backfill(c, &self.queue, &info, page).await)
            .await;
        self.forget_on_rejection(&page.table, queued)
    }

    async fn read_page(
        &self,
        page: &KeyPage,
        columns: &[SourceColumn],
    ) -> Result<Vec<Row>, StoreError> {
        let info = self.table(&page.table).await?;
        let read = self
            .with_conn(async |c| pages::read(c, &info, page, columns).await)
            .await;
        self.forget_on_rejection(&page.table, read)
    }

    async fn queue_records(
        &self,
        table: &str,
        key_columns: &[String],
        records: &[RecordKey],
        unless_newer_than: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        self.with_conn(async |c| {
            pages::queue_records(
                c,
                &self.queue,
                table,
                key_columns,
                records,
                unless_newer_than,
            )
            .await
        })
        .await
    }
}
