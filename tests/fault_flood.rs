//! A flood of notifications (fault suite): 10,000 `queue-notify` requests in a few seconds,
//! while the clinic keeps writing, are answered at once and coalesce into far fewer drains (a
//! notification only wakes the one forward worker; no task per request), memory stays flat,
//! and every change still arrives: both sides compared row for row at the end.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use syncbridge::mapping::TableMap;

const NOTIFIES: usize = 10_000;
const CLIENTS: usize = 20;
const WRITES: i64 = 300;

/// This test process's resident set, in KiB (the agent runs inside it).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_notifications_coalesce_and_every_change_arrives() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.notify().await;
    h.wait_synced().await;
    let before = h.status().await["forward"]["state"].clone();
    let rss_before = rss_kb();

    let url = h.url("/api/sync/queue-notify");
    let started = Instant::now();
    let flood: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url) = (h.http.clone(), url.clone());
            tokio::spawn(async move {
                let mut answered = 0usize;
                for _ in 0..NOTIFIES / CLIENTS {
                    let r = http.post(&url).bearer_auth(NOTIFY_TOKEN).send().await;
                    if r.is_ok_and(|r| r.status() == 202) {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    // The clinic keeps writing meanwhile: new batches, and aligner counts changed on the first
    // ones (a clinic-owned column: `Days` is portal-owned, which issue 6.10 is about).
    let sql = Arc::new(h.sql.clone());
    let writer = tokio::spawn({
        let sql = sql.clone();
        async move {
            for id in 1..=WRITES {
                sql.clinic_write(
                    "tblAlignerBatches",
                    &key("AlignerBatchID", id),
                    Some(batch(id, 1, 7)),
                );
                if id % 3 == 0 {
                    sql.clinic_update(
                        "tblAlignerBatches",
                        &key("AlignerBatchID", id / 3),
                        &[(
                            "UpperAlignerCount",
                            syncbridge::sqlserver::SqlValue::Int(id),
                        )],
                    );
                }
                tokio::task::yield_now().await;
            }
        }
    });
    let mut answered = 0;
    for client in flood {
        answered += client.await.expect("client");
    }
    let flood_time = started.elapsed();
    writer.await.expect("writer");
    // The last write may have come after the last notification: SQL Server notifies after it.
    h.notify().await;
    h.wait_synced().await;
    let rss_after = rss_kb();

    let after = h.status().await["forward"]["state"].clone();
    let count = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let notified = count(&after, "notifications") - count(&before, "notifications");
    let drains = count(&after, "drains") - count(&before, "drains");
    println!(
        "flood: {answered} of {NOTIFIES} answered 202 in {flood_time:?}; {drains} drains; RSS {rss_before} → {rss_after} kB"
    );
    assert_eq!(answered, NOTIFIES, "every notification answered 202");
    assert_eq!(notified, NOTIFIES as u64 + 1);
    assert!(
        flood_time < Duration::from_secs(60),
        "10,000 notifications took {flood_time:?}"
    );
    // One worker, woken: a notification arriving during a drain marks one more drain, never
    // one per request. How many coalesce depends on how fast a drain is (on an idle machine
    // most drains finish before the next notification), so the bound is the notifications.
    assert!(
        drains <= notified,
        "{drains} drains for {notified} notifications: more work than requests"
    );
    assert!(
        rss_after < rss_before + 48 * 1024,
        "RSS grew from {rss_before} to {rss_after} kB"
    );
    assert_eq!(
        h.pg_rows("SELECT count(*)::int AS n FROM aligner_batches")
            .await[0]["n"],
        json!(WRITES)
    );
    assert_nothing_lost(&h, &TableMap::sample_clinic()).await;
}
