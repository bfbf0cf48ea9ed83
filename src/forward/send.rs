//! Sending one batch's rows to Supabase: upserts parents before children, then deletes
//! children before parents (so foreign keys hold), one request per table, and when Supabase
//! refuses a request for some row's data, bisection until the bad rows are alone, so that one
//! poison row never fails the good ones beside it. An error no row caused (an outage, a
//! configuration fault, an unknown column) stops the batch at once: no bisection, no attempt
//! spent.

use std::ops::Range;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};

use super::batch::{Batch, BatchOutcome, Halt, Results};
use crate::mapping::ResolvedTable;
use crate::retry::ErrorClass;
use crate::sqlserver::RecordKey;
use crate::supabase::{JsonRow, KeyFilter, PostgrestError, UpsertMode};

/// Row updates in flight at once for tables with portal-owned columns.
const PARALLEL_UPDATES: usize = 8;

/// What one table of a batch needs in Supabase: rows to upsert and keys to delete.
pub(super) struct TablePlan {
    pub(super) order: usize,
    pub(super) present: Vec<(RecordKey, JsonRow)>,
    pub(super) gone: Vec<RecordKey>,
}

/// Why a record did not sync, cloned onto every item of the record.
#[derive(Debug, Clone)]
pub(super) struct RowError {
    pub(super) message: String,
    pub(super) retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Upsert,
    Delete,
}

struct Isolated {
    results: Vec<(RecordKey, Result<(), RowError>)>,
    halt: Option<Halt>,
    answered: bool,
}

/// The halt an error no row caused means, or `None` for a row's own failure.
fn halt_for(table: &ResolvedTable, e: &PostgrestError) -> Option<Halt> {
    match e.class() {
        ErrorClass::Outage => Some(Halt::Outage {
            error: e.to_string(),
            retry_after: e.retry_after(),
        }),
        ErrorClass::ConfigFault if e.is_unknown_column() => {
            Some(Halt::UnknownColumn(e.to_string()))
        }
        ErrorClass::ConfigFault => {
            tracing::error!(table = %table.target, error = %e, "Supabase refused the key or the schema; forward sync paused");
            Some(Halt::ConfigFault(e.to_string()))
        }
        ErrorClass::RowRetryable | ErrorClass::Rejected => None,
    }
}

impl Batch<'_> {
    /// Upserts parents before children, then deletes children before parents; stops at a
    /// [`Halt`].
    pub(super) async fn send(&self, plans: Vec<TablePlan>, out: &mut BatchOutcome) -> Results {
        let mut results = Results::new();
        let mut deletes = Vec::new();
        for plan in plans {
            deletes.push((plan.order, plan.gone));
            if out.halt.is_none() && !plan.present.is_empty() {
                out.rows_upserted += self
                    .send_table(plan.order, Write::Upsert, plan.present, out, &mut results)
                    .await;
            }
        }
        for (order, gone) in deletes.into_iter().rev() {
            if out.halt.is_none() && !gone.is_empty() {
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
        out.halt = outcome.halt;
        out.answered |= outcome.answered;
        let ok = outcome.results.iter().filter(|(_, r)| r.is_ok()).count();
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(table = %table.target, ?write, rows = n, ok, ms, "table batch synced");
        results.extend(outcome.results.into_iter().map(|(k, r)| ((order, k), r)));
        ok as u64
    }

    /// Sends `rows` in one request; when Supabase refuses it for some row's data
    /// ([`ErrorClass::is_row_specific`]), bisects to find the bad rows. Stops at the first
    /// error no row caused: the rows not sent by then have no result.
    async fn isolate(
        &self,
        table: &ResolvedTable,
        write: Write,
        rows: Vec<(RecordKey, JsonRow)>,
    ) -> Isolated {
        let mut answered = false;
        let mut results = Vec::new();
        // Ranges of `rows` still to send; a refused range is split in two.
        let mut stack: Vec<Range<usize>> = Vec::new();
        stack.push(0..rows.len());
        while let Some(range) = stack.pop() {
            let chunk = &rows[range.clone()];
            let sent = match write {
                Write::Upsert => self.upsert(table, chunk).await,
                Write::Delete => self.delete(table, chunk).await,
            };
            let Err(e) = sent else {
                answered = true;
                results.extend(chunk.iter().map(|(k, _)| (k.clone(), Ok(()))));
                continue;
            };
            if let Some(halt) = halt_for(table, &e) {
                let answered = answered || !matches!(halt, Halt::Outage { .. });
                return Isolated {
                    results,
                    halt: Some(halt),
                    answered,
                };
            }
            answered = true;
            match e.class() {
                class if class.is_row_specific() && chunk.len() > 1 => {
                    let mid = range.start + chunk.len() / 2;
                    stack.push(mid..range.end);
                    stack.push(range.start..mid);
                }
                _ => {
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
        Isolated {
            results,
            halt: None,
            answered,
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
                .upsert(&table.target, &body, &conflict, &UpsertMode::Merge)
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
        let updates: Vec<(KeyFilter, JsonRow)> = rows
            .iter()
            .filter_map(|(key, row)| {
                let values: JsonRow = row
                    .iter()
                    .filter(|(c, _)| clinic.contains(c))
                    .map(|(c, v)| (c.clone(), v.clone()))
                    .collect();
                Some((table.key_filter(key)?, values))
            })
            .collect();
        let (supabase, target) = (self.supabase, table.target.as_str());
        futures_util::stream::iter(updates)
            .map(|(key, values)| async move { supabase.update(target, &key, &values).await })
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
        let keys: Vec<KeyFilter> = rows
            .iter()
            .filter_map(|(k, _)| table.key_filter(k))
            .collect();
        self.supabase.delete(&table.target, &keys).await
    }
}
