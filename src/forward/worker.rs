//! The forward worker: one task that drains the queue whenever it is told to, and sleeps
//! otherwise. It wakes on a notification (`queue-notify`), a manual trigger, or a one-shot
//! timer set to the earliest `NextAttemptAt` — never on a periodic tick — so an idle agent does
//! no work at all. A notification that arrives mid-drain is remembered (`Notify` keeps a
//! permit) and causes another pass.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchPolicy};
use crate::mapping::ResolvedMap;
use crate::retry::{Backoff, RetryPolicy};
use crate::sqlserver::{SqlStore, StoreError, WriterWait};
use crate::status::Status;
use crate::supabase::SupabaseApi;

#[derive(Debug, Clone, Copy)]
pub struct ForwardSettings {
    pub batch_size: usize,
    pub lease: Duration,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Longest single wait on a writer's open transaction before claiming again.
    pub writer_wait: Duration,
}

/// What one drain did; the answer of `POST /api/sync/trigger`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DrainReport {
    pub batches: u64,
    pub items_synced: u64,
    pub items_retried: u64,
    pub items_failed: u64,
    pub items_released: u64,
    pub rows_upserted: u64,
    pub rows_deleted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the rest of the agent talks to the worker.
#[derive(Clone)]
pub struct ForwardHandle {
    wake: Arc<Notify>,
    drain_requests: mpsc::Sender<oneshot::Sender<DrainReport>>,
}

impl ForwardHandle {
    /// A notification: drain soon, in the background.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Drains now and returns what was done (waits behind a drain already running).
    pub async fn drain_now(&self) -> Option<DrainReport> {
        let (tx, rx) = oneshot::channel();
        self.drain_requests.send(tx).await.ok()?;
        rx.await.ok()
    }
}

pub struct ForwardWorker {
    pub store: Arc<dyn SqlStore>,
    pub supabase: Arc<dyn SupabaseApi>,
    pub map: Arc<ResolvedMap>,
    pub settings: ForwardSettings,
    pub status: Arc<Status>,
}

/// When to wake up next without being told.
fn deadline_after(delay: Duration) -> Instant {
    Instant::now() + delay
}

impl ForwardWorker {
    /// Starts the worker task; it stops at the next safe point once `cancel` fires.
    pub fn spawn(self, cancel: CancellationToken) -> (ForwardHandle, tokio::task::JoinHandle<()>) {
        let wake = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(16);
        let handle = ForwardHandle {
            wake: wake.clone(),
            drain_requests: tx,
        };
        let task = tokio::spawn(self.run(wake, rx, cancel));
        (handle, task)
    }

