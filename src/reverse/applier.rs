//! The applier: one task that writes inbox events into SQL Server, oldest first and in order per
//! record. It wakes when an event is accepted, at start-up (the inbox is applied first), and on
//! a one-shot timer for the earliest retry; it never polls. While SQL Server is down it backs
//! off and keeps every event.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::apply::{plan, Plan};
use super::event::StoredEvent;
use super::inbox::{Inbox, InboxError};
use crate::mapping::ResolvedMap;
use crate::retry::{Decision, RetryPolicy};
use crate::sqlserver::{SqlStore, WriteOutcome};
use crate::status::Status;

#[derive(Clone)]
pub struct ApplierHandle {
    wake: Arc<Notify>,
    idle: Arc<Notify>,
}

impl ApplierHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves after the applier next finishes a pass (for `trigger` answers and tests).
    pub fn pass_finished(&self) -> tokio::sync::futures::Notified<'_> {
        self.idle.notified()
    }
}

pub struct Applier {
    pub store: Arc<dyn SqlStore>,
    pub inbox: Inbox,
    pub map: Arc<ResolvedMap>,
    pub status: Arc<Status>,
    pub retry: RetryPolicy,
}

enum PassEnd {
    /// Nothing more is due.
    Drained,
    /// SQL Server is unavailable: try again after a backoff.
    Unavailable,
}

impl Applier {
    pub fn spawn(self, cancel: CancellationToken) -> (ApplierHandle, tokio::task::JoinHandle<()>) {
        let handle = ApplierHandle {
            wake: Arc::new(Notify::new()),
            idle: Arc::new(Notify::new()),
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
                    self.status.reverse_error(&e.to_string());
                    outages += 1;
                    Some(Instant::now() + self.retry.backoff.next(outages, None))
                }
            };
            handle.idle.notify_waiters();
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
                if !self.apply_one(event).await? {
                    return Ok(PassEnd::Unavailable);
                }
            }
        }
        Ok(PassEnd::Drained)
    }

    /// Applies one event. `Ok(false)` means SQL Server is unavailable and the pass should stop.
    async fn apply_one(&self, stored: StoredEvent) -> Result<bool, InboxError> {
        let event = &stored.event;
        let Some(table) = self.map.by_target(&event.table) else {
            self.inbox
                .kill(
                    stored.id,
                    format!("table {} is no longer in the table map", event.table),
                )
                .await?;
            return Ok(true);
        };
        if let Some(version) = event.version {
            // A DELETE carries the version of the row it removes (its old_record), which is the
            // version already applied: only a strictly newer version makes it stale.
            let is_delete = event.op == "DELETE";
            let applied = self
                .inbox
                .version_of(&event.table, &event.record_key)
                .await?;
            if applied
                .is_some_and(|applied| applied > version || (applied == version && !is_delete))
            {
                // Duplicate or out-of-order delivery: SQL Server already has this or newer data.
                tracing::debug!(table = %event.table, key = %event.record_key, "stale event skipped");
                self.status.reverse().events_stale += 1;
                self.inbox.complete(&stored).await?;
                return Ok(true);
            }
        }
        let write = match plan(table, event) {
            Ok(Plan::Write(w)) => w,
            Ok(Plan::Skip(why)) => {
                tracing::debug!(table = %event.table, key = %event.record_key, why, "event needs no write");
                self.status.reverse().events_unchanged += 1;
                self.inbox.complete(&stored).await?;
                return Ok(true);
            }
            Err(e) => {
                tracing::warn!(table = %event.table, key = %event.record_key, error = %e, "event cannot be applied");
                self.inbox.kill(stored.id, e.to_string()).await?;
                return Ok(true);
            }
        };
        match self.store.apply(&write).await {
            Ok(outcome) => {
                tracing::info!(table = %write.table, key = %event.record_key, ?outcome, source = event.source.as_str(), "reverse event applied");
                {
                    let mut r = self.status.reverse();
                    match outcome {
                        WriteOutcome::Unchanged | WriteOutcome::Missing => r.events_unchanged += 1,
                        _ => r.events_applied += 1,
                    }
                    r.last_applied_at = Some(Utc::now());
                }
                self.inbox.complete(&stored).await?;
                Ok(true)
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(table = %write.table, error = %e, "SQL Server unavailable; reverse events kept for retry");
                self.status.reverse_error(&e.to_string());
                let delay = self.retry.after_outage(stored.attempts);
                self.inbox
                    .retry(stored.id, delay.as_millis() as i64, e.to_string())
                    .await?;
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(table = %write.table, key = %event.record_key, error = %e, "SQL Server refused a reverse write");
                self.status.reverse_error(&e.to_string());
                match self.retry.after_failure(stored.attempts, None) {
                    Decision::Retry(delay) => {
                        self.inbox
                            .retry(stored.id, delay.as_millis() as i64, e.to_string())
                            .await?
                    }
                    Decision::GiveUp => self.inbox.kill(stored.id, e.to_string()).await?,
                }
                Ok(true)
            }
        }
    }
}
