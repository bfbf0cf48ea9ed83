//! Sending one batch's rows to Supabase: upserts parents before children, then deletes
//! children before parents (so foreign keys hold), one request per table, each a stage of
//! the pipeline ([`super::pipeline`]), and when Supabase
//! refuses a request for some row's data, bisection until the bad rows are alone, so that one
//! poison row never fails the good ones beside it. An error no row caused (an outage, a
//! configuration fault, an unknown column) stops the batch at once: no bisection, no attempt
//! spent.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::batch::{Batch, BatchOutcome, Halt, Results};
use super::pipeline::{Lanes, Step};
use super::push::{clinic_time, ClinicTimes};
use crate::mapping::ResolvedTable;
use crate::retry::ErrorClass;
use crate::sqlserver::RecordKey;
use crate::supabase::{JsonRow, KeyFilter, PostgrestError, UpsertMode};

/// What one table of a batch needs in Supabase: rows to upsert and keys to delete.
pub(super) struct TablePlan {
    pub(super) order: usize,
    pub(super) present: Vec<(RecordKey, JsonRow)>,
    pub(super) gone: Vec<RecordKey>,
    /// When the clinic changed each record (for portal-owned columns).
    pub(super) times: ClinicTimes,
}

/// Requests one stage may have in flight at once for one table...
const REQUESTS_IN_FLIGHT: usize = 4;
/// ...each of at least this many rows (a small batch stays one request).
const REQUEST_ROWS_MIN: usize = 250;

/// `rows` in up to [`REQUESTS_IN_FLIGHT`] parts of about equal size, none (but a lone one)
/// below [`REQUEST_ROWS_MIN`] rows: over a WAN a request's round trip, not its size, is the
/// cost, and PostgreSQL works on several at once.
fn split_for_flight(mut rows: Vec<(RecordKey, JsonRow)>) -> Vec<Vec<(RecordKey, JsonRow)>> {
    let parts = rows
        .len()
        .div_ceil(REQUEST_ROWS_MIN)
        .clamp(1, REQUESTS_IN_FLIGHT);
    let size = rows.len().div_ceil(parts).max(1);
    let mut out = Vec::with_capacity(parts);
    while rows.len() > size {
        let rest = rows.split_off(size);
        out.push(std::mem::replace(&mut rows, rest));
    }
    out.push(rows);
    out
}

/// Why a record did not sync, cloned onto every item of the record.
#[derive(Debug, Clone)]
pub(super) struct RowError {
    pub(super) message: String,
    pub(super) retry_after: Option<Duration>,
    /// Set when Supabase refused the row for a foreign key (23503): it may be waiting for
    /// another record, which the batch asks the queue about before charging an attempt.
    pub(super) waits_on: Option<WaitsOn>,
}

/// The records a row refused for a foreign key waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum WaitsOn {
    /// An upsert: the row it references is not in Supabase yet (tables earlier in the map).
    Parents,
    /// A delete: rows still reference it (tables later in the map).
    Children,
}

#[derive(Clone, Copy)]
enum Write<'p> {
    Upsert(&'p ClinicTimes),
    Delete,
}

impl std::fmt::Debug for Write<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Upsert(_) => "Upsert",
            Self::Delete => "Delete",
        })
    }
}

struct Isolated {
    results: Vec<(RecordKey, Result<(), RowError>)>,
    halt: Option<Halt>,
    answered: bool,
    /// Shared columns a versioned push left to the portal's newer edit.
    portal_won: u64,
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
    /// Upserts parents before children, then deletes children before parents, one stage at a
    /// time in the order of `lanes` (batch `ticket` enters a stage after every earlier batch
    /// entered it); stops at a [`Halt`], its own or another batch's.
    pub(super) async fn send(
        &self,
        plans: Vec<TablePlan>,
        out: &mut BatchOutcome,
        lanes: &Lanes,
        ticket: u64,
    ) -> Results {
        let mut results = Results::new();
        let mut plans: BTreeMap<usize, TablePlan> =
            plans.into_iter().map(|p| (p.order, p)).collect();
        // A fault met while reading rows (before any stage) stops the others too.
        if let Some(halt) = &out.halt {
            out.halt_inherited = !lanes.halted(halt);
        }
        for stage in 0..lanes.stages() {
            lanes.enter(stage, ticket).await;
            if out.halt.is_none() {
                if let Some(halt) = lanes.halt() {
                    out.halt = Some(halt);
                    out.halt_inherited = true;
                }
            }
            if out.halt.is_none() {
                self.send_step(lanes.step(stage), &mut plans, out, &mut results)
                    .await;
                if let Some(halt) = &out.halt {
                    // Batches already under way may meet the same outage themselves: only
                    // the first counts it (the shared backoff grows once per cause).
                    out.halt_inherited = !lanes.halted(halt);
                }
            }
        }
        results
    }

