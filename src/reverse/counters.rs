//! The reverse path's in-process counters and last-known states, shown by `GET
//! /api/sync/status`. Durable numbers (inbox depth, dead events) come from the inbox at request
//! time; this holds what only the running agent knows. Written only through the `record_*`
//! methods, by the reverse side itself.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::counters::{Counters, PerTable};

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ReverseState {
    pub(crate) webhooks_accepted: u64,
    pub(crate) webhooks_rejected: u64,
    pub(crate) webhooks_ignored: u64,
    pub(crate) events_applied: u64,
    pub(crate) events_unchanged: u64,
    pub(crate) events_stale: u64,
    pub(crate) events_given_up: u64,
    pub(crate) last_applied_at: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<DateTime<Utc>>,
    pub(crate) catchup_last_run_at: Option<DateTime<Utc>>,
    pub(crate) catchup_last_error: Option<String>,
    /// Per Supabase table, for `GET /metrics`: events taken care of (written, or found already
    /// there) and given up on.
    #[serde(skip)]
    pub(crate) per_table: PerTable,
}

/// What became of one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebhookVerdict {
    Accepted,
    Ignored,
    Rejected,
}

/// What became of one inbox event the applier took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventVerdict {
    /// SQL Server's row changed.
    Applied,
    /// SQL Server was asked and already held it (or the row is gone).
    Unchanged,
    /// The plan needed no write.
    NotNeeded,
    /// SQL Server already has this version or a newer one.
    Stale,
    /// It cannot be applied: kept as a dead event for inspection and `retry-failed`.
    GivenUp,
}

pub(crate) type ReverseCounters = Counters<ReverseState>;

impl ReverseCounters {
    pub(crate) fn record_webhook(&self, verdict: WebhookVerdict) {
        let mut r = self.lock();
        match verdict {
            WebhookVerdict::Accepted => r.webhooks_accepted += 1,
            WebhookVerdict::Ignored => r.webhooks_ignored += 1,
            WebhookVerdict::Rejected => r.webhooks_rejected += 1,
        }
    }

    /// What became of one event of Supabase table `table`.
    pub(crate) fn record_event(&self, table: &str, verdict: EventVerdict) {
        let mut r = self.lock();
        match verdict {
            EventVerdict::Applied => r.events_applied += 1,
            EventVerdict::Unchanged | EventVerdict::NotNeeded => r.events_unchanged += 1,
            EventVerdict::Stale => r.events_stale += 1,
            EventVerdict::GivenUp => r.events_given_up += 1,
        }
        let totals = r.per_table.entry(table.to_owned()).or_default();
        match verdict {
            EventVerdict::GivenUp => totals.failed += 1,
            _ => totals.synced += 1,
        }
        if matches!(verdict, EventVerdict::Applied | EventVerdict::Unchanged) {
            r.last_applied_at = Some(Utc::now());
        }
    }

    pub(crate) fn record_error(&self, error: &str) {
        let mut r = self.lock();
        r.last_error = Some(error.to_owned());
        r.last_error_at = Some(Utc::now());
    }

    /// A catch-up run finished: `error` is why it failed, if it did.
    pub(crate) fn record_catchup(&self, error: Option<String>) {
        let mut r = self.lock();
        r.catchup_last_run_at = Some(Utc::now());
        r.catchup_last_error = error;
    }
}
