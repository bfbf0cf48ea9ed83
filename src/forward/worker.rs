//! The forward worker: one task that drains the queue whenever it is told to, and sleeps
//! otherwise. It wakes on a notification (`queue-notify`), a manual trigger, or a one-shot
//! timer set to the earliest `NextAttemptAt` — never on a periodic tick — so an idle agent does
//! no work at all. A notification that arrives mid-drain is remembered (`Notify` keeps a
//! permit) and causes another pass. While a side is not answering, the worker backs off as a
//! whole ([`super::outage`]): notifications wait for the backoff, a manual trigger does not.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchOutcome, BatchPolicy, Halt, Prepared};
use super::counters::{DrainReport, ForwardCounters};
use super::outage::{OutageTracker, Side};
use super::pipeline::Lanes;
use super::remap::{CurrentMap, Remap};
use crate::mapping::ResolvedMap;
use crate::retry::{ErrorClass, RetryPolicy};
use crate::sqlserver::{
    QueueItem, RecordKey, SettleItem, Settlement, SqlStore, StoreError, WriterWait,
};
use crate::supabase::SupabaseApi;
use crate::sync_state::SyncState;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ForwardSettings {
    pub(crate) batch_size: usize,
    pub(crate) lease: Duration,
    /// Batches in flight at once ([`super::pipeline`]); 1 runs them one after another.
    pub(crate) pipeline_depth: usize,
    /// The durable retry rule for items; its backoff also paces the shared backoff of an
    /// outage.
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
    pub(crate) map: CurrentMap,
    pub(crate) remap: Arc<dyn Remap>,
    pub(crate) settings: ForwardSettings,
    pub(crate) counters: Arc<ForwardCounters>,
    /// The shared backoff while a side is not answering (start with the default: none).
    pub(crate) outage: Mutex<OutageTracker>,
    /// What was last synced of the portal-owned columns.
    pub(crate) state: SyncState,
}

/// What a batch in flight came to: its counts and whether the drain stops (with the error),
/// or the SQL Server error that kept it from being settled.
struct BatchDone {
    ticket: u64,
    result: Result<(DrainReport, Option<String>), StoreError>,
}

/// One drain's progress while batches are in flight.
struct Drain<'r> {
    report: &'r mut DrainReport,
    failure: Option<StoreError>,
    stop: Option<String>,
    /// The records of each batch in flight, by ticket.
    holding: BTreeMap<u64, BTreeSet<(usize, RecordKey)>>,
}

impl Drain<'_> {
    /// Nothing more is claimed: a batch stopped the drain or SQL Server failed.
    fn ended(&self) -> bool {
        self.failure.is_some() || self.stop.is_some()
    }

    /// Waits until every batch in flight is settled.
    async fn wait_all<B: Future<Output = BatchDone>>(
        &mut self,
        in_flight: &mut FuturesUnordered<B>,
    ) {
        while let Some(done) = in_flight.next().await {
            self.finished(done);
        }
    }

    fn finished(&mut self, done: BatchDone) {
        self.holding.remove(&done.ticket);
        match done.result {
            Ok((settled, stop)) => {
                self.report.add(&settled);
                if stop.is_some() && self.stop.is_none() {
                    self.stop = stop;
                }
            }
            Err(e) => {
                if self.failure.is_none() {
                    self.failure = Some(e);
                }
            }
        }
    }
}

