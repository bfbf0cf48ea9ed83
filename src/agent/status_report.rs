//! The answer of `GET /api/sync/status`: the agent's own state (version, uptime, readiness,
//! start-up problem), each direction's counters (the forward outage and configuration fault
//! among them), the columns on one side only (`schema_drift`), and the durable numbers read
//! from their owners at request time (queue counts and recent failures from SQL Server; inbox
//! depth, watermarks and dead events from the inbox). A part that cannot be read says why
//! instead of failing the whole answer. `syncbridge status` reads the same durable parts itself
//! when no agent answers ([`offline_report`]), so both answers have one shape.

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::handle::AgentHandle;
use crate::reverse::Inbox;
use crate::sqlserver::SqlStore;

/// How many dead events the status shows.
const DEAD_EVENTS_SHOWN: usize = 20;
/// How many of the newest Failed queue items the status shows.
const FAILURES_SHOWN: usize = 10;

fn or_error<T: serde::Serialize, E: std::fmt::Display>(read: Result<T, E>) -> Value {
    match read {
        Ok(v) => json!(v),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// What SQL Server and the inbox hold, whether or not an agent runs.
struct Durable {
    queue: Value,
    recent_failures: Value,
    inbox: Value,
    watermarks: Value,
    dead: Value,
}

async fn read_durable(store: &dyn SqlStore, inbox: Option<&Inbox>) -> Durable {
    let queue = or_error(store.queue_stats().await);
    let recent_failures = or_error(store.recent_failures(FAILURES_SHOWN).await);
    let Some(inbox) = inbox else {
        let none = json!({ "error": "no inbox yet (the agent has not run in this SYNC_DATA_DIR)" });
        return Durable {
            queue,
            recent_failures,
            inbox: none.clone(),
            watermarks: json!({}),
            dead: none,
        };
    };
    let watermarks: Map<String, Value> = inbox
        .watermarks()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(table, w)| (table, json!(w)))
        .collect();
    Durable {
        queue,
        recent_failures,
        inbox: or_error(inbox.stats().await),
        watermarks: Value::Object(watermarks),
        dead: or_error(inbox.dead_events(DEAD_EVENTS_SHOWN).await),
    }
}

/// The status as `syncbridge status` reads it without an agent: the durable parts, and why the
/// agent did not answer.
pub(crate) async fn offline_report(
    store: &dyn SqlStore,
    inbox: Option<&Inbox>,
    why: &str,
) -> Value {
    let d = read_durable(store, inbox).await;
    json!({
        "agent": { "running": false, "reason": why },
        "forward": { "queue": d.queue, "recent_failures": d.recent_failures },
        "reverse": {
            "inbox": d.inbox,
            "catchup_watermarks": d.watermarks,
            "dead_events": d.dead,
        },
    })
}

impl AgentHandle {
    pub(crate) async fn status_report(&self) -> Value {
        let s = &self.shared;
        let d = read_durable(s.store.as_ref(), Some(&s.inbox)).await;
        let forward = s.forward_counters.snapshot();
        let reverse = s.reverse_counters.snapshot();
        json!({
            "agent": {
                "running": true,
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": s.started_at,
                "uptime_secs": (Utc::now() - s.started_at).num_seconds(),
                "ready": s.ready.get().is_some(),
                "startup_problem": s.lock_problem().clone(),
            },
            "forward": {
                "queue": d.queue,
                "recent_failures": d.recent_failures,
                "config_fault": forward.config_fault,
                "outage": forward.outage,
                "state": forward,
            },
            "schema_drift": s.drift.snapshot(),
            "reverse": {
                "inbox": d.inbox,
                "state": reverse,
                "catchup_watermarks": d.watermarks,
                "dead_events": d.dead,
            },
        })
    }
}
