//! Issue 6.1: an outage is not the rows' fault. With the retry schedule compressed (50 ms to
//! 400 ms, 3 attempts), PostgREST down, unreachable or slower than the client timeout for
//! longer than the whole schedule, rate-limited with `Retry-After`, or failing every other
//! request: every change made meanwhile arrives, none is `Failed`, none spent an attempt, and
//! both sides end equal row for row.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use syncbridge::mapping::TableMap;
use tokio::time::Instant;

/// The compressed schedule: three attempts would be spent within about a second.
const MAX_ATTEMPTS: u32 = 3;

fn options() -> Options {
    Options {
        max_attempts: MAX_ATTEMPTS,
        ..Options::default()
    }
}

/// Wave `n` of clinic changes: five new patients with a work row each, a rename of an earlier
/// patient, and a deleted one (which has no work row).
fn clinic_changes(h: &Harness, n: i64) {
    for id in n * 10 + 1..=n * 10 + 5 {
        h.sql.clinic_write(
            "tblPatients",
            &key("PersonID", id),
            Some(patient(id, "new")),
        );
        h.sql
            .clinic_write("tblWork", &key("WorkID", id), Some(work(id, id)));
    }
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", 1000 + n),
        Some(patient(1000 + n, "short-lived")),
    );
    if n > 0 {
        h.sql.clinic_update(
            "tblPatients",
            &key("PersonID", (n - 1) * 10 + 1),
            &[("PatientName", text(&format!("renamed in wave {n}")))],
        );
        h.sql
            .clinic_write("tblPatients", &key("PersonID", 1000 + n - 1), None);
    }
}

/// Requests PostgREST answered with `status`.
fn answered(h: &Harness, status: u16) -> usize {
    h.rest
        .requests()
        .iter()
        .filter(|r| r.status == status)
        .count()
}

fn failed_items(h: &Harness) -> usize {
    h.sql
        .queue()
        .iter()
        .filter(|q| q.status == "Failed")
        .count()
}

/// Waits until the agent has tried (claimed a batch) far more often than its attempts allow,
/// or until some item is `Failed` (what happened before issue 6.1), then checks that none is.
async fn outlast_the_schedule(h: &Harness, what: &str) {
    let enough = h.sql.calls("claim") + 2 * u64::from(MAX_ATTEMPTS) + 2;
    wait_for(what, || async {
        h.sql.calls("claim") >= enough || failed_items(h) > 0
    })
    .await;
    let attempts: Vec<(String, u32)> = h
        .sql
        .queue()
        .into_iter()
        .filter(|q| q.status != "Synced")
        .map(|q| (q.status, q.attempts))
        .collect();
    assert!(!attempts.is_empty(), "changes are waiting");
    assert!(
        attempts.iter().all(|(s, a)| s == "Pending" && *a == 0),
        "an outage spends no attempt and fails nothing: {attempts:?}"
    );
}

/// The end of every test here.
async fn nothing_lost(h: &Harness) {
    assert_nothing_lost(h, &TableMap::sample_clinic()).await;
}

fn outage_status(status: &Value) -> &Value {
    &status["forward"]["outage"]
}

/// An outage that lasts while the agent tries many times more than its attempts allow, with
/// changes made before, during and after it is noticed.
async fn outage_then_back(h: &Harness, what: &str, refused: u16) {
    clinic_changes(h, 0);
    h.notify().await;
    h.wait_synced().await;
    begin(h, refused).await;
    clinic_changes(h, 1);
    h.notify().await;
    outlast_the_schedule(h, what).await;
    let status = h
        .wait_status("the outage shown", |s| {
            outage_status(s)["consecutive_failures"].as_u64() > Some(u64::from(MAX_ATTEMPTS))
        })
        .await;
    let outage = outage_status(&status);
    assert_eq!(outage["side"], json!("supabase"), "{status}");
    assert!(outage["since"].is_string() && outage["next_attempt_at"].is_string());
    assert!(outage["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    clinic_changes(h, 2);
    h.notify().await;
    end(h, refused).await;
    nothing_lost(h).await;
    let status = h.status().await;
    assert_eq!(*outage_status(&status), Value::Null, "the outage is over");
}

async fn begin(h: &Harness, refused: u16) {
    match refused {
        503 => h.rest.set_down(true),
        _ => h.rest.set_unreachable(true).await.expect("unreachable"),
    }
}

async fn end(h: &Harness, refused: u16) {
    match refused {
        503 => h.rest.set_down(false),
        _ => h.rest.set_unreachable(false).await.expect("reachable"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_down_for_longer_than_the_whole_schedule_loses_nothing() {
    let h = Harness::start_with(options()).await;
    outage_then_back(&h, "many 503s from the gateway", 503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_unreachable_for_longer_than_the_whole_schedule_loses_nothing() {
    let h = Harness::start_with(options()).await;
    outage_then_back(&h, "many refused connections", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_slower_than_the_client_timeout_loses_nothing() {
    let h = Harness::start_with(Options {
        timeout: "300ms",
        ..options()
    })
    .await;
    h.rest.set_latency(Duration::from_secs(1));
    clinic_changes(&h, 0);
    h.notify().await;
    // A slow PostgREST still commits what the agent gave up waiting for.
    outlast_the_schedule(&h, "many timed-out requests").await;
    clinic_changes(&h, 1);
    h.notify().await;
    h.rest.set_latency(Duration::ZERO);
    nothing_lost(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured() {
    let h = Harness::start_with(Options {
        backoff_cap: "3s",
        ..options()
    })
    .await;
    h.rest.clear_requests();
    h.rest.set_retry_after(Some(1));
    h.rest
        .fail_next(1, 429, json!({"message": "rate limit exceeded"}));
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "A")));
    h.notify().await;
    h.rest
        .wait_for_requests(1, DEADLINE)
        .await
        .expect("the refused request");
    let refused_at = Instant::now();
    h.rest
        .wait_for_requests(2, DEADLINE)
        .await
        .expect("the retry");
    let waited = refused_at.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before the 1 s Supabase asked for"
    );
    assert_eq!(h.rest.requests()[0].status, 429);
    nothing_lost(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_asking_for_longer_than_the_cap_waits_the_cap() {
    // Retry-After: 30 s against a 400 ms cap: each wait is the cap, not half a minute.
    let h = Harness::start_with(options()).await;
    h.rest.clear_requests();
    h.rest.set_retry_after(Some(30));
    h.rest
        .fail_next(4, 503, json!({"message": "upstream unavailable"}));
    clinic_changes(&h, 0);
    let started = Instant::now();
    h.notify().await;
    let mut seen = Vec::new();
    for n in 1..=5 {
        h.rest
            .wait_for_requests(n, DEADLINE)
            .await
            .expect("a request");
        seen.push(started.elapsed());
    }
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .all(|g| *g >= Duration::from_millis(350) && *g < Duration::from_secs(5)),
        "each wait is the 400 ms cap: {gaps:?}"
    );
    nothing_lost(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_every_other_request_loses_nothing() {
    let h = Harness::start_with(Options {
        batch_size: 4,
        ..options()
    })
    .await;
    seed_parents(&h.sql);
    h.rest
        .fail_every(2, 500, json!({"message": "internal server error"}));
    for n in 0..3 {
        clinic_changes(&h, n);
        h.notify().await;
    }
    h.wait_synced().await;
    assert!(answered(&h, 500) >= 5, "the fault was exercised");
    h.rest.fail_every(0, 500, Value::Null);
    nothing_lost(&h).await;
}