/// Runs `work` (a claim, a read) while the batches in flight go on being sent and settled.
async fn drive<T, F, B>(in_flight: &mut FuturesUnordered<B>, drain: &mut Drain<'_>, work: F) -> T
where
    F: Future<Output = T>,
    B: Future<Output = BatchDone>,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => drain.finished(done),
            result = &mut work => return result,
        }
    }
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
        let mut released = false;
        let mut waiting: Vec<oneshot::Sender<DrainReport>> = Vec::new();
        'run: loop {
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
            for reply in waiting.drain(..) {
                let _ = reply.send(report.clone());
            }
            if cancel.is_cancelled() {
                break;
            }
            let next = self.next_wake().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break 'run,
                    _ = wake.notified() => {
                        // New data, not a sign that the other side is back: the shared
                        // backoff holds (a manual trigger does not wait for it).
                        if self.backing_off().is_none() {
                            break;
                        }
                    }
                    Some(reply) = requests.recv() => {
                        waiting.push(reply);
                        break;
                    }
                    _ = crate::retry::sleep_until(next) => break,
                }
            }
        }
        tracing::info!("forward worker stopped");
    }

    /// The end of the shared backoff while it lasts; otherwise the earliest due retry or lease
    /// expiry, or `None` (sleep until told) when nothing waits.
    async fn next_wake(&self) -> Option<Instant> {
        if let Some(at) = self.backing_off() {
            return Some(at);
        }
        if let Some(fault) = self.counters.config_fault() {
            tracing::warn!(fault = %fault, "forward sync paused by a configuration fault; retrying later");
        }
        match self.store.next_due_in().await {
            Ok(Some(due)) => Some(deadline_after(due)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next retry time");
                Some(deadline_after(self.failed(
                    Side::SqlServer,
                    &e.to_string(),
                    None,
                )))
            }
        }
    }

    /// Claims and processes batches until nothing is due (or shutdown, or a halt).
    pub(crate) async fn drain(&self, cancel: &CancellationToken) -> DrainReport {
        self.counters.drain_started();
        let mut report = DrainReport::default();
        match self.drain_into(&mut report, cancel).await {
            Ok(()) => self.answered(Side::SqlServer),
            Err(e) => {
                tracing::warn!(error = %e, "forward drain interrupted");
                self.counters.record_error(&e.to_string());
                self.failed(Side::SqlServer, &e.to_string(), None);
                report.error = Some(e.to_string());
            }
        }
        report
    }

    /// Claims and reads batch after batch while earlier ones are still being sent, up to
    /// `pipeline_depth` in flight, each settling itself when its last stage is answered. Stops
    /// claiming at shutdown, a halt or a SQL Server error, and returns once the batches in
    /// flight are settled.
    async fn drain_into(
        &self,
        report: &mut DrainReport,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut lanes = Arc::new(Lanes::new(self.map.get().tables.len()));
        let mut in_flight = FuturesUnordered::new();
        let mut drain = Drain {
            report,
            failure: None,
            stop: None,
            holding: BTreeMap::new(),
        };
        loop {
            let halted = lanes.halt().is_some();
            let stopping = cancel.is_cancelled() || drain.ended() || halted;
            if stopping || in_flight.len() >= self.settings.pipeline_depth.max(1) {
                if let Some(done) = in_flight.next().await {
                    drain.finished(done);
                    continue;
                }
                if halted && !drain.ended() && !cancel.is_cancelled() {
                    // A drift resolved by a new map: go on with fresh lanes.
                    lanes = Arc::new(Lanes::new(self.map.get().tables.len()));
                    continue;
                }
                break;
            }
            let claim = self
                .store
                .claim(self.settings.batch_size, self.settings.lease);
            let items = match drive(&mut in_flight, &mut drain, claim).await {
                Ok(items) => items,
                Err(e) => {
                    drain.failure = Some(e);
                    continue;
                }
            };
            if !items.is_empty()
                && (cancel.is_cancelled() || drain.ended() || lanes.halt().is_some())
            {
                // Claimed while a batch in flight hit a halt (or shutdown began): give the
                // items back untouched rather than send them into it.
                let unclaim = self.unclaim(&items, Vec::new());
                if let Err(e) = drive(&mut in_flight, &mut drain, unclaim).await {
                    drain.failure.get_or_insert(e);
                }
                continue;
            }
            if items.is_empty() {
                if !in_flight.is_empty() {
                    // Batches in flight may release items (a halt): claim again after them.
                    drain.wait_all(&mut in_flight).await;
                    continue;
                }
                // The trigger notifies before its writer commits: rows we cannot see yet may
                // be held by an open transaction. Wait for it rather than strand them.
                match self.store.wait_for_writers(self.settings.writer_wait).await {
                    Ok(WriterWait::Idle) => break,
                    Ok(WriterWait::Waited) => continue,
                    Err(e) => {
                        drain.failure = Some(e);
                        continue;
                    }
                }
            }
            // Fewer items than asked for: the queue had no more just now, so claiming again
            // before this batch is settled would only find nothing (or what arrives meanwhile,
            // which the claim after it finds as well).
            let queue_drained = items.len() < self.settings.batch_size;
            let map = self.map.get();
            let batch = self.batch(&map);
            let prepare = batch.prepare(items);
            let prepared = match drive(&mut in_flight, &mut drain, prepare).await {
                Ok(prepared) => prepared,
                Err(e) => {
                    drain.failure = Some(e);
                    continue;
                }
            };
            let records: BTreeSet<(usize, RecordKey)> =
                prepared.records().map(|(o, k)| (o, k.clone())).collect();
            if drain
                .holding
                .values()
                .any(|held| !held.is_disjoint(&records))
            {
                // A record's later change must not overtake its earlier one: let the batches
                // in flight finish first.
                drain.wait_all(&mut in_flight).await;
            }
            if cancel.is_cancelled() || drain.ended() {
                // Shutdown began, or SQL Server failed, while this batch was read: send nothing
                // more. What its reading already decided is settled, the rest given back.
                let (decided, items) = prepared.abandon();
                let unclaim = self.unclaim(&items, decided);
                if let Err(e) = drive(&mut in_flight, &mut drain, unclaim).await {
                    drain.failure.get_or_insert(e);
                }
                continue;
            }
            let ticket = lanes.ticket();
            drain.holding.insert(ticket, records);
            in_flight.push(self.send_batch(prepared, map, lanes.clone(), ticket));
            if queue_drained {
                drain.wait_all(&mut in_flight).await;
            }
        }
        match drain.failure {
            Some(e) => Err(e),
            None => {
                if let Some(error) = drain.stop {
                    report.error = Some(error);
                }
                Ok(())
            }
        }
    }

    fn batch<'a>(&'a self, map: &'a ResolvedMap) -> Batch<'a> {
        Batch {
            store: self.store.as_ref(),
            supabase: self.supabase.as_ref(),
            map,
            policy: BatchPolicy {
                retry: self.settings.retry,
            },
            state: &self.state,
        }
    }

    /// Sends one prepared batch as batch `ticket`, settles its items and counts them.
    async fn send_batch(
        &self,
        prepared: Prepared,
        map: Arc<ResolvedMap>,
        lanes: Arc<Lanes>,
        ticket: u64,
    ) -> BatchDone {
        let result = self.send_and_settle(prepared, &map, &lanes, ticket).await;
        BatchDone { ticket, result }
    }

    async fn send_and_settle(
        &self,
        prepared: Prepared,
        map: &ResolvedMap,
        lanes: &Lanes,
        ticket: u64,
    ) -> Result<(DrainReport, Option<String>), StoreError> {
        let mut outcome = self.batch(map).finish(prepared, lanes, ticket).await?;
        self.report_answered(&outcome, lanes);
        let stop = if outcome.halt_inherited {
            self.after_inherited_halt(&mut outcome);
            None
        } else {
            self.after_halt(&mut outcome, map).await
        };
        self.store.settle(&outcome.settlements).await?;
        let settled = DrainReport::of_batch(&outcome);
        self.counters.record(&settled);
        Ok((settled, stop))
    }

    /// Gives claimed items back as they were: due at once, attempts untouched, not counted;
    /// settles `decided` (items already judged) with them.
    async fn unclaim(
        &self,
        items: &[QueueItem],
        decided: Vec<SettleItem>,
    ) -> Result<(), StoreError> {
        let release: Vec<SettleItem> = decided
            .into_iter()
            .chain(items.iter().map(|item| SettleItem {
                id: item.id,
                claim: item.claim,
                outcome: Settlement::Release {
                    delay: Duration::ZERO,
                    error: None,
                },
            }))
            .collect();
        self.store.settle(&release).await
    }

    /// Releases what a batch left unsent when another batch in flight hit a halt: its cause
    /// was counted once, by that batch.
    fn after_inherited_halt(&self, outcome: &mut BatchOutcome) {
        let delay = match &outcome.halt {
            Some(Halt::ConfigFault(_)) => self.fault_delay(),
            _ => Duration::ZERO,
        };
        outcome.release(delay);
    }

    /// Releases what a halted batch left unsent, for as long as its halt says, and answers
    /// whether the drain stops (with the error) or goes on (Supabase's schema had drifted and
    /// the map is resolved again).
    async fn after_halt(&self, outcome: &mut BatchOutcome, map: &ResolvedMap) -> Option<String> {
        let halt = outcome.halt.clone()?;
        let delay = match &halt {
            // Due again at once: the shared backoff, not each item's NextAttemptAt, paces the
            // next attempt (so a manual trigger can retry them right away).
            Halt::Outage { error, retry_after } => {
                self.failed(Side::Supabase, error, *retry_after);
                Duration::ZERO
            }
            Halt::ConfigFault(_) => self.fault_delay(),
            Halt::UnknownColumn(error) => match self.remap.remap(map).await {
                Ok(Some(new)) => {
                    tracing::info!(error = %error, "Supabase's schema changed: the table map is resolved again without the columns it lacks");
                    self.map.set(new);
                    outcome.release(Duration::ZERO);
                    return None;
                }
                Err(e) if e.class() == ErrorClass::Outage => {
                    self.failed(Side::Supabase, &e.to_string(), e.retry_after());
                    Duration::ZERO
                }
                // Supabase's schema has every column the map sends: the refusal is a fault
                // of Supabase's own (a trigger naming a dropped column), not drift.
                Ok(None) | Err(_) => {
                    tracing::error!(error = %error, "Supabase refused a column its schema lists; forward sync paused");
                    outcome.halt = Some(Halt::ConfigFault(error.clone()));
                    self.fault_delay()
                }
            },
        };
        outcome.release(delay);
        Some(halt.error().to_owned())
    }

    /// How long items wait when their batch hit a configuration fault.
    fn fault_delay(&self) -> Duration {
        self.settings.retry.backoff.cap.min(Duration::from_secs(60))
    }

    /// Records a failed attempt on `side` in the shared backoff; returns the wait before the
    /// next one.
    fn failed(&self, side: Side, error: &str, retry_after: Option<Duration>) -> Duration {
        let mut outage = self.lock_outage();
        let delay = outage.failed(&self.settings.retry.backoff, side, error, retry_after);
        self.counters.set_outage(outage.status());
        delay
    }

    /// Tells the shared backoff that Supabase answered `outcome`'s batch, unless another batch
    /// of the drain met an outage: batches report in any order, and a success from before the
    /// outage (or beside it) must not clear the backoff that outage set. A batch's own outage
    /// after answered stages is reported as before: answered, then failed.
    fn report_answered(&self, outcome: &BatchOutcome, lanes: &Lanes) {
        let own_outage =
            !outcome.halt_inherited && matches!(outcome.halt, Some(Halt::Outage { .. }));
        let drain_outage = matches!(lanes.halt(), Some(Halt::Outage { .. }));
        if outcome.answered && (own_outage || !drain_outage) {
            self.answered(Side::Supabase);
        }
    }

    fn answered(&self, side: Side) {
        let mut outage = self.lock_outage();
        outage.answered(side);
        self.counters.set_outage(outage.status());
    }

    /// The end of the shared backoff, while it lasts.
    pub(super) fn backing_off(&self) -> Option<Instant> {
        self.lock_outage().waiting_until(Instant::now())
    }

    fn lock_outage(&self) -> std::sync::MutexGuard<'_, OutageTracker> {
        // The tracker holds plain values; a panic elsewhere leaves them usable.
        self.outage.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "outage_tests.rs"]
mod outage_tests;
