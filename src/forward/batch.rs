//! One claimed batch, start to finish: group items by record (coalescing), load the current
//! rows, upsert what exists and delete what is gone through PostgREST (parents first for
//! upserts, children first for deletes), isolate bad rows by bisection, and turn every item into
//! a settlement. Never talks to the queue itself; the worker settles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::mapping::{ResolvedMap, ResolvedTable};
use crate::retry::Backoff;
use crate::sqlserver::{QueueItem, RecordKey, SettleItem, Settlement, SqlStore, StoreError};
use crate::supabase::{ErrorClass, JsonRow, PostgrestClient, PostgrestError, UpsertMode};

/// Row updates in flight at once for tables with portal-owned columns.
const PARALLEL_UPDATES: usize = 8;

/// Settings a batch needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// How long items wait when their batch hit a configuration fault.
    pub fault_delay: Duration,
}

/// The result of one batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub settlements: Vec<SettleItem>,
    pub rows_upserted: u64,
    pub rows_deleted: u64,
    /// Supabase refused the key: work must stop until the configuration is fixed.
    pub config_fault: Option<String>,
}

/// Why a record did not sync, cloned onto every item of the record.
#[derive(Debug, Clone)]
struct RowError {
    message: String,
    retry_after: Option<Duration>,
}

type RecordItems = BTreeMap<RecordKey, Vec<QueueItem>>;

pub struct Batch<'a> {
    pub store: &'a dyn SqlStore,
    pub supabase: &'a PostgrestClient,
    pub map: &'a ResolvedMap,
    pub policy: BatchPolicy,
}