    async fn run(
        self,
        wake: Arc<Notify>,
        mut requests: mpsc::Receiver<oneshot::Sender<DrainReport>>,
        cancel: CancellationToken,
    ) {
        tracing::info!(
            "Queue processor started - webhook-based sync enabled (SQL Server → Supabase)"
        );
        let mut failures: u32 = 0;
        let mut released = false;
        let mut waiting: Vec<oneshot::Sender<DrainReport>> = Vec::new();
        loop {
            // A crashed predecessor's claims would otherwise wait out their lease.
            if !released {
                match self.store.release_own_claims().await {
                    Ok(n) => {
                        released = true;
                        if n > 0 {
                            tracing::info!(items = n, "released claims left by a previous run");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot release earlier claims yet"),
                }
            }
            let report = self.drain(&cancel).await;
            let next = match &report.error {
                Some(_) => {
                    failures += 1;
                    Some(deadline_after(self.settings.backoff.next(failures, None)))
                }
                None => {
                    failures = 0;
                    self.next_wake().await
                }
            };
            for reply in waiting.drain(..) {
                let _ = reply.send(report.clone());
            }
            if cancel.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wake.notified() => {}
                Some(reply) = requests.recv() => waiting.push(reply),
                _ = crate::retry::sleep_until(next) => {}
            }
        }
        tracing::info!("forward worker stopped");
    }

    /// The earliest due retry or lease expiry, or `None` (sleep until told) when nothing waits.
    async fn next_wake(&self) -> Option<Instant> {
        if let Some(fault) = self.status.forward().config_fault.clone() {
            tracing::warn!(fault = %fault, "forward sync paused by a configuration fault; retrying later");
        }
        match self.store.next_due_in().await {
            Ok(Some(due)) => Some(deadline_after(due)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next retry time");
                Some(deadline_after(self.settings.backoff.base))
            }
        }
    }

    /// Claims and processes batches until nothing is due (or shutdown, or a fault).
    pub async fn drain(&self, cancel: &CancellationToken) -> DrainReport {
        self.status.forward().drains += 1;
        let mut report = DrainReport::default();
        if let Err(e) = self.drain_into(&mut report, cancel).await {
            tracing::warn!(error = %e, "forward drain interrupted");
            self.status.forward_error(&e.to_string());
            report.error = Some(e.to_string());
        }
        report
    }

    async fn drain_into(
        &self,
        report: &mut DrainReport,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let policy = BatchPolicy {
            retry: RetryPolicy {
                max_attempts: self.settings.max_attempts,
                backoff: self.settings.backoff,
            },
            fault_delay: self.settings.backoff.cap.min(Duration::from_secs(60)),
        };
        let batch = Batch {
            store: self.store.as_ref(),
            supabase: self.supabase.as_ref(),
            map: &self.map,
            policy,
        };
        while !cancel.is_cancelled() {
            let items = self
                .store
                .claim(self.settings.batch_size, self.settings.lease)
                .await?;
            if items.is_empty() {
                // The trigger notifies before its writer commits: rows we cannot see yet may
                // be held by an open transaction. Wait for it rather than strand them.
                match self
                    .store
                    .wait_for_writers(self.settings.writer_wait)
                    .await?
                {
                    WriterWait::Idle => return Ok(()),
                    WriterWait::Waited => continue,
                }
            }
            let outcome = batch.run(items).await?;
            self.store.settle(&outcome.settlements).await?;
            self.record(report, &outcome);
            if let Some(fault) = outcome.config_fault {
                report.error = Some(fault);
                return Ok(());
            }
        }
        Ok(())
    }

    /// Adds one batch to the drain's report and to the agent's status.
    fn record(&self, report: &mut DrainReport, outcome: &super::batch::BatchOutcome) {
        use crate::sqlserver::Settlement::*;
        let mut batch = DrainReport {
            batches: 1,
            rows_upserted: outcome.rows_upserted,
            rows_deleted: outcome.rows_deleted,
            ..DrainReport::default()
        };
        let mut last_error = None;
        for s in &outcome.settlements {
            match &s.outcome {
                Synced => batch.items_synced += 1,
                Retry { error, .. } => {
                    batch.items_retried += 1;
                    last_error = Some(error);
                }
                Failed { error } => {
                    batch.items_failed += 1;
                    last_error = Some(error);
                }
                Release { .. } => batch.items_released += 1,
            }
        }
        report.batches += 1;
        report.rows_upserted += batch.rows_upserted;
        report.rows_deleted += batch.rows_deleted;
        report.items_synced += batch.items_synced;
        report.items_retried += batch.items_retried;
        report.items_failed += batch.items_failed;
        report.items_released += batch.items_released;

        let mut f = self.status.forward();
        f.rows_upserted += batch.rows_upserted;
        f.rows_deleted += batch.rows_deleted;
        f.items_synced += batch.items_synced;
        f.items_retried += batch.items_retried;
        f.items_failed += batch.items_failed;
        f.config_fault = outcome.config_fault.clone();
        if batch.items_synced > 0 {
            f.last_success_at = Some(Utc::now());
        }
        if let Some(error) = last_error {
            f.last_error = Some(error.clone());
            f.last_error_at = Some(Utc::now());
        }
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
