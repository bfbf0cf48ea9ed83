//! The order that lets several batches be in flight at once without a record's later change
//! overtaking an earlier one, or a child reaching Supabase before its parent.
//!
//! A batch sends in stages: the upserts of each table, parents first, then the deletes of each
//! table, children first ([`super::send`]). Every stage is a lane, and batches pass through
//! the lanes in the order they were claimed (a ticket each) without overtaking: batch N+1
//! enters a stage only once batch N has entered it, so only after N's earlier stages were
//! answered. Batches may share a lane (their requests to one table in flight together: their
//! records are disjoint, see below), which keeps a table's lane from capping throughput at
//! one request per round trip. Every cross-batch order the sequential drain kept still holds:
//! - a child upserted by N+1 finds the parents N upserted (N entered the child's lane, which
//!   comes later, only after its parents' lane was answered);
//! - a parent deleted by N+1 has lost the children N upserted (every delete lane comes after
//!   every upsert lane).
//!
//! Batches may finish in any order. So a success one of them reports must not clear the
//! shared backoff another one's outage set: the worker reports a success only while no batch of
//! the drain has met an outage ([`Lanes::halt`]).
//!
//! Two batches holding the same record are not overlapped at all: the worker waits for the
//! earlier to finish first ([`super::worker`]), because a record's delete stage comes after
//! its upsert stage and the lanes alone would let a re-insert overtake the delete.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

use super::batch::Halt;

/// A stage of a batch: the table (its position in parent-first order) and the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Upsert(usize),
    Delete(usize),
}

/// One lane per stage, each holding the ticket of the batch allowed in next (every earlier one
/// has entered).
pub(super) struct Lanes {
    lanes: Vec<watch::Sender<u64>>,
    /// The ticket of the next batch, in claim order.
    next_ticket: AtomicU64,
    /// The first halt any batch hit: later stages of every batch in flight stop too.
    halt: Mutex<Option<Halt>>,
}

impl Lanes {
    /// Lanes for a map of `tables` tables (an upsert and a delete stage each).
    pub(super) fn new(tables: usize) -> Self {
        Self {
            lanes: (0..tables * 2).map(|_| watch::Sender::new(0)).collect(),
            next_ticket: AtomicU64::new(0),
            halt: Mutex::new(None),
        }
    }

    /// The next batch's place in line: call it in claim order.
    pub(super) fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// How many tables these lanes were made for.
    pub(super) fn tables(&self) -> usize {
        self.lanes.len() / 2
    }

    pub(super) fn stages(&self) -> usize {
        self.lanes.len()
    }

    /// What the batch does in `stage`: the upserts of the table at each position in
    /// parent-first order, then the deletes, children first.
    pub(super) fn step(&self, stage: usize) -> Step {
        let tables = self.tables();
        if stage < tables {
            Step::Upsert(stage)
        } else {
            Step::Delete(self.lanes.len().saturating_sub(stage + 1))
        }
    }

    /// Waits until batch `ticket` may enter `stage` (every earlier batch has entered it), and
    /// lets the next batch in after it. Every batch enters every stage in turn, halted or not,
    /// or the batches behind it would wait forever.
    pub(super) async fn enter(&self, stage: usize, ticket: u64) {
        let Some(lane) = self.lanes.get(stage) else {
            return;
        };
        let mut turn = lane.subscribe();
        // The sender outlives this borrow, so the channel cannot close while we wait.
        let _ = turn.wait_for(|&next| next >= ticket).await;
        lane.send_modify(|next| *next = (*next).max(ticket + 1));
    }

    /// Records the first halt, and answers whether `halt` was it; later ones are
    /// consequences of the same cause.
    pub(super) fn halted(&self, halt: &Halt) -> bool {
        let mut slot = self.halt.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(halt.clone());
        true
    }

    /// The halt that stops every batch's remaining stages, if one was hit.
    pub(super) fn halt(&self) -> Option<Halt> {
        self.halt.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