impl Batch<'_> {
    pub async fn run(&self, items: Vec<QueueItem>) -> Result<BatchOutcome, StoreError> {
        let mut out = BatchOutcome::default();
        let mut by_table: BTreeMap<usize, RecordItems> = BTreeMap::new();
        for item in items {
            match self.classify(&item) {
                Ok((order, key)) => by_table
                    .entry(order)
                    .or_default()
                    .entry(key)
                    .or_default()
                    .push(item),
                Err(why) => {
                    tracing::warn!(queue_id = item.id.0, table = %item.table, error = %why, "queue item cannot be synced");
                    out.settlements.push(self.settle_failed(&item, why));
                }
            }
        }

        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        let mut unloadable = Vec::new();
        for (&order, records) in &by_table {
            let table = &self.map.tables[order];
            let keys: Vec<RecordKey> = records.keys().cloned().collect();
            let rows = match self
                .store
                .load_rows(table.source(), &table.source_columns(), &keys)
                .await
            {
                Ok(rows) => rows,
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    let error = RowError {
                        message: format!("loading rows from {}: {e}", table.source()),
                        retry_after: None,
                    };
                    records
                        .values()
                        .flatten()
                        .for_each(|i| out.settlements.push(self.settle_error(i, &error)));
                    unloadable.push(order);
                    continue;
                }
            };
            let mut present: BTreeMap<RecordKey, JsonRow> = BTreeMap::new();
            for row in &rows {
                // Key types are limited to int, text and GUID at startup, so every loaded row
                // has a key; text keys may differ in case under a case-insensitive collation.
                if let Some(key) = table.key_of_row(row).and_then(|k| find_key(records, &k)) {
                    present.insert(key, table.row_to_json(row));
                }
            }
            let gone: Vec<RecordKey> = keys
                .iter()
                .filter(|k| !present.contains_key(*k))
                .cloned()
                .collect();
            upserts.push((order, present.into_iter().collect::<Vec<_>>()));
            deletes.push((order, gone));
        }

        let mut results: BTreeMap<(usize, RecordKey), Result<(), RowError>> = BTreeMap::new();
        // Parents before children for upserts; children before parents for deletes.
        for (order, rows) in upserts {
            let table = &self.map.tables[order];
            if out.config_fault.is_some() || rows.is_empty() {
                continue;
            }
            let started = Instant::now();
            let n = rows.len();
            let outcome = self.isolate(table, Write::Upsert, rows).await;
            out.config_fault = outcome.fault;
            let ok = outcome.results.iter().filter(|(_, r)| r.is_ok()).count();
            out.rows_upserted += ok as u64;
            tracing::info!(table = %table.target, rows = n, ok, ms = started.elapsed().as_millis() as u64, "upserted table batch");
            results.extend(outcome.results.into_iter().map(|(k, r)| ((order, k), r)));
        }
        for (order, keys) in deletes.into_iter().rev() {
            let table = &self.map.tables[order];
            if out.config_fault.is_some() || keys.is_empty() {
                continue;
            }
            let started = Instant::now();
            let rows: Vec<(RecordKey, JsonRow)> =
                keys.into_iter().map(|k| (k, JsonRow::new())).collect();
            let n = rows.len();
            let outcome = self.isolate(table, Write::Delete, rows).await;
            out.config_fault = outcome.fault;
            let ok = outcome.results.iter().filter(|(_, r)| r.is_ok()).count();
            out.rows_deleted += ok as u64;
            tracing::info!(table = %table.target, rows = n, ok, ms = started.elapsed().as_millis() as u64, "deleted table batch");
            results.extend(outcome.results.into_iter().map(|(k, r)| ((order, k), r)));
        }

        for (order, records) in by_table
            .into_iter()
            .filter(|(order, _)| !unloadable.contains(order))
        {
            for (key, items) in records {
                for item in items {
                    let settlement = match (results.get(&(order, key.clone())), &out.config_fault) {
                        (Some(Ok(())), _) => SettleItem {
                            id: item.id,
                            claim: item.claim,
                            outcome: Settlement::Synced,
                        },
                        (Some(Err(e)), _) => self.settle_error(&item, e),
                        (None, Some(fault)) => SettleItem {
                            id: item.id,
                            claim: item.claim,
                            outcome: Settlement::Release {
                                delay: self.policy.fault_delay,
                                error: Some(fault.clone()),
                            },
                        },
                        // Every loaded record was sent or faulted; nothing else is left.
                        (None, None) => continue,
                    };
                    out.settlements.push(settlement);
                }
            }
        }
        Ok(out)
    }

    /// Table position and parsed key, or why the item can never sync as it is.
    fn classify(&self, item: &QueueItem) -> Result<(usize, RecordKey), String> {
        let Some(table) = self.map.by_source(&item.table) else {
            return Err(format!("table {} is not in the table map", item.table));
        };
        if !matches!(item.operation.as_str(), "INSERT" | "UPDATE" | "DELETE") {
            return Err(format!("unknown operation {:?}", item.operation));
        }
        let key = RecordKey::parse(&item.record_id).map_err(|e| e.to_string())?;
        if table.key_filter(&key).is_none() {
            let expected: Vec<_> = table
                .key_columns()
                .map(|c| c.source.name.as_str())
                .collect();
            return Err(format!(
                "RecordID {} does not name the key columns {expected:?}",
                item.record_id
            ));
        }
        Ok((self.map.order_of(&item.table), table.canonical_key(&key)))
    }

    fn settle_failed(&self, item: &QueueItem, error: String) -> SettleItem {
        SettleItem {
            id: item.id,
            claim: item.claim,
            outcome: Settlement::Failed { error },
        }
    }

    fn settle_error(&self, item: &QueueItem, error: &RowError) -> SettleItem {
        let attempt = item.attempts + 1;
        let outcome = if attempt >= self.policy.max_attempts {
            Settlement::Failed {
                error: error.message.clone(),
            }
        } else {
            Settlement::Retry {
                delay: self.policy.backoff.next(attempt, error.retry_after),
                error: error.message.clone(),
            }
        };
        SettleItem {
            id: item.id,
            claim: item.claim,
            outcome,
        }
    }

    async fn upsert(
        &self,
        table: &ResolvedTable,
        rows: &[(RecordKey, JsonRow)],
    ) -> Result<(), PostgrestError> {
        let body: Vec<JsonRow> = rows.iter().map(|(_, r)| r.clone()).collect();
        let conflict = table.on_conflict();
        if !table.has_portal_owned() {
            return self
                .supabase
                .upsert(
                    &table.target,
                    &body,
                    &conflict,
                    &UpsertMode::Merge { columns: None },
                )
                .await;
        }
        // Portal-owned columns are written when a row is created and never overwritten from
        // here afterwards: insert missing rows whole, then update only the clinic-owned columns
        // of each row. (An upsert limited to those columns cannot do it: PostgreSQL checks NOT
        // NULL on the proposed row before it sees the conflict.)
        self.supabase
            .upsert(&table.target, &body, &conflict, &UpsertMode::InsertMissing)
            .await?;
        let clinic = table.clinic_columns();
        let mut updates = Vec::with_capacity(rows.len());
        for (key, row) in rows {
            let values: JsonRow = row
                .iter()
                .filter(|(c, _)| clinic.contains(c))
                .map(|(c, v)| (c.clone(), v.clone()))
                .collect();
            if let Some(k) = table.key_filter(key) {
                updates.push((k, values));
            }
        }
        let (supabase, target) = (self.supabase.clone(), table.target.clone());
        futures_util::stream::iter(updates)
            .map(move |(key, values)| {
                let (supabase, target) = (supabase.clone(), target.clone());
                async move { supabase.update(&target, &key, &values).await }
            })
            .buffer_unordered(PARALLEL_UPDATES)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn delete(
        &self,
        table: &ResolvedTable,
        rows: &[(RecordKey, JsonRow)],
    ) -> Result<(), PostgrestError> {
        let keys: Vec<Vec<(String, Value)>> = rows
            .iter()
            .filter_map(|(k, _)| table.key_filter(k))
            .collect();
        self.supabase.delete(&table.target, &keys).await
    }

    /// Sends `rows` in one request; when PostgREST refuses the data, bisects to find the bad
    /// rows so that one poison row never fails the good ones beside it.
    async fn isolate(
        &self,
        table: &ResolvedTable,
        write: Write,
        rows: Vec<(RecordKey, JsonRow)>,
    ) -> Isolated {
        let mut results = Vec::new();
        // Ranges of `rows` still to send; a refused range is split in two.
        let mut stack: Vec<std::ops::Range<usize>> = Vec::new();
        stack.push(0..rows.len());
        let mut fault = None;
        while let Some(range) = stack.pop() {
            let chunk = &rows[range.clone()];
            let sent = match write {
                Write::Upsert => self.upsert(table, chunk).await,
                Write::Delete => self.delete(table, chunk).await,
            };
            match sent {
                Ok(()) => results.extend(chunk.iter().map(|(k, _)| (k.clone(), Ok(())))),
                Err(e) if e.class() == ErrorClass::ConfigFault => {
                    tracing::error!(error = %e, "Supabase refused the service key; forward sync paused");
                    fault = Some(e.to_string());
                    break;
                }
                Err(e) if row_specific(&e) && chunk.len() > 1 => {
                    let mid = range.start + chunk.len() / 2;
                    stack.push(mid..range.end);
                    stack.push(range.start..mid);
                }
                Err(e) => {
                    if chunk.len() == 1 {
                        tracing::warn!(table = %table.target, record = %chunk[0].0, error = %e, "row refused by Supabase");
                    } else {
                        tracing::warn!(table = %table.target, rows = chunk.len(), error = %e, "Supabase request failed");
                    }
                    let error = RowError {
                        message: e.to_string(),
                        retry_after: e.retry_after(),
                    };
                    results.extend(chunk.iter().map(|(k, _)| (k.clone(), Err(error.clone()))));
                }
            }
        }
        Isolated { results, fault }
    }
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Upsert,
    Delete,
}

struct Isolated {
    results: Vec<(RecordKey, Result<(), RowError>)>,
    fault: Option<String>,
}

/// A failure caused by some row's data (4xx other than auth, timeout and rate limit), as
/// opposed to one that would fail any request.
fn row_specific(e: &PostgrestError) -> bool {
    matches!(e, PostgrestError::Status { status, .. } if (400..500).contains(status) && !matches!(status, 401 | 403 | 408 | 429))
}

/// The queue's spelling of `key` (GUID case may differ between the trigger and the row).
fn find_key(records: &RecordItems, key: &RecordKey) -> Option<RecordKey> {
    if records.contains_key(key) {
        return Some(key.clone());
    }
    let lower = key.to_json().to_lowercase();
    records
        .keys()
        .find(|k| k.to_json().to_lowercase() == lower)
        .cloned()
}
