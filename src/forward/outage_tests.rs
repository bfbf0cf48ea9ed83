//! The forward path during an outage, against the two doubles on paused time: items keep
//! their attempts however long it lasts, the worker backs off as a whole (notifications wait,
//! a manual trigger does not), `Retry-After` is honoured within the cap, what was sent before
//! the outage settles, and a column Supabase dropped is left out without stopping the rest.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::forward::batch::{BatchOutcome, Halt};
use crate::forward::fixture::{key, patient, sample_openapi, work, worker, BACKOFF};
use crate::forward::outage::Side;
use crate::forward::pipeline::Lanes;
use crate::sqlserver::memory::MemoryStore;
use crate::supabase::memory::{MemorySupabase, RequestKind};

/// Lets every task run until all are blocked.
async fn settle_tasks() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn writes(supabase: &MemorySupabase) -> usize {
    supabase
        .requests()
        .iter()
        .filter(|r| r.kind != RequestKind::Schema)
        .count()
}

fn attempts_and_statuses(store: &MemoryStore) -> Vec<(String, u32)> {
    store
        .queue()
        .into_iter()
        .map(|q| (q.status, q.attempts))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_success_reported_after_another_batchs_outage_keeps_the_backoff() {
    // Batches in flight report in any order: batch 1's success (its requests answered before
    // the outage) may be reported after batch 0 met the outage and set the backoff, e.g.
    // because batch 1 waited on SQL Server while settling.
    let w = worker(&MemoryStore::sample_clinic(), &MemorySupabase::new(), 1, 10).await;
    let success = BatchOutcome {
        answered: true,
        ..BatchOutcome::default()
    };

    // With no outage in its drain, a success does clear the backoff.
    w.failed(Side::Supabase, "HTTP 503", None);
    assert!(w.backing_off().is_some());
    w.report_answered(&success, &Lanes::new(4));
    assert!(w.backing_off().is_none(), "a success ends the backoff");

    let lanes = Lanes::new(4);
    let outage = Halt::Outage {
        error: "HTTP 503".to_owned(),
        retry_after: None,
    };
    assert!(lanes.halted(&outage), "batch 0 meets the outage first");
    w.failed(Side::Supabase, "HTTP 503", None);
    w.report_answered(&success, &lanes);
    assert!(
        w.backing_off().is_some(),
        "batch 1's success from before the outage leaves its backoff in place"
    );
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_outage_spends_no_attempts_and_everything_syncs_after() {
    let store = MemoryStore::sample_clinic();
    for id in 1..=3 {
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, "p")));
    }
    let supabase = MemorySupabase::new();
    supabase.set_failing(Some(503));
    let worker = worker(&store, &supabase, 50, 3).await;
    let counters = worker.counters.clone();
    let cancel = CancellationToken::new();
    let (handle, task) = worker.spawn(cancel.clone());
    settle_tasks().await;
    assert_eq!(
        writes(&supabase),
        1,
        "one request for the batch: no bisection"
    );
    let outage = counters.snapshot().outage.expect("the outage is shown");
    assert_eq!(outage.consecutive_failures, 1);
    assert!(outage.last_error.contains("503"), "{}", outage.last_error);

    // An hour: far beyond 3 attempts' worth of the schedule.
    for _ in 0..60 {
        tokio::time::advance(Duration::from_secs(60)).await;
        settle_tasks().await;
    }
    let tried = writes(&supabase);
    // Attempts double from 1–2 s up to the 5–10 min cap: about a dozen in an hour.
    assert!((10..=25).contains(&tried), "{tried} attempts in an hour");
    assert_eq!(
        attempts_and_statuses(&store),
        vec![("Pending".to_owned(), 0); 3],
        "nobody's fault: no attempt spent, nothing Failed"
    );
    let outage = counters.snapshot().outage.expect("still shown");
    assert_eq!(outage.consecutive_failures as usize, tried);

    // New data does not mean Supabase is back: a notification waits for the backoff.
    handle.notify();
    settle_tasks().await;
    assert_eq!(
        writes(&supabase),
        tried,
        "the notification did not bypass the backoff"
    );
    // A manual trigger does.
    let report = handle.drain_now().await.expect("a drain report");
    assert!(report.error.unwrap_or_default().contains("503"));
    assert_eq!(writes(&supabase), tried + 1);

    supabase.set_failing(None);
    let report = handle.drain_now().await.expect("a drain report");
    assert_eq!((report.items_synced, report.error), (3, None));
    assert_eq!(
        attempts_and_statuses(&store),
        vec![("Synced".to_owned(), 0); 3]
    );
    assert_eq!(supabase.rows("patients").len(), 3);
    assert_eq!(counters.snapshot().outage, None, "the outage is over");
    cancel.cancel();
    task.await.expect("worker stops");
}

