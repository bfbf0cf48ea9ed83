//! Reverse measurements: webhooks accepted per second by concurrent clients (each answered
//! only once its event is fsync'd in the inbox), the accept latency, and webhook → applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use syncbridge::sqlserver::memory::MemoryStore;

use crate::env::{Running, Side, SECRET};
use crate::workload;

pub struct Ingest {
    pub accepted: usize,
    pub took: Duration,
    /// Accept latencies, sorted.
    pub accept: Vec<Duration>,
    /// First POST → every event applied in SQL Server.
    pub all_applied: Duration,
}

fn note(i: usize) -> Value {
    let uid = uuid::Uuid::from_u128(i as u128 + 1);
    json!({"type": "INSERT", "table": "aligner_notes", "schema": "public", "old_record": null,
        "record": {"note_uid": uid, "aligner_set_id": 1, "note_type": "Doctor",
                   "note_text": format!("note {i} ملاحظة: the upper aligner does not seat on 12"),
                   "created_at": "2026-11-25T10:00:00", "is_edited": false, "edited_at": null,
                   "is_read": false, "updated_at": "2026-11-25T10:00:00+00:00"}})
}

async fn post(agent: &Running, body: &Value) -> Duration {
    let started = Instant::now();
    let r = agent
        .http
        .post(format!("{}/api/sync/webhook", agent.base))
        .bearer_auth(SECRET)
        .json(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 200, "webhook refused");
    started.elapsed()
}

async fn agent() -> (Side, Running) {
    let side = Side::start(Duration::ZERO).await;
    let store = MemoryStore::sample_clinic();
    crate::fixtures::seed_parents(&store);
    store.clear_queue();
    let agent = Running::start(&side, store, workload::bench_map(), None).await;
    (side, agent)
}

/// `count` note webhooks from `clients` concurrent clients.
pub async fn ingest(count: usize, clients: usize) -> Ingest {
    let (_side, agent) = agent().await;
    let agent = Arc::new(agent);
    let bodies: Vec<Value> = (0..count).map(note).collect();
    let started = Instant::now();
    let mut accept: Vec<Duration> = futures_util::stream::iter(bodies.iter())
        .map(|b| {
            let agent = Arc::clone(&agent);
            async move { post(&agent, b).await }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let took = started.elapsed();
    accept.sort();
    while agent.store.rows("tblAlignerNotes").len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "webhooks never applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ingest {
        accepted: count,
        took,
        accept,
        all_applied: started.elapsed(),
    }
}

/// Webhook → applied in SQL Server, one at a time; sorted.
pub async fn applied_latency(samples: usize) -> Vec<Duration> {
    let (_side, agent) = agent().await;
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        post(&agent, &note(i)).await;
        while agent.store.rows("tblAlignerNotes").len() <= i {
            assert!(started.elapsed() < Duration::from_secs(30), "never applied");
            tokio::task::yield_now().await;
        }
        out.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out.sort();
    out
}
