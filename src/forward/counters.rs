//! What forward work did: [`DrainReport`] for one drain (the answer of `POST
//! /api/sync/trigger`, built batch by batch), and [`ForwardCounters`], the running totals and
//! last-known states `GET /api/sync/status` shows. Durable numbers (queue counts) come from
//! SQL Server at request time. The counters are written only through their methods.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::batch::BatchOutcome;
use super::outage::OutageStatus;
use crate::counters::{add_per_table, Counters, PerTable};
use crate::sqlserver::Settlement;

/// What one drain (or one batch of it) did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct DrainReport {
    pub(crate) batches: u64,
    pub(crate) items_synced: u64,
    pub(crate) items_retried: u64,
    pub(crate) items_failed: u64,
    pub(crate) items_released: u64,
    pub(crate) rows_upserted: u64,
    pub(crate) rows_deleted: u64,
    /// Portal-owned columns edited on both sides where the portal's newer edit won.
    pub(crate) conflicts_portal_won: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The last error an item was settled with.
    #[serde(skip)]
    pub(crate) last_item_error: Option<String>,
    /// Set when Supabase refused the key: forward work is paused.
    #[serde(skip)]
    pub(crate) config_fault: Option<String>,
    /// Items synced and given up on, per SQL Server table.
    #[serde(skip)]
    pub(crate) per_table: PerTable,
}

impl DrainReport {
    /// One batch's settlements, counted.
    pub(crate) fn of_batch(outcome: &BatchOutcome) -> Self {
        let mut batch = Self {
            batches: 1,
            rows_upserted: outcome.rows_upserted,
            rows_deleted: outcome.rows_deleted,
            conflicts_portal_won: outcome.conflicts_portal_won,
            config_fault: outcome.config_fault(),
            ..Self::default()
        };
        for s in &outcome.settlements {
            let table = outcome.tables.get(&s.id).cloned().unwrap_or_default();
            match &s.outcome {
                Settlement::Synced => {
                    batch.items_synced += 1;
                    batch.per_table.entry(table).or_default().synced += 1;
                }
                Settlement::Retry { error, .. } => {
                    batch.items_retried += 1;
                    batch.last_item_error = Some(error.clone());
                }
                Settlement::Failed { error } => {
                    batch.items_failed += 1;
                    batch.last_item_error = Some(error.clone());
                    batch.per_table.entry(table).or_default().failed += 1;
                }
                Settlement::Release { .. } => batch.items_released += 1,
            }
        }
        batch
    }

    /// Adds a batch to this drain.
    pub(crate) fn add(&mut self, batch: &Self) {
        self.batches += batch.batches;
        self.rows_upserted += batch.rows_upserted;
        self.rows_deleted += batch.rows_deleted;
        self.conflicts_portal_won += batch.conflicts_portal_won;
        self.items_synced += batch.items_synced;
        self.items_retried += batch.items_retried;
        self.items_failed += batch.items_failed;
        self.items_released += batch.items_released;
        if batch.last_item_error.is_some() {
            self.last_item_error.clone_from(&batch.last_item_error);
        }
        self.config_fault.clone_from(&batch.config_fault);
        add_per_table(&mut self.per_table, &batch.per_table);
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ForwardState {
    pub(crate) notifications: u64,
    pub(crate) drains: u64,
    pub(crate) rows_upserted: u64,
    pub(crate) rows_deleted: u64,
    /// Portal-owned columns edited on both sides where the portal's newer edit won (README
    /// "Who wins").
    pub(crate) conflicts_portal_won: u64,
    pub(crate) items_synced: u64,
    pub(crate) items_retried: u64,
    pub(crate) items_failed: u64,
    pub(crate) last_success_at: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<DateTime<Utc>>,
    /// Set while Supabase refuses the service key (401/403): forward work is paused.
    pub(crate) config_fault: Option<String>,
    /// Per SQL Server table, for `GET /metrics`.
    #[serde(skip)]
    pub(crate) per_table: PerTable,
    /// Set while Supabase or SQL Server is not answering: forward work backs off as a whole.
    pub(crate) outage: Option<OutageStatus>,
}

pub(crate) type ForwardCounters = Counters<ForwardState>;

impl ForwardCounters {
    /// A notification arrived (`queue-notify`).
    pub(crate) fn notified(&self) {
        self.lock().notifications += 1;
    }

    pub(crate) fn drain_started(&self) {
        self.lock().drains += 1;
    }

    /// One batch (a [`DrainReport::of_batch`]) settled.
    pub(crate) fn record(&self, batch: &DrainReport) {
        let mut f = self.lock();
        f.rows_upserted += batch.rows_upserted;
        f.rows_deleted += batch.rows_deleted;
        f.conflicts_portal_won += batch.conflicts_portal_won;
        f.items_synced += batch.items_synced;
        f.items_retried += batch.items_retried;
        f.items_failed += batch.items_failed;
        f.config_fault.clone_from(&batch.config_fault);
        add_per_table(&mut f.per_table, &batch.per_table);
        if batch.items_synced > 0 {
            f.last_success_at = Some(Utc::now());
        }
        if let Some(error) = &batch.last_item_error {
            f.last_error = Some(error.clone());
            f.last_error_at = Some(Utc::now());
        }
    }

    /// A drain stopped early (SQL Server unavailable).
    pub(crate) fn record_error(&self, error: &str) {
        let mut f = self.lock();
        f.last_error = Some(error.to_owned());
        f.last_error_at = Some(Utc::now());
    }

    pub(crate) fn config_fault(&self) -> Option<String> {
        self.lock().config_fault.clone()
    }

    /// The outage in progress, as the worker's shared backoff sees it.
    pub(crate) fn set_outage(&self, outage: Option<OutageStatus>) {
        self.lock().outage = outage;
    }
}
