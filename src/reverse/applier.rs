//! The applier: one task that writes inbox events into SQL Server, oldest first and in order per
//! record. It wakes when an event is accepted, at start-up (the inbox is applied first), and on
//! a one-shot timer for the earliest retry; it never polls. While SQL Server is down it backs
//! off and keeps every event.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::counters::{EventVerdict, ReverseCounters};
use super::event::{NewEvent, StoredEvent};
use super::inbox::{Inbox, InboxError};
use super::plan::{plan_with, Plan};
use super::restore;
use super::versions::{has_versions, synced_entries};
use super::WakeForward;
use crate::mapping::table_map::ROW_VERSION_COLUMN;
use crate::mapping::{ResolvedMap, ResolvedTable};
use crate::retry::{Decision, ErrorClass, RetryPolicy};
use crate::sqlserver::{SqlStore, StoreError, WriteOutcome};
use crate::sync_state::{parse_version, SyncState};

/// Wakes the applier.
#[derive(Clone)]
pub(crate) struct ApplierHandle {
    wake: Arc<Notify>,
}

impl ApplierHandle {
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

pub(crate) struct Applier {
    pub(crate) store: Arc<dyn SqlStore>,
    pub(crate) inbox: Inbox,
    pub(crate) map: Arc<ResolvedMap>,
    pub(crate) counters: Arc<ReverseCounters>,
    pub(crate) retry: RetryPolicy,
    /// What was last synced of the portal-owned columns (README "Who wins").
    pub(crate) state: SyncState,
    /// Tells the forward worker a record was queued to restore the clinic's values.
    pub(crate) wake_forward: WakeForward,
}

enum PassEnd {
    /// Nothing more is due.
    Drained,
    /// SQL Server is unavailable: try again after a backoff.
    Unavailable,
}

/// What the applier does next after one event.
enum Next {
    Continue,
    /// SQL Server is unavailable: end the pass.
    Stop,
}

impl Applier {
    pub(crate) fn spawn(
        self,
        cancel: CancellationToken,
    ) -> (ApplierHandle, tokio::task::JoinHandle<()>) {
        let handle = ApplierHandle {
            wake: Arc::new(Notify::new()),
        };
        let task = tokio::spawn(self.run(handle.clone(), cancel));
        (handle, task)
    }

