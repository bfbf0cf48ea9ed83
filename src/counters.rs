//! In-process counters behind a lock, for the status endpoint: each data path defines its own
//! state (`forward::counters`, `reverse::counters`) and the `record` methods that alone write
//! it; this owns only the lock, the snapshot and the per-table totals both paths keep.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Items one table synced and gave up on since the agent started (`GET /metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TableTotals {
    pub(crate) synced: u64,
    pub(crate) failed: u64,
}

/// Per table, by name.
pub(crate) type PerTable = BTreeMap<String, TableTotals>;

/// Adds `more` into `totals`.
pub(crate) fn add_per_table(totals: &mut PerTable, more: &PerTable) {
    for (table, t) in more {
        let into = totals.entry(table.clone()).or_default();
        into.synced += t.synced;
        into.failed += t.failed;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters<S> {
    state: Mutex<S>,
}

impl<S: Clone> Counters<S> {
    /// For the owning path's `record` methods.
    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        // Counters stay meaningful even if a panicking thread held the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn snapshot(&self) -> S {
        self.lock().clone()
    }
}
