//! The answer of `GET /api/sync/status`: the agent's own state (version, uptime, readiness,
//! start-up problem), each direction's counters, and the durable numbers read from their owners
//! at request time (queue counts from SQL Server; inbox depth, watermarks and dead events from
//! the inbox). A part that cannot be read says why instead of failing the whole answer.

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::handle::AgentHandle;

/// How many dead events the status shows.
const DEAD_EVENTS_SHOWN: usize = 20;

fn or_error<T: serde::Serialize, E: std::fmt::Display>(read: Result<T, E>) -> Value {
    match read {
        Ok(v) => json!(v),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

impl AgentHandle {
    pub(crate) async fn status_report(&self) -> Value {
        let s = &self.shared;
        let queue = or_error(s.store.queue_stats().await);
        let inbox = or_error(s.inbox.stats().await);
        let watermarks: Map<String, Value> = s
            .inbox
            .watermarks()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(table, w)| (table, json!(w)))
            .collect();
        let dead = s
            .inbox
            .dead_events(DEAD_EVENTS_SHOWN)
            .await
            .unwrap_or_default();
        let forward = s.forward_counters.snapshot();
        let reverse = s.reverse_counters.snapshot();
        json!({
            "agent": {
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": s.started_at,
                "uptime_secs": (Utc::now() - s.started_at).num_seconds(),
                "ready": s.ready.get().is_some(),
                "startup_problem": s.lock_problem().clone(),
            },
            "forward": { "queue": queue, "config_fault": forward.config_fault, "state": forward },
            "reverse": {
                "inbox": inbox,
                "state": reverse,
                "catchup_watermarks": watermarks,
                "dead_events": dead,
            },
        })
    }
}
