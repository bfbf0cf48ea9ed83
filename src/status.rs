//! In-process counters and last-known states for `GET /api/sync/status`. Durable numbers (queue
//! counts, inbox depth) come from their owners at request time; this holds what only the
//! running agent knows.

use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ForwardState {
    pub notifications: u64,
    pub drains: u64,
    pub rows_upserted: u64,
    pub rows_deleted: u64,
    pub items_synced: u64,
    pub items_retried: u64,
    pub items_failed: u64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Set while Supabase refuses the service key (401/403): forward work is paused.
    pub config_fault: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReverseState {
    pub webhooks_accepted: u64,
    pub webhooks_rejected: u64,
    pub webhooks_ignored: u64,
    pub events_applied: u64,
    pub events_unchanged: u64,
    pub events_stale: u64,
    pub last_applied_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub catchup_last_run_at: Option<DateTime<Utc>>,
    pub catchup_last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Status {
    forward: Mutex<ForwardState>,
    reverse: Mutex<ReverseState>,
    /// Set when the table map could not be resolved against SQL Server yet.
    startup_problem: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay meaningful even if a panicking thread held the lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Status {
    pub fn forward(&self) -> MutexGuard<'_, ForwardState> {
        lock(&self.forward)
    }

    pub fn reverse(&self) -> MutexGuard<'_, ReverseState> {
        lock(&self.reverse)
    }

    pub fn set_startup_problem(&self, problem: Option<String>) {
        *lock(&self.startup_problem) = problem;
    }

    pub fn startup_problem(&self) -> Option<String> {
        lock(&self.startup_problem).clone()
    }

    pub fn forward_error(&self, error: &str) {
        let mut f = self.forward();
        f.last_error = Some(error.to_owned());
        f.last_error_at = Some(Utc::now());
    }

    pub fn reverse_error(&self, error: &str) {
        let mut r = self.reverse();
        r.last_error = Some(error.to_owned());
        r.last_error_at = Some(Utc::now());
    }
}