    /// One stage: the upserts or the deletes of one table, if the batch has any.
    async fn send_step(
        &self,
        step: Step,
        plans: &mut BTreeMap<usize, TablePlan>,
        out: &mut BatchOutcome,
        results: &mut Results,
    ) {
        match step {
            Step::Upsert(order) => {
                let Some(plan) = plans.get_mut(&order).filter(|p| !p.present.is_empty()) else {
                    return;
                };
                let present = std::mem::take(&mut plan.present);
                let times = std::mem::take(&mut plan.times);
                out.rows_upserted += self
                    .send_table(order, Write::Upsert(&times), present, out, results)
                    .await;
            }
            Step::Delete(order) => {
                let Some(plan) = plans.get_mut(&order).filter(|p| !p.gone.is_empty()) else {
                    return;
                };
                let rows = std::mem::take(&mut plan.gone)
                    .into_iter()
                    .map(|k| (k, JsonRow::new()))
                    .collect();
                out.rows_deleted += self
                    .send_table(order, Write::Delete, rows, out, results)
                    .await;
            }
        }
    }

    /// One table's upsert or delete, isolated; returns how many rows succeeded.
    async fn send_table(
        &self,
        order: usize,
        write: Write<'_>,
        rows: Vec<(RecordKey, JsonRow)>,
        out: &mut BatchOutcome,
        results: &mut Results,
    ) -> u64 {
        let table = &self.map.tables[order];
        let started = Instant::now();
        let n = rows.len();
        // Distinct records of one table: their requests may be in flight together.
        let outcomes = join_all(
            split_for_flight(rows)
                .into_iter()
                .map(|part| self.isolate(table, write, part)),
        )
        .await;
        let mut ok = 0;
        for outcome in outcomes {
            if out.halt.is_none() {
                out.halt = outcome.halt;
            }
            out.answered |= outcome.answered;
            out.conflicts_portal_won += outcome.portal_won;
            ok += outcome.results.iter().filter(|(_, r)| r.is_ok()).count();
            results.extend(outcome.results.into_iter().map(|(k, r)| ((order, k), r)));
        }
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(table = %table.target, ?write, rows = n, ok, ms, "table batch synced");
        ok as u64
    }

    /// Sends `rows` in one request; when Supabase refuses it for some row's data
    /// ([`ErrorClass::is_row_specific`]), bisects to find the bad rows. Stops at the first
    /// error no row caused: the rows not sent by then have no result.
    async fn isolate(
        &self,
        table: &ResolvedTable,
        write: Write<'_>,
        rows: Vec<(RecordKey, JsonRow)>,
    ) -> Isolated {
        let mut answered = false;
        let mut portal_won = 0;
        let mut results = Vec::new();
        // Ranges of `rows` still to send; a refused range is split in two.
        let mut stack: Vec<Range<usize>> = Vec::new();
        stack.push(0..rows.len());
        while let Some(range) = stack.pop() {
            let chunk = &rows[range.clone()];
            let sent = match write {
                Write::Upsert(times) if table.has_portal_owned() => {
                    self.push(table, chunk, times).await.map(|won| {
                        portal_won += won;
                    })
                }
                Write::Upsert(times) => self.upsert(table, chunk, times).await,
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
                    portal_won,
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
                    let waits_on = e.is_foreign_key_violation().then_some(match write {
                        Write::Upsert(_) => WaitsOn::Parents,
                        Write::Delete => WaitsOn::Children,
                    });
                    let error = RowError {
                        message: e.to_string(),
                        retry_after: e.retry_after(),
                        waits_on,
                    };
                    results.extend(chunk.iter().map(|(k, _)| (k.clone(), Err(error.clone()))));
                }
            }
        }
        Isolated {
            results,
            halt: None,
            answered,
            portal_won,
        }
    }

    /// A table without portal-owned columns: one upsert, the clinic's row wins whole (unless
    /// Supabase holds a newer clinic version of it: a late write never wins).
    async fn upsert(
        &self,
        table: &ResolvedTable,
        rows: &[(RecordKey, JsonRow)],
        times: &ClinicTimes,
    ) -> Result<(), PostgrestError> {
        let body: Vec<JsonRow> = rows
            .iter()
            .map(|(k, r)| table.with_row_version(r.clone(), clinic_time(times, k)))
            .collect();
        self.supabase
            .upsert(
                &table.target,
                &body,
                &table.on_conflict(),
                &UpsertMode::Merge,
            )
            .await
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
