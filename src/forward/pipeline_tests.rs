//! The pipeline's promises, on paused time against the two doubles: the next batch is claimed
//! and read while the first is still in flight, batches of different tables overlap, and yet a
//! child never reaches Supabase before its parent, a record's later change never overtakes an
//! earlier one, and a halt in one batch spends no attempt of the others.

use std::time::Duration;

use futures_util::poll;
use tokio_util::sync::CancellationToken;

use super::{Lanes, Step};
use crate::forward::fixture::{clinic_patients, key, patient, work, worker};
use crate::sqlserver::memory::MemoryStore;
use crate::supabase::memory::MemorySupabase;

/// Lets every ready task run (paused time does not advance while this task keeps yielding).
async fn run_ready_tasks() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_batch_never_overtakes_the_batch_before_it() {
    let lanes = Lanes::new(2);
    let steps: Vec<Step> = (0..lanes.stages()).map(|s| lanes.step(s)).collect();
    assert_eq!(
        steps,
        [
            Step::Upsert(0),
            Step::Upsert(1),
            Step::Delete(1),
            Step::Delete(0)
        ],
        "upserts parents first, then deletes children first"
    );
    lanes.enter(0, 0).await;
    let third = lanes.enter(1, 1);
    tokio::pin!(third);
    assert!(
        poll!(&mut third).is_pending(),
        "batch 0 has not entered stage 1: batch 1 may not be ahead of it"
    );
    let second = lanes.enter(0, 1);
    tokio::pin!(second);
    assert!(
        poll!(&mut second).is_ready(),
        "batch 0 entered stage 0: batch 1 may share it"
    );
    assert!(poll!(&mut third).is_pending());
    lanes.enter(1, 0).await;
    assert!(poll!(&mut third).is_ready(), "batch 0 entered stage 1");
}

