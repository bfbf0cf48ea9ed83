//! The answer of `GET /metrics`: the durable numbers read from their owners now (queue counts
//! from SQL Server, inbox depth and dead events, backfill checkpoints from the local file that
//! `syncbridge backfill` writes beside the agent), the counters' per-table totals and faults,
//! rendered with what the telemetry observed (latencies, outages). A part that cannot be read
//! is left out of this scrape.

use super::handle::AgentHandle;
use crate::checkpoints::Checkpoints;
use crate::telemetry::{BackfillProgress, QueueDepth, Snapshot};

impl AgentHandle {
    pub(crate) async fn metrics(&self) -> Result<String, std::fmt::Error> {
        let s = &self.shared;
        let queue = s.store.queue_stats().await.ok().map(|q| QueueDepth {
            pending: q.pending,
            synced: q.synced,
            failed: q.failed,
            oldest_pending_age_secs: q.oldest_pending_age_secs,
        });
        let inbox = s.inbox.stats().await.ok();
        let backfill = match Checkpoints::open(s.inbox.db().clone()) {
            Ok(c) => c.all().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let forward = s.forward_counters.snapshot();
        let reverse = s.reverse_counters.snapshot();
        let snapshot = Snapshot {
            ready: s.ready.get().is_some(),
            queue,
            inbox_depth: inbox.as_ref().map(|i| i.depth),
            dead_events: inbox.as_ref().map(|i| i.dead),
            forward: forward.per_table,
            reverse: reverse.per_table,
            forward_config_fault: forward.config_fault.is_some(),
            backfill: backfill
                .into_iter()
                .map(|(table, point)| BackfillProgress {
                    table,
                    enqueued: point.enqueued,
                    rows: point.rows,
                })
                .collect(),
        };
        s.telemetry.render(&snapshot)
    }
}
