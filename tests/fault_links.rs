//! The process fault suite, part two: the real binary over the out-of-process SQL Server
//! double while the link to PostgREST fails: unreachable and down (503) for longer than the
//! whole retry schedule (compressed by settings: 3 attempts, 50 ms to 400 ms), slower than the
//! client timeout, 429 and 503 with `Retry-After`, 500 on every other request. Every change
//! arrives, none is `Failed` or spent an attempt, both sides end equal row for row.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::process::{AgentProcess, Sides};
use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

const MAX_ATTEMPTS: u64 = 3;

/// Waits until the agent has claimed a batch far more often than its attempts allow (or an
/// item is `Failed`, which an outage must never cause), then checks no attempt was spent.
async fn outlast_the_schedule(sides: &Sides, what: &str) {
    let enough = sides.double.calls("claim") + 2 * MAX_ATTEMPTS + 2;
    wait_for(what, || async {
        sides.double.calls("claim") >= enough
            || sides.sql().queue().iter().any(|q| q.status == "Failed")
    })
    .await;
    let waiting: Vec<(String, u32)> = sides
        .sql()
        .queue()
        .into_iter()
        .filter(|q| q.status != "Synced")
        .map(|q| (q.status, q.attempts))
        .collect();
    assert!(!waiting.is_empty(), "changes are waiting");
    assert!(
        waiting.iter().all(|(s, a)| s == "Pending" && *a == 0),
        "an outage spends no attempt and fails nothing: {waiting:?}"
    );
}

async fn synced_agent(sides: &Sides, extra: &[(&str, &str)]) -> AgentProcess {
    let agent = sides.agent("agent-a", extra).await;
    sides.clinic_changes(1, 5);
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
    agent
}