#[tokio::test(start_paused = true)]
async fn batches_of_one_table_are_in_flight_at_once() {
    let store = MemoryStore::sample_clinic();
    clinic_patients(&store, 1..=3);
    let supabase = MemorySupabase::new();
    // Every request takes a round trip: batches one after another in a table's lane would
    // never have two in flight.
    supabase.delay_next(3, Duration::from_secs(5));
    let report = worker(&store, &supabase, 1, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.items_synced, report.items_retried), (3, 0));
    assert_eq!(
        supabase.max_in_flight(),
        3,
        "three batches of patients were in flight together"
    );
    assert_eq!(supabase.rows("patients").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_next_batch_is_claimed_and_read_while_one_is_in_flight() {
    let store = MemoryStore::sample_clinic();
    clinic_patients(&store, 1..=3);
    let supabase = MemorySupabase::new();
    // Every write is slow: none has landed while the later batches are read.
    supabase.delay_next(3, Duration::from_secs(5));
    let w = worker(&store, &supabase, 1, 10).await;
    let drain = tokio::spawn(async move { w.drain(&CancellationToken::new()).await });
    run_ready_tasks().await;
    assert_eq!(
        supabase.rows("patients").len(),
        0,
        "the batches are in flight"
    );
    assert!(
        store.calls("claim") >= 3 && store.calls("load_rows") >= 3,
        "later batches claimed and read meanwhile: {} claims, {} loads",
        store.calls("claim"),
        store.calls("load_rows")
    );
    let report = drain.await.expect("drain");
    assert_eq!((report.items_synced, report.items_retried), (3, 0));
    assert_eq!(supabase.rows("patients").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn batches_of_different_tables_are_in_flight_at_once() {
    let store = MemoryStore::sample_clinic();
    // Claimed in queue order: a child table's batch first, a parent table's second.
    store.clinic_write("tblWork", &key("WorkID", 1), Some(work(1, 1)));
    store.clinic_write("tblPatients", &key("PersonID", 2), Some(patient(2, "p")));
    let supabase = MemorySupabase::new();
    supabase.delay_next(2, Duration::from_secs(5));
    let report = worker(&store, &supabase, 1, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.items_synced, report.items_retried), (2, 0));
    assert_eq!(
        supabase.max_in_flight(),
        2,
        "the second batch's parents were sent while the first batch's children were in flight"
    );
}

#[tokio::test(start_paused = true)]
async fn a_child_in_a_later_batch_waits_for_its_parent_in_an_earlier_one() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    store.clinic_write("tblWork", &key("WorkID", 1), Some(work(1, 1)));
    let supabase = MemorySupabase::new();
    supabase.add_foreign_key("work", "person_id", "patients", "person_id");
    // The parent's request is slow: a child sent beside it would be refused (23503).
    supabase.delay_next(1, Duration::from_secs(5));
    let report = worker(&store, &supabase, 1, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!(
        (report.batches, report.items_synced, report.items_retried),
        (2, 2, 0),
        "{report:?}"
    );
    assert_eq!(supabase.rows("work").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_record_claimed_again_waits_for_its_earlier_batch() {
    let store = MemoryStore::sample_clinic();
    let supabase = MemorySupabase::new();
    supabase.insert_rows(
        "patients",
        [serde_json::json!({"person_id": 5, "patient_name": "old"})
            .as_object()
            .cloned()
            .unwrap_or_default()],
    );
    // Patient 5 is deleted at the clinic; its batch's delete is slow...
    store.clinic_write("tblPatients", &key("PersonID", 5), None);
    supabase.delay_next(1, Duration::from_secs(5));
    // ...and it is inserted again while the next batch is claimed, the delete still in flight.
    let clinic = store.clone();
    store.on_claim(2, move || {
        clinic.clinic_write("tblPatients", &key("PersonID", 5), Some(patient(5, "back")));
    });
    let w = worker(&store, &supabase, 1, 10).await;
    let drain = tokio::spawn(async move { w.drain(&CancellationToken::new()).await });
    let report = drain.await.expect("drain");
    assert_eq!(report.items_retried + report.items_failed, 0, "{report:?}");
    let back: Vec<_> = supabase
        .rows("patients")
        .into_iter()
        .filter(|r| r["person_id"] == 5)
        .collect();
    assert_eq!(
        back.len(),
        1,
        "the re-insert must not be overtaken by the earlier delete"
    );
    assert_eq!(back[0]["patient_name"], "back");
}

#[tokio::test(start_paused = true)]
async fn an_outage_in_one_batch_spends_no_attempt_of_the_batches_beside_it() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblWork", &key("WorkID", 1), Some(work(1, 1)));
    clinic_patients(&store, 1..=3);
    let supabase = MemorySupabase::new();
    supabase.set_failing(Some(503));
    let report = worker(&store, &supabase, 1, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert!(report.error.is_some(), "the drain stops at the outage");
    assert_eq!(report.items_retried + report.items_failed, 0);
    let queue = store.queue();
    assert_eq!(queue.len(), 4);
    for item in queue {
        assert_eq!(
            (item.status.as_str(), item.attempts, item.claim),
            ("Pending", 0, None),
            "{} released with no attempt spent",
            item.record_id
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_later_batchs_success_does_not_clear_the_backoff_an_earlier_ones_outage_set() {
    let store = MemoryStore::sample_clinic();
    // Batch 0 (children) is slow and meets the outage; batch 1 (parents) succeeded before it.
    store.clinic_write("tblWork", &key("WorkID", 1), Some(work(1, 1)));
    store.clinic_write("tblPatients", &key("PersonID", 2), Some(patient(2, "p")));
    let supabase = MemorySupabase::new();
    supabase.delay_next(1, Duration::from_secs(5));
    supabase.set_failing_after(1, Some(503));
    let w = worker(&store, &supabase, 1, 10).await;
    let report = w.drain(&CancellationToken::new()).await;
    assert!(report.error.is_some(), "{report:?}");
    assert!(
        w.backing_off().is_some(),
        "the outage's shared backoff holds: {report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_beside_an_outage_in_the_same_lane_does_not_clear_its_backoff() {
    let store = MemoryStore::sample_clinic();
    clinic_patients(&store, 1..=2);
    let supabase = MemorySupabase::new();
    // Batch 0's upsert is slow and meets the outage; batch 1's, sent beside it in the same
    // lane, was answered just before the outage began. Batch 1 stops at its next stage, which
    // it may enter only after batch 0 has (and has recorded the outage); the success it
    // reports must not clear the backoff (the worker's report order is tested on its own in
    // `outage_tests`).
    supabase.delay_next(1, Duration::from_secs(5));
    supabase.set_failing_after(1, Some(503));
    let w = worker(&store, &supabase, 1, 10).await;
    let report = w.drain(&CancellationToken::new()).await;
    assert!(report.error.is_some(), "{report:?}");
    assert_eq!(
        (report.items_synced, report.items_retried),
        (1, 0),
        "batch 1 synced, batch 0 given back without an attempt spent: {report:?}"
    );
    assert!(
        w.backing_off().is_some(),
        "the outage's shared backoff holds: {report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_drain_settles_the_batch_in_flight_and_gives_the_next_back() {
    let store = MemoryStore::sample_clinic();
    clinic_patients(&store, 1..=3);
    let supabase = MemorySupabase::new();
    supabase.delay_next(1, Duration::from_secs(5));
    let cancel = CancellationToken::new();
    // Shutdown begins while the second batch is being claimed, the first still in flight.
    let stop = cancel.clone();
    store.on_claim(2, move || stop.cancel());
    let report = worker(&store, &supabase, 1, 10).await.drain(&cancel).await;
    assert_eq!(report.items_synced, 1, "the batch in flight was settled");
    let mut queue = store.queue();
    queue.sort_by_key(|q| q.id);
    let states: Vec<_> = queue
        .iter()
        .map(|q| (q.status.as_str(), q.attempts, q.claim.is_some()))
        .collect();
    assert_eq!(
        states,
        [
            ("Synced", 0, false),
            ("Pending", 0, false),
            ("Pending", 0, false)
        ],
        "the second batch given back untouched, the third never claimed"
    );
}
