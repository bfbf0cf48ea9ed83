//! The forward worker over the two in-memory doubles, for the forward path's unit tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{CurrentMap, ForwardCounters, ForwardSettings, ForwardWorker, Remap};
use crate::mapping::{ResolvedMap, TableMap};
use crate::retry::{Backoff, RetryPolicy};
use crate::sqlserver::memory::MemoryStore;
use crate::sqlserver::{DescribedTables, KeyPart, RecordKey, Row, SqlValue};
use crate::supabase::memory::MemorySupabase;
use crate::supabase::{PostgrestError, SupabaseApi, TargetSchema};

/// A worker for the sample clinic map over `store` and `supabase`, claiming `batch_size` items
/// at a time and giving up on an item after `max_attempts`.
pub(super) async fn worker(
    store: &MemoryStore,
    supabase: &MemorySupabase,
    batch_size: usize,
    max_attempts: u32,
) -> ForwardWorker {
    ForwardWorker {
        store: Arc::new(store.clone()),
        supabase: Arc::new(supabase.clone()),
        map: CurrentMap::new(Arc::new(ResolvedMap::sample_clinic().await)),
        remap: Arc::new(SampleRemap {
            store: store.clone(),
            supabase: supabase.clone(),
        }),
        settings: ForwardSettings {
            batch_size,
            lease: Duration::from_secs(120),
            pipeline_depth: 4,
            retry: RetryPolicy {
                max_attempts,
                backoff: BACKOFF,
            },
            writer_wait: Duration::from_millis(10),
        },
        counters: Arc::new(ForwardCounters::default()),
        outage: Mutex::default(),
        state: scratch_state(),
    }
}

/// A sync state in a directory that lives as long as the test process.
pub(super) fn scratch_state() -> crate::sync_state::SyncState {
    let dir = Box::leak(Box::new(tempfile::tempdir().expect("tempdir")));
    let db = crate::local_db::LocalDb::open(dir.path()).expect("local database");
    crate::sync_state::SyncState::open(db).expect("sync state")
}

/// The fixture workers' backoff.
pub(super) const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(2),
    cap: Duration::from_secs(600),
};

/// Resolves the sample map again against the doubles, as the agent does against both sides.
struct SampleRemap {
    store: MemoryStore,
    supabase: MemorySupabase,
}

#[async_trait]
impl Remap for SampleRemap {
    async fn remap(&self, current: &ResolvedMap) -> Result<Option<ResolvedMap>, PostgrestError> {
        let schema = TargetSchema::from_openapi(&self.supabase.schema().await?);
        let map = TableMap::sample_clinic();
        let described = DescribedTables::read(&self.store, map.sources())
            .await
            .expect("the double describes its tables");
        let resolved = ResolvedMap::resolve_against(&map, &described, Some(&schema))
            .expect("the sample map resolves");
        Ok((resolved.tables != current.tables).then_some(resolved))
    }
}

pub(super) fn key(column: &str, id: i64) -> RecordKey {
    RecordKey(
        [(column.to_owned(), KeyPart::Int(id))]
            .into_iter()
            .collect(),
    )
}

pub(super) fn row(values: &[(&str, SqlValue)]) -> Row {
    values
        .iter()
        .map(|(c, v)| ((*c).to_owned(), v.clone()))
        .collect()
}

/// The clinic writes patients `ids` (each queued by its change trigger).
pub(super) fn clinic_patients(store: &MemoryStore, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, "p")));
    }
}

pub(super) fn patient(id: i64, name: &str) -> Row {
    row(&[
        ("PersonID", SqlValue::Int(id)),
        ("PatientName", SqlValue::Text(name.to_owned())),
    ])
}

pub(super) fn work(id: i64, person: i64) -> Row {
    row(&[
        ("WorkID", SqlValue::Int(id)),
        ("PersonID", SqlValue::Int(person)),
    ])
}

/// PostgREST's description of the sample clinic schema, but for the `(table, column)`s in
/// `without`.
pub(super) async fn sample_openapi(without: &[(&str, &str)]) -> serde_json::Value {
    let map = ResolvedMap::sample_clinic().await;
    let definitions: serde_json::Map<String, serde_json::Value> = map
        .tables
        .iter()
        .map(|t| {
            let properties: serde_json::Map<String, serde_json::Value> = t
                .columns
                .iter()
                .map(|c| c.target.as_str())
                .chain(["updated_at"])
                .filter(|c| !without.contains(&(t.target.as_str(), *c)))
                .map(|c| (c.to_owned(), serde_json::json!({"format": "text"})))
                .collect();
            (
                t.target.clone(),
                serde_json::json!({ "properties": properties }),
            )
        })
        .collect();
    serde_json::json!({ "definitions": definitions })
}
