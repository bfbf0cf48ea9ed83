//! One claimed batch, start to finish: group items by record (coalescing), load the current
//! rows, send them ([`super::send`]: upserts of what exists, deletes of what is gone), and turn
//! every item into a settlement, or, when sending stopped for a reason no row caused ([`Halt`]:
//! an outage, a configuration fault, a column Supabase does not know), leave the unsent items
//! for the worker to release. Never talks to the queue itself; the worker settles.

use std::collections::BTreeMap;
use std::time::Duration;

use super::pipeline::Lanes;
use super::send::{RowError, TablePlan, WaitsOn};
use crate::mapping::ResolvedMap;
use crate::retry::{Decision, ErrorClass, RetryPolicy};
use crate::sqlserver::{
    Op, QueueId, QueueItem, RecordKey, RecordKeyError, SettleItem, Settlement, SqlStore,
    StoreError, UnknownOp,
};
use crate::supabase::{JsonRow, SupabaseApi};
use crate::sync_state::SyncState;

/// Settings a batch needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchPolicy {
    pub(crate) retry: RetryPolicy,
}

/// Why a batch stopped sending before every record was sent: nothing the rows did, so the
/// records not sent are released with their attempts untouched ([`BatchOutcome::release`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Halt {
    /// Supabase is not answering properly: the forward path backs off as a whole.
    Outage {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Supabase refused the key or the schema: work waits until the configuration is fixed.
    ConfigFault(String),
    /// Supabase does not know a column the map sends: its schema may have changed.
    UnknownColumn(String),
}

impl Halt {
    pub(crate) fn error(&self) -> &str {
        match self {
            Self::Outage { error, .. } | Self::ConfigFault(error) | Self::UnknownColumn(error) => {
                error
            }
        }
    }
}

/// The result of one batch.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    pub(crate) settlements: Vec<SettleItem>,
    pub(crate) rows_upserted: u64,
    pub(crate) rows_deleted: u64,
    /// Portal-owned columns the clinic changed that Supabase kept, its edit being newer.
    pub(crate) conflicts_portal_won: u64,
    /// Set when sending stopped early; `unsent` holds the items it left.
    pub(crate) halt: Option<Halt>,
    /// The halt was another batch's, in flight at the same time: this one only stopped.
    pub(crate) halt_inherited: bool,
    /// Items of records not sent because of `halt`, still to be settled.
    pub(crate) unsent: Vec<QueueItem>,
    /// Some Supabase request got an answer that was not an outage's (success or refusal).
    pub(crate) answered: bool,
    /// Each claimed item's table, so the counters can count per table.
    pub(crate) tables: BTreeMap<QueueId, String>,
}

impl BatchOutcome {
    /// Settles the unsent items as not attempted: due again after `delay`, attempts untouched.
    pub(crate) fn release(&mut self, delay: Duration) {
        let error = self.halt.as_ref().map(|h| h.error().to_owned());
        for item in self.unsent.drain(..) {
            let outcome = Settlement::Release {
                delay,
                error: error.clone(),
            };
            self.settlements.push(settle(&item, outcome));
        }
    }

