//! In-process counters behind a lock, for the status endpoint: each data path defines its own
//! state (`forward::counters`, `reverse::counters`) and the `record` methods that alone write
//! it; this owns only the lock and the snapshot.

use std::sync::{Mutex, MutexGuard};

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
