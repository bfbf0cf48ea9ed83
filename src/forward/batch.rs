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

/// What one table of a batch needs in Supabase: rows to upsert and keys to delete.
struct TablePlan {
    order: usize,
    present: Vec<(RecordKey, JsonRow)>,
    gone: Vec<RecordKey>,
}

/// Per record (table position, key): whether its write succeeded.
type Results = BTreeMap<(usize, RecordKey), Result<(), RowError>>;

impl Batch<'_> {
    /// claim's items → grouped by record → current rows → upserts and deletes → settlements.
    pub async fn run(&self, items: Vec<QueueItem>) -> Result<BatchOutcome, StoreError> {
        let mut out = BatchOutcome::default();
        let mut by_table = self.group(items, &mut out);
        let plans = self.load(&mut by_table, &mut out).await?;
        let results = self.send(plans, &mut out).await;
        self.settle_records(by_table, &results, &mut out);
        Ok(out)
    }

    /// Groups items by table (in parent-first order) and record; items that can never sync
    /// are settled `Failed` at once.
    fn group(&self, items: Vec<QueueItem>, out: &mut BatchOutcome) -> BTreeMap<usize, RecordItems> {
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
        by_table
    }

    /// Loads the current rows of every record. A table whose rows cannot be read (but whose
    /// server answers) has its items settled for retry and leaves `by_table`.
    async fn load(
        &self,
        by_table: &mut BTreeMap<usize, RecordItems>,
        out: &mut BatchOutcome,
    ) -> Result<Vec<TablePlan>, StoreError> {
        let mut plans = Vec::new();
        let mut unloadable = Vec::new();
        for (&order, records) in by_table.iter() {
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
            let gone = keys
                .into_iter()
                .filter(|k| !present.contains_key(k))
                .collect();
            plans.push(TablePlan {
                order,
                present: present.into_iter().collect(),
                gone,
            });
        }
        by_table.retain(|order, _| !unloadable.contains(order));
        Ok(plans)
    }

    /// Upserts parents before children, then deletes children before parents; stops at a
    /// configuration fault.
    async fn send(&self, plans: Vec<TablePlan>, out: &mut BatchOutcome) -> Results {
        let mut results = Results::new();
        let mut deletes = Vec::new();
        for plan in plans {
            deletes.push((plan.order, plan.gone));
            if out.config_fault.is_none() && !plan.present.is_empty() {
                out.rows_upserted += self
                    .send_table(plan.order, Write::Upsert, plan.present, out, &mut results)
                    .await;
            }
        }
        for (order, gone) in deletes.into_iter().rev() {
            if out.config_fault.is_none() && !gone.is_empty() {
                let rows = gone.into_iter().map(|k| (k, JsonRow::new())).collect();
                out.rows_deleted += self
                    .send_table(order, Write::Delete, rows, out, &mut results)
                    .await;
            }
        }
        results
    }

    /// One table's upsert or delete, isolated; returns how many rows succeeded.
    async fn send_table(
        &self,
        order: usize,
        write: Write,
        rows: Vec<(RecordKey, JsonRow)>,
        out: &mut BatchOutcome,
        results: &mut Results,
    ) -> u64 {
        let table = &self.map.tables[order];
        let started = Instant::now();
        let n = rows.len();
        let outcome = self.isolate(table, write, rows).await;
        out.config_fault = outcome.fault;
        let ok = outcome.results.iter().filter(|(_, r)| r.is_ok()).count();
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(table = %table.target, ?write, rows = n, ok, ms, "table batch synced");
        results.extend(outcome.results.into_iter().map(|(k, r)| ((order, k), r)));
        ok as u64
    }

    /// Turns every grouped item into a settlement: its record's result, or a release when a
    /// configuration fault stopped the batch before the record was sent.
    fn settle_records(
        &self,
        by_table: BTreeMap<usize, RecordItems>,
        results: &Results,
        out: &mut BatchOutcome,
    ) {
        for (order, records) in by_table {
            for (key, items) in records {
                let result = results.get(&(order, key));
                for item in items {
                    let outcome = match (result, &out.config_fault) {
                        (Some(Ok(())), _) => Settlement::Synced,
                        (Some(Err(e)), _) => {
                            out.settlements.push(self.settle_error(&item, e));
                            continue;
                        }
                        (None, Some(fault)) => Settlement::Release {
                            delay: self.policy.fault_delay,
                            error: Some(fault.clone()),
                        },
                        // Every loaded record was sent or faulted; nothing else is left.
                        (None, None) => continue,
                    };
                    out.settlements.push(SettleItem {
                        id: item.id,
                        claim: item.claim,
                        outcome,
                    });
                }
            }
        }
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
        let key = table.canonical_key(&key);
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
        Ok((self.map.order_of(&item.table), key))
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
