//! The forward worker: one task that drains the queue whenever it is told to, and sleeps
//! otherwise. It wakes on a notification (`queue-notify`), a manual trigger, or a one-shot
//! timer set to the earliest `NextAttemptAt` — never on a periodic tick — so an idle agent does
//! no work at all. A notification that arrives mid-drain is remembered (`Notify` keeps a
//! permit) and causes another pass.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchPolicy};
use super::counters::{DrainReport, ForwardCounters};
use crate::mapping::ResolvedMap;
use crate::retry::RetryPolicy;
use crate::sqlserver::{SqlStore, StoreError, WriterWait};
use crate::supabase::SupabaseApi;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ForwardSettings {
    pub(crate) batch_size: usize,
    pub(crate) lease: Duration,
    /// The durable retry rule for items; its backoff also paces the worker after a failed
    /// drain.
    pub(crate) retry: RetryPolicy,
    /// Longest single wait on a writer's open transaction before claiming again.
    pub(crate) writer_wait: Duration,
}

/// How the rest of the agent talks to the worker.
#[derive(Clone)]
pub(crate) struct ForwardHandle {
    wake: Arc<Notify>,
    drain_requests: mpsc::Sender<oneshot::Sender<DrainReport>>,
}

impl ForwardHandle {
    /// A notification: drain soon, in the background.
    pub(crate) fn notify(&self) {
        self.wake.notify_one();
    }

    /// Drains now and returns what was done (waits behind a drain already running).
    pub(crate) async fn drain_now(&self) -> Option<DrainReport> {
        let (tx, rx) = oneshot::channel();
        self.drain_requests.send(tx).await.ok()?;
        rx.await.ok()
    }
}

pub(crate) struct ForwardWorker {
    pub(crate) store: Arc<dyn SqlStore>,
    pub(crate) supabase: Arc<dyn SupabaseApi>,
    pub(crate) map: Arc<ResolvedMap>,
    pub(crate) settings: ForwardSettings,
    pub(crate) counters: Arc<ForwardCounters>,
}

/// When to wake up next without being told.
fn deadline_after(delay: Duration) -> Instant {
    Instant::now() + delay
}

impl ForwardWorker {
    /// Starts the worker task; it stops at the next safe point once `cancel` fires.
    pub(crate) fn spawn(
        self,
        cancel: CancellationToken,
    ) -> (ForwardHandle, tokio::task::JoinHandle<()>) {
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
                    Some(deadline_after(
                        self.settings.retry.backoff.next(failures, None),
                    ))
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
        if let Some(fault) = self.counters.config_fault() {
            tracing::warn!(fault = %fault, "forward sync paused by a configuration fault; retrying later");
        }
        match self.store.next_due_in().await {
            Ok(Some(due)) => Some(deadline_after(due)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next retry time");
                Some(deadline_after(self.settings.retry.backoff.base))
            }
        }
    }

    /// Claims and processes batches until nothing is due (or shutdown, or a fault).
    pub(crate) async fn drain(&self, cancel: &CancellationToken) -> DrainReport {
        self.counters.drain_started();
        let mut report = DrainReport::default();
        if let Err(e) = self.drain_into(&mut report, cancel).await {
            tracing::warn!(error = %e, "forward drain interrupted");
            self.counters.record_error(&e.to_string());
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
            retry: self.settings.retry,
            fault_delay: self.settings.retry.backoff.cap.min(Duration::from_secs(60)),
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
            let settled = DrainReport::of_batch(&outcome);
            report.add(&settled);
            self.counters.record(&settled);
            if let Some(fault) = outcome.config_fault {
                report.error = Some(fault);
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
