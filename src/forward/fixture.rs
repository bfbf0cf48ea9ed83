//! The forward worker over the two in-memory doubles, for the forward path's unit tests.

use std::sync::Arc;
use std::time::Duration;

use super::{ForwardCounters, ForwardSettings, ForwardWorker};
use crate::mapping::ResolvedMap;
use crate::retry::{Backoff, RetryPolicy};
use crate::sqlserver::memory::MemoryStore;
use crate::sqlserver::{KeyPart, RecordKey, Row, SqlValue};
use crate::supabase::memory::MemorySupabase;

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
        map: Arc::new(ResolvedMap::sample_clinic().await),
        settings: ForwardSettings {
            batch_size,
            lease: Duration::from_secs(120),
            retry: RetryPolicy {
                max_attempts,
                backoff: Backoff {
                    base: Duration::from_secs(2),
                    cap: Duration::from_secs(600),
                },
            },
            writer_wait: Duration::from_millis(10),
        },
        counters: Arc::new(ForwardCounters::default()),
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