#[tokio::test(start_paused = true)]
async fn what_was_sent_before_the_outage_settles_and_the_rest_is_released() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    store.clinic_write("tblWork", &key("WorkID", 10), Some(work(10, 1)));
    let supabase = MemorySupabase::new();
    // The patients upsert goes through; the work upsert meets the outage.
    supabase.set_failing_after(1, Some(503));
    let report = worker(&store, &supabase, 50, 3)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.items_synced, report.items_released), (1, 1));
    let queue = store.queue();
    let by_table = |t: &str| queue.iter().find(|q| q.table == t).expect("item");
    assert_eq!(by_table("tblPatients").status, "Synced");
    let work_item = by_table("tblWork");
    assert_eq!(
        (work_item.status.as_str(), work_item.attempts),
        ("Pending", 0)
    );
    assert!(work_item
        .last_error
        .clone()
        .unwrap_or_default()
        .contains("503"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_clamped_to_the_cap() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    let supabase = MemorySupabase::new();
    supabase.set_failing(Some(429));
    supabase.set_retry_after(Some(Duration::from_secs(120)));
    let cancel = CancellationToken::new();
    let (_handle, task) = worker(&store, &supabase, 50, 3).await.spawn(cancel.clone());
    settle_tasks().await;
    assert_eq!(writes(&supabase), 1);
    tokio::time::advance(Duration::from_secs(119)).await;
    settle_tasks().await;
    assert_eq!(
        writes(&supabase),
        1,
        "not before the 120 s Supabase asked for"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    settle_tasks().await;
    assert_eq!(writes(&supabase), 2, "right after them");

    // A day is beyond the cap: the next attempt comes at the cap.
    supabase.set_retry_after(Some(Duration::from_secs(86_400)));
    tokio::time::advance(BACKOFF.cap).await;
    settle_tasks().await;
    assert_eq!(
        writes(&supabase),
        3,
        "the 120 s wait was followed by one at the cap"
    );
    tokio::time::advance(BACKOFF.cap - Duration::from_secs(1)).await;
    settle_tasks().await;
    assert_eq!(writes(&supabase), 3);
    tokio::time::advance(Duration::from_secs(2)).await;
    settle_tasks().await;
    assert_eq!(writes(&supabase), 4, "clamped to the cap, not a day");
    assert_eq!(store.queue()[0].attempts, 0);
    cancel.cancel();
    task.await.expect("worker stops");
}

#[tokio::test(start_paused = true)]
async fn a_column_dropped_in_supabase_is_left_out_and_the_rest_keeps_syncing() {
    let store = MemoryStore::sample_clinic();
    for id in 1..=2 {
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, "p")));
    }
    let supabase = MemorySupabase::new();
    supabase.set_schema(sample_openapi(&[("patients", "phone")]).await);
    supabase.drop_column("patients", "phone");
    let worker = worker(&store, &supabase, 50, 3).await;
    let report = worker.drain(&CancellationToken::new()).await;
    assert_eq!((report.items_synced, report.error), (2, None));
    let rows = supabase.rows("patients");
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| !r.contains_key("phone") && r["patient_name"] == json!("p")));
    let kinds: Vec<RequestKind> = supabase.requests().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RequestKind::Upsert,
            RequestKind::Schema,
            RequestKind::Upsert
        ],
        "refused once, the schema read again, then sent without the column"
    );
    assert_eq!(
        attempts_and_statuses(&store),
        vec![("Synced".to_owned(), 0); 2]
    );
    assert!(worker
        .map
        .get()
        .by_source("tblPatients")
        .is_some_and(|t| t.by_target("phone").is_none()));
}

#[tokio::test(start_paused = true)]
async fn a_column_refused_that_the_schema_still_lists_pauses_without_spending_attempts() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    let supabase = MemorySupabase::new();
    // Supabase lists the column but refuses it (say, a trigger naming a dropped column).
    supabase.set_schema(sample_openapi(&[]).await);
    supabase.drop_column("patients", "phone");
    let worker = worker(&store, &supabase, 50, 3).await;
    let report = worker.drain(&CancellationToken::new()).await;
    assert!(report.error.unwrap_or_default().contains("PGRST204"));
    assert!(worker
        .counters
        .config_fault()
        .is_some_and(|f| f.contains("PGRST204")));
    assert_eq!(attempts_and_statuses(&store), [("Pending".to_owned(), 0)]);
    assert_eq!(writes(&supabase), 1, "no retry loop, no bisection");
}