    async fn run(self, handle: ApplierHandle, cancel: CancellationToken) {
        let mut outages: u32 = 0;
        loop {
            let next = match self.pass(&cancel).await {
                Ok(PassEnd::Drained) => {
                    outages = 0;
                    self.next_due().await
                }
                Ok(PassEnd::Unavailable) => {
                    outages += 1;
                    Some(Instant::now() + self.retry.backoff.next(outages, None))
                }
                Err(e) => {
                    tracing::error!(error = %e, "reverse inbox unreadable");
                    self.counters.record_error(&e.to_string());
                    outages += 1;
                    Some(Instant::now() + self.retry.backoff.next(outages, None))
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = handle.wake.notified() => {}
                _ = crate::retry::sleep_until(next) => {}
            }
        }
        tracing::info!("reverse applier stopped");
    }

    async fn next_due(&self) -> Option<Instant> {
        match self.inbox.next_due_in_ms().await {
            Ok(Some(ms)) => Some(Instant::now() + Duration::from_millis(ms.max(0) as u64)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next inbox retry time");
                Some(Instant::now() + self.retry.backoff.base)
            }
        }
    }

    async fn pass(&self, cancel: &CancellationToken) -> Result<PassEnd, InboxError> {
        while !cancel.is_cancelled() {
            let events = self.inbox.due(200).await?;
            if events.is_empty() {
                return Ok(PassEnd::Drained);
            }
            for event in events {
                if cancel.is_cancelled() {
                    break;
                }
                if let Next::Stop = self.apply_one(event).await? {
                    return Ok(PassEnd::Unavailable);
                }
            }
        }
        Ok(PassEnd::Drained)
    }

    /// Applies one event: skips it when SQL Server already has a newer version, plans its
    /// write, and settles it in the inbox by the write's outcome.
    async fn apply_one(&self, stored: StoredEvent) -> Result<Next, InboxError> {
        let event = &stored.event;
        let Some(table) = self.map.by_target(&event.table) else {
            let why = format!("table {} is no longer in the table map", event.table);
            self.counters
                .record_event(&event.table, EventVerdict::GivenUp);
            self.inbox.kill(stored.id, why).await?;
            return Ok(Next::Continue);
        };
        let versioned = event.record.as_ref().is_some_and(has_versions);
        // Per-column versions decide for themselves; a row version only where there are none.
        if !versioned && self.is_stale(&stored).await? {
            // Duplicate or out-of-order delivery: SQL Server already has this or newer data.
            tracing::debug!(table = %event.table, key = %event.record_key, "stale event skipped");
            self.counters
                .record_event(&event.table, EventVerdict::Stale);
            self.inbox.complete(&stored).await?;
            return Ok(Next::Continue);
        }
        let state = self
            .state
            .of_records(&event.table, vec![event.record_key.clone()])
            .await?
            .remove(&event.record_key);
        let write = match plan_with(table, event, state.as_ref()) {
            Ok(Plan::Write(w)) => w,
            Ok(Plan::Skip(why)) => {
                tracing::debug!(table = %event.table, key = %event.record_key, why, "event needs no write");
                if let Some(next) = self.restore(&stored, table).await? {
                    return Ok(next);
                }
                self.counters
                    .record_event(&event.table, EventVerdict::NotNeeded);
                self.inbox.complete(&stored).await?;
                return Ok(Next::Continue);
            }
            Err(e) => {
                tracing::warn!(table = %event.table, key = %event.record_key, error = %e, "event cannot be applied");
                self.counters
                    .record_event(&event.table, EventVerdict::GivenUp);
                self.inbox.kill(stored.id, e.to_string()).await?;
                return Ok(Next::Continue);
            }
        };
        match self.store.apply(&write).await {
            Ok(WriteOutcome::Guarded) => {
                // A newer clinic edit of this record is queued: it is sent first, then this
                // event is looked at again (and wins only where its versions are newer).
                tracing::debug!(table = %event.table, key = %event.record_key, "reverse write held back by a newer queued clinic edit");
                let delay = self.retry.backoff.base.as_millis() as i64;
                self.inbox.postpone(stored.id, delay, None).await?;
                Ok(Next::Continue)
            }
            Ok(outcome) => {
                if let Some(record) = &event.record {
                    let entries = synced_entries(
                        table,
                        record,
                        &event.record_key,
                        event.version,
                        &write,
                        outcome,
                    );
                    self.state.remember(&event.table, entries).await?;
                }
                if let Some(next) = self.restore(&stored, table).await? {
                    return Ok(next);
                }
                tracing::info!(table = %write.table, key = %event.record_key, ?outcome, source = event.kind.source(), "reverse event applied");
                let verdict = match outcome {
                    WriteOutcome::Unchanged | WriteOutcome::Missing => EventVerdict::Unchanged,
                    _ => EventVerdict::Applied,
                };
                self.counters.record_event(&event.table, verdict);
                self.inbox.complete(&stored).await?;
                Ok(Next::Continue)
            }
            Err(e) => self.failed(&stored, &write.table, e).await,
        }
    }

    /// Queues the record forward when the event shows Supabase holding clinic-owned values
    /// other than SQL Server's (README "Who wins": the clinic's value goes back). Done before the
    /// event is completed, so when SQL Server cannot be read the event is kept and looked at
    /// again (its write, repeated, changes nothing); `Some` is then what the applier does next.
    async fn restore(
        &self,
        stored: &StoredEvent,
        table: &ResolvedTable,
    ) -> Result<Option<Next>, InboxError> {
        match self.queue_clinic_values(table, &stored.event).await {
            Ok(()) => Ok(None),
            Err(e) if e.is_retryable() || e.class() == ErrorClass::ConfigFault => {
                self.failed(stored, table.source(), e).await.map(Some)
            }
            // The event itself was applied; only the comparison failed.
            Err(e) => {
                tracing::warn!(table = %table.target, key = %stored.event.record_key, error = %e, "cannot compare clinic-owned columns with SQL Server");
                Ok(None)
            }
        }
    }

    async fn queue_clinic_values(
        &self,
        table: &ResolvedTable,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let Some(record) = event.record.as_ref() else {
            return Ok(());
        };
        if !restore::worth_checking(table, event) {
            return Ok(());
        }
        let Some(key) = restore::queue_key(table, record) else {
            return Ok(());
        };
        let columns = table.source_columns();
        let rows = self
            .store
            .load_rows(table.source(), &columns, std::slice::from_ref(&key))
            .await?;
        // No row in SQL Server: nothing of the clinic's to bring back.
        let Some(row) = rows.first() else {
            return Ok(());
        };
        let differing = restore::differing(table, record, row);
        if differing.is_empty() {
            return Ok(());
        }
        // The clinic's version Supabase's row carries: a clinic change newer than it has gone
        // or is going forward anyway (this event may be a late echo of an older push).
        let seen = record
            .get(ROW_VERSION_COLUMN)
            .and_then(parse_version)
            .and_then(DateTime::from_timestamp_micros);
        let queued = self
            .store
            .queue_records(table.source(), &table.queue_key_columns(), &[key], seen)
            .await?;
        if queued == 0 {
            tracing::debug!(table = %table.target, key = %event.record_key, "a newer clinic change of this record is already queued or sent");
            return Ok(());
        }
        tracing::info!(table = %table.target, key = %event.record_key, columns = ?differing, "Supabase holds clinic-owned values other than SQL Server's; the clinic's are queued to go back");
        (self.wake_forward)();
        Ok(())
    }

    /// Whether SQL Server already has this event's version or a newer one. A DELETE carries the
    /// version of the row it removes (its old_record), which is the version already applied:
    /// only a strictly newer version makes it stale.
    async fn is_stale(&self, stored: &StoredEvent) -> Result<bool, InboxError> {
        let event = &stored.event;
        let Some(version) = event.version else {
            return Ok(false);
        };
        let applied = self
            .inbox
            .version_of(&event.table, &event.record_key)
            .await?;
        let is_delete = event.kind.is_delete();
        Ok(applied.is_some_and(|applied| applied > version || (applied == version && !is_delete)))
    }

    /// A write SQL Server did not take: kept for a retry while SQL Server is unavailable (which
    /// ends the pass), retried and eventually given up on when it refused the write.
    async fn failed(
        &self,
        stored: &StoredEvent,
        table: &str,
        e: StoreError,
    ) -> Result<Next, InboxError> {
        self.counters.record_error(&e.to_string());
        if e.is_retryable() || e.class() == ErrorClass::ConfigFault {
            // Not this event's fault: SQL Server is down, or a table, column or permission is
            // missing for every event alike. Charge no attempt (an event must not come out of a
            // long outage with its attempts spent) and end the pass: the applier's shared
            // backoff (`run`) paces the next try, so the event itself is due again at once.
            if e.is_retryable() {
                tracing::warn!(table, error = %e, "SQL Server unavailable; reverse events kept for retry");
            } else {
                tracing::error!(table, error = %e, "SQL Server setup refuses reverse writes; events kept until it is fixed");
            }
            self.inbox
                .postpone(stored.id, 0, Some(e.to_string()))
                .await?;
            return Ok(Next::Stop);
        }
        tracing::warn!(table, key = %stored.event.record_key, error = %e, "SQL Server refused a reverse write");
        match self.retry.after_failure(stored.attempts, None) {
            Decision::Retry(delay) => {
                self.inbox
                    .retry(stored.id, delay.as_millis() as i64, e.to_string())
                    .await?
            }
            Decision::GiveUp => {
                let table = &stored.event.table;
                self.counters.record_event(table, EventVerdict::GivenUp);
                self.inbox.kill(stored.id, e.to_string()).await?
            }
        }
        Ok(Next::Continue)
    }
}