    /// The configuration fault that stopped this batch, if one did.
    pub(crate) fn config_fault(&self) -> Option<String> {
        match &self.halt {
            Some(Halt::ConfigFault(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

/// Why a queue item can never sync as it is.
#[derive(Debug, thiserror::Error)]
enum ItemProblem {
    #[error("table {0} is not in the table map")]
    UnknownTable(String),
    #[error(transparent)]
    Operation(#[from] UnknownOp),
    #[error(transparent)]
    RecordId(#[from] RecordKeyError),
    #[error("RecordID {record_id} does not name the key columns {expected:?}")]
    WrongKey {
        record_id: String,
        expected: Vec<String>,
    },
}

pub(super) type RecordItems = BTreeMap<RecordKey, Vec<QueueItem>>;

/// Per record (table position, key): whether its write succeeded.
pub(super) type Results = BTreeMap<(usize, RecordKey), Result<(), RowError>>;

pub(crate) struct Batch<'a> {
    pub(crate) store: &'a dyn SqlStore,
    pub(crate) supabase: &'a dyn SupabaseApi,
    pub(crate) map: &'a ResolvedMap,
    pub(crate) policy: BatchPolicy,
    /// What was last synced of the portal-owned columns (README "Who wins").
    pub(crate) state: &'a SyncState,
}

/// A batch whose rows were read from SQL Server, ready to send.
pub(super) struct Prepared {
    out: BatchOutcome,
    by_table: BTreeMap<usize, RecordItems>,
    plans: Vec<TablePlan>,
}

impl Prepared {
    /// Gives up on sending: the settlements reading the rows already decided (items that can
    /// never sync, tables that could not be read), and the items still to send.
    pub(super) fn abandon(self) -> (Vec<SettleItem>, Vec<QueueItem>) {
        let items = self
            .by_table
            .into_values()
            .flat_map(|records| records.into_values().flatten())
            .collect();
        (self.out.settlements, items)
    }

    /// The records it holds (table position, key): two batches in flight must not share one.
    pub(super) fn records(&self) -> impl Iterator<Item = (usize, &RecordKey)> + '_ {
        self.by_table
            .iter()
            .flat_map(|(&order, records)| records.keys().map(move |k| (order, k)))
    }
}

impl Batch<'_> {
    /// claim's items → grouped by record → current rows. Nothing is sent yet.
    pub(super) async fn prepare(&self, items: Vec<QueueItem>) -> Result<Prepared, StoreError> {
        let mut out = BatchOutcome {
            tables: items.iter().map(|i| (i.id, i.table.clone())).collect(),
            ..BatchOutcome::default()
        };
        let mut by_table = self.group(items, &mut out);
        let plans = self.load(&mut by_table, &mut out).await?;
        Ok(Prepared {
            out,
            by_table,
            plans,
        })
    }

    /// Sends a prepared batch as batch `ticket` of `lanes` and turns every item into a
    /// settlement (or leaves it unsent, at a halt).
    pub(super) async fn finish(
        &self,
        prepared: Prepared,
        lanes: &Lanes,
        ticket: u64,
    ) -> Result<BatchOutcome, StoreError> {
        let Prepared {
            mut out,
            by_table,
            plans,
        } = prepared;
        let results = self.send(plans, &mut out, lanes, ticket).await;
        self.settle_records(by_table, &results, &mut out).await?;
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
                    out.settlements.push(settle(
                        &item,
                        Settlement::Failed {
                            error: why.to_string(),
                        },
                    ));
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
                // The table or a column is missing, or a permission: not any row's fault, so
                // nothing of this batch is sent and every item is released with its attempts
                // untouched, like in an outage, until the setup is fixed.
                Err(e) if e.class() == ErrorClass::ConfigFault => {
                    tracing::error!(table = table.source(), error = %e, "cannot read rows from SQL Server; forward sync paused");
                    out.halt = Some(Halt::ConfigFault(format!(
                        "loading rows from {}: {e}",
                        table.source()
                    )));
                    return Ok(Vec::new());
                }
                Err(e) => {
                    let error = RowError {
                        message: format!("loading rows from {}: {e}", table.source()),
                        retry_after: None,
                        waits_on: None,
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
            // A clinic edit's time is its newest queue item's (README "Who wins").
            let times = records
                .iter()
                .filter_map(|(k, items)| {
                    Some((k.clone(), items.iter().map(|i| i.created_at).max()?))
                })
                .collect();
            plans.push(TablePlan {
                order,
                present: present.into_iter().collect(),
                gone,
                times,
            });
        }
        by_table.retain(|order, _| !unloadable.contains(order));
        Ok(plans)
    }

    /// Turns every grouped item into a settlement from its record's result; items of records a
    /// halt left unsent go to `out.unsent`, for the worker to release once it knows for how long.
    async fn settle_records(
        &self,
        by_table: BTreeMap<usize, RecordItems>,
        results: &Results,
        out: &mut BatchOutcome,
    ) -> Result<(), StoreError> {
        // Asked once per table and direction, and only when a row was refused for a key.
        let mut queued: BTreeMap<(usize, WaitsOn), bool> = BTreeMap::new();
        for (order, records) in by_table {
            for (key, items) in records {
                let result = results.get(&(order, key));
                let waiting = match result {
                    Some(Err(e)) => self.waits_on_queued(order, e, &mut queued).await?,
                    _ => false,
                };
                for item in items {
                    let settlement = match result {
                        Some(Ok(())) => settle(&item, Settlement::Synced),
                        Some(Err(e)) if waiting => self.settle_waiting(&item, e),
                        Some(Err(e)) => self.settle_error(&item, e),
                        // Every loaded record is sent unless a halt stopped the batch.
                        None => {
                            out.unsent.push(item);
                            continue;
                        }
                    };
                    out.settlements.push(settlement);
                }
            }
        }
        Ok(())
    }

    /// Whether `error` refused a row of table `order` for a foreign key while a record it may
    /// wait for is still queued (`Pending`, claimed by anyone): for an upsert, an item of a table
    /// earlier in the map (its parents); for a delete, of a table later in it (its children).
    /// A store that answers but cannot tell leaves it the row's own fault.
    async fn waits_on_queued(
        &self,
        order: usize,
        error: &RowError,
        known: &mut BTreeMap<(usize, WaitsOn), bool>,
    ) -> Result<bool, StoreError> {
        let Some(waits) = error.waits_on else {
            return Ok(false);
        };
        if let Some(&queued) = known.get(&(order, waits)) {
            return Ok(queued);
        }
        let others = match waits {
            WaitsOn::Parents => self.map.tables.get(..order),
            WaitsOn::Children => self.map.tables.get(order.saturating_add(1)..),
        };
        let tables: Vec<String> = others
            .unwrap_or_default()
            .iter()
            .map(|t| t.source().to_owned())
            .collect();
        let queued = match self.store.unsettled_in(&tables).await {
            Ok(queued) => queued,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether a refused row's parent is queued; charging the row");
                false
            }
        };
        known.insert((order, waits), queued);
        Ok(queued)
    }

    /// A row refused for a record that is itself still queued: not the row's own reason, so
    /// its attempts are untouched (a parent stranded in a dead agent's claim waits out the
    /// lease, which may outlast the whole retry schedule). Due again after the backoff its next
    /// attempt would get: it is tried again on a durable schedule, never in a busy loop.
    fn settle_waiting(&self, item: &QueueItem, error: &RowError) -> SettleItem {
        let backoff = self.policy.retry.backoff;
        let delay = backoff.next(item.attempts.saturating_add(1), error.retry_after);
        let waits = match error.waits_on {
            Some(WaitsOn::Children) => "a record referencing it",
            _ => "a record it references",
        };
        let error = format!("{} (not charged: {waits} is still queued)", error.message);
        settle(
            item,
            Settlement::Release {
                delay,
                error: Some(error),
            },
        )
    }

    /// Table position and parsed key, or why the item can never sync as it is.
    fn classify(&self, item: &QueueItem) -> Result<(usize, RecordKey), ItemProblem> {
        let Some(table) = self.map.by_source(&item.table) else {
            return Err(ItemProblem::UnknownTable(item.table.clone()));
        };
        // The operation only has to be one the triggers write: the row as it is now, loaded
        // above, decides between upsert and delete.
        item.operation.parse::<Op>()?;
        let key = RecordKey::parse(&item.record_id)?;
        let key = table.canonical_key(&key);
        if table.key_filter(&key).is_none() {
            return Err(ItemProblem::WrongKey {
                record_id: item.record_id.clone(),
                expected: table.key_columns().map(|c| c.source.name.clone()).collect(),
            });
        }
        Ok((self.map.order_of(&item.table), key))
    }

    /// A failed attempt of `item`, for its own reasons (its data, its parent missing): retried
    /// on the durable schedule, or given up on after the last attempt.
    fn settle_error(&self, item: &QueueItem, error: &RowError) -> SettleItem {
        let error_text = error.message.clone();
        let outcome = match self
            .policy
            .retry
            .after_failure(item.attempts, error.retry_after)
        {
            Decision::Retry(delay) => Settlement::Retry {
                delay,
                error: error_text,
            },
            Decision::GiveUp => Settlement::Failed { error: error_text },
        };
        settle(item, outcome)
    }
}

fn settle(item: &QueueItem, outcome: Settlement) -> SettleItem {
    SettleItem {
        id: item.id,
        claim: item.claim,
        outcome,
    }
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

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
