//! The agent's two sides, timed: [`SqlStore`] and [`SupabaseApi`] wrappers that pass every call
//! through unchanged and tell the telemetry how long it took and whether the side answered
//! (`GET /metrics`: latency histograms, the outage gauge). So no worker times its own calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use crate::retry::ErrorClass;
use crate::sqlserver::{
    Enqueued, FailedItem, KeyPage, QueueItem, QueueStats, RecordKey, RetryFilter, ReverseWrite,
    Row, SettleItem, SetupReport, SourceColumn, SqlStore, StoreError, WriteOutcome, WriterWait,
};
use crate::supabase::{
    JsonRow, KeyFilter, PageRequest, PostgrestError, PushRow, PushTable, Refused, SupabaseApi,
    UpsertMode,
};
use crate::telemetry::{Observation, Side, Telemetry};

/// `store`, timed into `telemetry`.
pub(crate) fn store(store: Arc<dyn SqlStore>, telemetry: &Telemetry) -> Arc<dyn SqlStore> {
    Arc::new(Timed {
        inner: store,
        telemetry: telemetry.clone(),
    })
}

/// `supabase`, timed into `telemetry`.
pub(crate) fn supabase(
    supabase: Arc<dyn SupabaseApi>,
    telemetry: &Telemetry,
) -> Arc<dyn SupabaseApi> {
    Arc::new(Timed {
        inner: supabase,
        telemetry: telemetry.clone(),
    })
}

struct Timed<T: ?Sized> {
    inner: Arc<T>,
    telemetry: Telemetry,
}

/// Whether an error still means the side answered (a refusal, a deadlock) rather than an outage.
trait Reached {
    const SIDE: Side;
    fn reached(&self) -> bool;
}

impl Reached for StoreError {
    const SIDE: Side = Side::SqlServer;
    fn reached(&self) -> bool {
        !matches!(self, StoreError::Unavailable(_))
    }
}

impl Reached for PostgrestError {
    const SIDE: Side = Side::Supabase;
    fn reached(&self) -> bool {
        self.class() != ErrorClass::Outage
    }
}

impl<T: ?Sized> Timed<T> {
    async fn time<R, E: Reached>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<R, E>>,
    ) -> Result<R, E> {
        let started = Instant::now();
        let result = call.await;
        self.telemetry.record(Observation::Request {
            side: E::SIDE,
            operation,
            elapsed: started.elapsed(),
            reached: result.as_ref().map_or_else(Reached::reached, |_| true),
        });
        result
    }
}

#[async_trait]
impl SqlStore for Timed<dyn SqlStore> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.time("ping", self.inner.ping()).await
    }

    async fn describe_table(&self, table: &str) -> Result<Option<Vec<SourceColumn>>, StoreError> {
        self.time("describe_table", self.inner.describe_table(table))
            .await
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<QueueItem>, StoreError> {
        self.time("claim", self.inner.claim(limit, lease)).await
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<(), StoreError> {
        self.time("settle", self.inner.settle(items)).await
    }

    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        self.time("next_due_in", self.inner.next_due_in()).await
    }

    async fn wait_for_writers(&self, max_wait: Duration) -> Result<WriterWait, StoreError> {
        self.time("wait_for_writers", self.inner.wait_for_writers(max_wait))
            .await
    }

    async fn release_own_claims(&self) -> Result<u64, StoreError> {
        self.time("release_own_claims", self.inner.release_own_claims())
            .await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.time("queue_stats", self.inner.queue_stats()).await
    }

    async fn unsettled_in(&self, tables: &[String]) -> Result<bool, StoreError> {
        self.time("unsettled_in", self.inner.unsettled_in(tables))
            .await
    }

    async fn retry_failed(&self, filter: &RetryFilter) -> Result<u64, StoreError> {
        self.time("retry_failed", self.inner.retry_failed(filter))
            .await
    }

    async fn recent_failures(&self, limit: usize) -> Result<Vec<FailedItem>, StoreError> {
        self.time("recent_failures", self.inner.recent_failures(limit))
            .await
    }

    async fn setup_report(&self) -> Result<SetupReport, StoreError> {
        self.time("setup_report", self.inner.setup_report()).await
    }

    async fn load_rows(
        &self,
        table: &str,
        columns: &[SourceColumn],
        keys: &[RecordKey],
    ) -> Result<Vec<Row>, StoreError> {
        self.time("load_rows", self.inner.load_rows(table, columns, keys))
            .await
    }

    async fn apply(&self, write: &ReverseWrite) -> Result<WriteOutcome, StoreError> {
        self.time("apply", self.inner.apply(write)).await
    }

    async fn backfill_page(&self, page: &KeyPage) -> Result<Enqueued, StoreError> {
        self.time("backfill_page", self.inner.backfill_page(page))
            .await
    }

    async fn read_page(
        &self,
        page: &KeyPage,
        columns: &[SourceColumn],
    ) -> Result<Vec<Row>, StoreError> {
        self.time("read_page", self.inner.read_page(page, columns))
            .await
    }

    async fn queue_records(
        &self,
        table: &str,
        key_columns: &[String],
        records: &[RecordKey],
        unless_newer_than: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<u64, StoreError> {
        let call = self
            .inner
            .queue_records(table, key_columns, records, unless_newer_than);
        self.time("queue_records", call).await
    }
}

#[async_trait]
impl SupabaseApi for Timed<dyn SupabaseApi> {
    async fn upsert(
        &self,
        table: &str,
        rows: &[JsonRow],
        on_conflict: &[String],
        mode: &UpsertMode,
    ) -> Result<(), PostgrestError> {
        let call = self.inner.upsert(table, rows, on_conflict, mode);
        self.time("upsert", call).await
    }

    async fn update(
        &self,
        table: &str,
        key: &KeyFilter,
        values: &JsonRow,
    ) -> Result<(), PostgrestError> {
        self.time("update", self.inner.update(table, key, values))
            .await
    }

    async fn push(
        &self,
        table: &PushTable<'_>,
        rows: &[PushRow],
    ) -> Result<Vec<Refused>, PostgrestError> {
        self.time("push", self.inner.push(table, rows)).await
    }

    async fn delete(&self, table: &str, keys: &[KeyFilter]) -> Result<(), PostgrestError> {
        self.time("delete", self.inner.delete(table, keys)).await
    }

    async fn select_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Vec<JsonRow>, PostgrestError> {
        self.time("select_page", self.inner.select_page(table, page))
            .await
    }

    async fn schema(&self) -> Result<Value, PostgrestError> {
        self.time("schema", self.inner.schema()).await
    }
}