/// An outage outlasting the schedule, shown in status, then over.
async fn outage_then_back(unreachable: bool, fault: &str) {
    let sides = Sides::start().await;
    let agent = synced_agent(&sides, &[]).await;
    if unreachable {
        sides.rest.set_unreachable(true).await.expect("unreachable");
    } else {
        sides.rest.set_down(true);
    }
    sides.clinic_changes(10, 5);
    agent.notify(&sides.http).await;
    outlast_the_schedule(&sides, fault).await;
    let status = agent.status(&sides.http).await;
    let outage = &status["forward"]["outage"];
    assert_eq!(outage["side"], json!("supabase"), "{status}");
    assert!(
        outage["consecutive_failures"].as_u64() > Some(MAX_ATTEMPTS),
        "{status}"
    );
    sides.clinic_changes(20, 5);
    agent.notify(&sides.http).await;
    if unreachable {
        sides.rest.set_unreachable(false).await.expect("reachable");
    } else {
        sides.rest.set_down(false);
    }
    sides.nothing_lost(fault, 0).await;
    let status = agent.status(&sides.http).await;
    assert_eq!(
        status["forward"]["outage"],
        Value::Null,
        "the outage is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_unreachable_for_longer_than_the_schedule_then_back() {
    outage_then_back(true, "PostgREST unreachable > retry schedule").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_answering_503_for_longer_than_the_schedule_then_back() {
    outage_then_back(false, "PostgREST 503 > retry schedule").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgrest_slower_than_the_client_timeout_then_fast() {
    let sides = Sides::start().await;
    let agent = synced_agent(&sides, &[("SUPABASE_TIMEOUT", "300ms")]).await;
    sides.rest.set_latency(Duration::from_secs(1));
    sides.clinic_changes(10, 5);
    agent.notify(&sides.http).await;
    outlast_the_schedule(&sides, "many timed-out requests").await;
    sides.rest.set_latency(Duration::ZERO);
    sides
        .nothing_lost("PostgREST slower than the timeout", 0)
        .await;
}

/// One refusal with `Retry-After: 1`, then the retry no sooner than that.
async fn refused_with_retry_after(sides: &Sides, agent: &AgentProcess, status: u16, first: i64) {
    sides.rest.clear_requests();
    sides.rest.set_retry_after(Some(1));
    sides
        .rest
        .fail_next(1, status, json!({"message": "slow down"}));
    sides.clinic_changes(first, 1);
    agent.notify(&sides.http).await;
    sides
        .rest
        .wait_for_requests(1, DEADLINE)
        .await
        .expect("the refused request");
    let refused_at = Instant::now();
    sides
        .rest
        .wait_for_requests(2, DEADLINE)
        .await
        .expect("the retry");
    let waited = refused_at.elapsed();
    assert_eq!(sides.rest.requests()[0].status, status);
    assert!(
        waited >= Duration::from_millis(950),
        "{status}: retried after {waited:?}, before the 1 s asked for"
    );
    sides.wait_synced(&[agent]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_and_a_503_with_retry_after_are_honoured() {
    let sides = Sides::start().await;
    let agent = synced_agent(&sides, &[("SYNC_BACKOFF_CAP", "3s")]).await;
    refused_with_retry_after(&sides, &agent, 429, 100).await;
    refused_with_retry_after(&sides, &agent, 503, 200).await;
    sides.rest.set_retry_after(None);
    sides.nothing_lost("429 and 503 with Retry-After", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_every_other_request_loses_nothing() {
    let sides = Sides::start().await;
    let agent = synced_agent(&sides, &[("SYNC_BATCH_SIZE", "4")]).await;
    sides.rest.clear_requests();
    sides
        .rest
        .fail_every(2, 500, json!({"message": "internal server error"}));
    for wave in 1..=3 {
        sides.clinic_changes(wave * 10, 5);
        agent.notify(&sides.http).await;
    }
    sides.wait_synced(&[&agent]).await;
    let refused = sides
        .rest
        .requests()
        .iter()
        .filter(|r| r.status == 500)
        .count();
    assert!(refused >= 5, "the fault was exercised: {refused}");
    sides.rest.fail_every(0, 500, Value::Null);
    sides.nothing_lost("500 on every other request", 0).await;
}

/// The patient's name in Supabase.
async fn supabase_name(sides: &Sides, id: i64) -> Option<String> {
    let rows = sides
        .db
        .query_json(&format!(
            "SELECT patient_name FROM patients WHERE person_id = {id}"
        ))
        .await
        .expect("query");
    rows.first()
        .and_then(|r| r["patient_name"].as_str().map(str::to_owned))
}

/// Found by the soak: a request the agent gave up on (client timeout) is still applied by a
/// slow PostgREST after the agent sent a newer value for the same row. Before the row version
/// (`synced_at`, `sql/supabase/04_row_versions.sql`) Supabase then kept the older value while
/// the queue said `Synced`; now the late upsert carries an older clinic time than the row's and
/// Supabase skips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_given_up_on_never_overwrites_a_newer_one() {
    let sides = Sides::start().await;
    let agent = synced_agent(&sides, &[("SUPABASE_TIMEOUT", "300ms")]).await;
    sides.rest.set_latency(Duration::from_millis(1500));
    let id = key("PersonID", 1);
    sides
        .sql()
        .clinic_update("tblPatients", &id, &[("PatientName", text("older"))]);
    agent.notify(&sides.http).await;
    let sent = sides.double.calls("settle");
    wait_for("the slow request given up on", || async {
        sides.double.calls("settle") > sent
    })
    .await;
    sides
        .sql()
        .clinic_update("tblPatients", &id, &[("PatientName", text("newer"))]);
    sides.rest.set_latency(Duration::ZERO);
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
    wait_for("the newer name in Supabase", || async {
        supabase_name(&sides, 1).await.as_deref() == Some("newer")
    })
    .await;
    // The older request is still inside the slow PostgREST: watch past its latency.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        assert_eq!(supabase_name(&sides, 1).await.as_deref(), Some("newer"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sides
        .nothing_failed("a late write after a timeout", 1)
        .await;
}

/// The same for a killed agent's request: it reached a slow PostgREST, the agent was killed,
/// the clinic changed the row again and the restarted agent sent the newer value; the dead
/// agent's request, applied after it, is skipped (its clinic time is older than the row's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_write_landing_late_never_overwrites_a_newer_one() {
    let sides = Sides::start().await;
    let mut agent = synced_agent(&sides, &[]).await;
    sides.rest.set_latency(Duration::from_secs(3));
    let id = key("PersonID", 1);
    sides
        .sql()
        .clinic_update("tblPatients", &id, &[("PatientName", text("older"))]);
    let arrived = sides.rest.arrived();
    agent.notify(&sides.http).await;
    wait_for("the upsert inside the slow PostgREST", || async {
        sides.rest.arrived() > arrived
    })
    .await;
    agent.kill();
    sides.rest.set_latency(Duration::ZERO);
    sides.rest.clear_requests();
    sides
        .sql()
        .clinic_update("tblPatients", &id, &[("PatientName", text("newer"))]);
    agent.start();
    agent.wait_ready(&sides).await;
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
    // Both upserts answered: the dead agent's one last, so the race happened as intended.
    let upserts = || {
        sides
            .rest
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.table() == "patients")
            .collect::<Vec<_>>()
    };
    wait_for("the dead agent's upsert applied", || async {
        upserts().len() >= 2
    })
    .await;
    let last = upserts().last().and_then(|r| r.body.clone());
    assert!(
        last.is_some_and(|b| b.to_string().contains("older")),
        "the late upsert was answered after the newer one"
    );
    assert_eq!(supabase_name(&sides, 1).await.as_deref(), Some("newer"));
    sides.nothing_failed("a killed agent's late write", 1).await;
}
