//! The forward path's rules against the two in-memory doubles: how rows are batched, how one
//! refused row is isolated, in which order parents and children reach Supabase, and when a
//! row refused for a foreign key is charged an attempt (only when no record it waits for is
//! still queued).

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::forward::fixture::{key, patient, work, worker};
use crate::sqlserver::memory::{MemQueueRow, MemoryStore};
use crate::sqlserver::SqlStore;
use crate::supabase::memory::{MemorySupabase, Request, RequestKind};

fn requests(supabase: &MemorySupabase, kind: RequestKind) -> Vec<(String, usize)> {
    supabase
        .requests()
        .into_iter()
        .filter(|r| r.kind == kind)
        .map(|Request { table, rows, .. }| (table, rows))
        .collect()
}

fn statuses(store: &MemoryStore) -> Vec<String> {
    store.queue().into_iter().map(|q| q.status).collect()
}

/// The sample clinic's foreign keys, as `sql/supabase/01_schema.sql` declares them.
fn with_foreign_keys() -> MemorySupabase {
    let supabase = MemorySupabase::new();
    supabase.add_foreign_key("work", "person_id", "patients", "person_id");
    supabase
}

#[tokio::test]
async fn rows_are_sent_one_request_per_claimed_batch() {
    let store = MemoryStore::sample_clinic();
    for id in 1..=120 {
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, "p")));
    }
    let supabase = MemorySupabase::new();
    let report = worker(&store, &supabase, 50, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.batches, report.items_synced), (3, 120));
    let sizes: Vec<usize> = requests(&supabase, RequestKind::Upsert)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(supabase.rows("patients").len(), 120);
}

#[tokio::test]
async fn items_of_one_record_coalesce_into_one_row() {
    let store = MemoryStore::sample_clinic();
    for name in ["first", "second", "third"] {
        store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, name)));
    }
    let supabase = MemorySupabase::new();
    let report = worker(&store, &supabase, 50, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!(report.items_synced, 3);
    assert_eq!(
        requests(&supabase, RequestKind::Upsert),
        [("patients".into(), 1)]
    );
    assert_eq!(supabase.rows("patients")[0]["patient_name"], json!("third"));
}

#[tokio::test]
async fn one_poison_row_among_many_is_isolated_by_bisection() {
    let store = MemoryStore::sample_clinic();
    for id in 1..=64 {
        let name = if id == 37 { "poison" } else { "fine" };
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, name)));
    }
    let supabase = MemorySupabase::new();
    supabase.refuse_value("patients", "patient_name", json!("poison"));
    let report = worker(&store, &supabase, 64, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.items_synced, report.items_retried), (63, 1));
    assert_eq!(
        supabase.rows("patients").len(),
        63,
        "every good row arrived"
    );
    let poison = store
        .queue()
        .into_iter()
        .find(|q| q.record_id == r#"{"PersonID":37}"#)
        .expect("poison item");
    assert_eq!((poison.status.as_str(), poison.attempts), ("Pending", 1));
    assert!(poison.last_error.unwrap_or_default().contains("23514"));
    // One request for all 64, then two per halving down to the single row: 1 + 2·log2(64).
    assert_eq!(requests(&supabase, RequestKind::Upsert).len(), 13);
}

#[tokio::test]
async fn a_row_refused_on_every_attempt_fails_after_the_last_one() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "poison")),
    );
    let supabase = MemorySupabase::new();
    supabase.refuse_value("patients", "patient_name", json!("poison"));
    let worker = worker(&store, &supabase, 50, 1).await;
    let report = worker.drain(&CancellationToken::new()).await;
    assert_eq!(report.items_failed, 1, "max_attempts = 1: no retry");
    assert_eq!(statuses(&store), ["Failed"]);
}

#[tokio::test]
async fn parents_are_upserted_before_children_and_deleted_after_them() {
    let store = MemoryStore::sample_clinic();
    // Queued child first: the batch must reorder, or the foreign key refuses the work row.
    store.clinic_write("tblWork", &key("WorkID", 10), Some(work(10, 1)));
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    let supabase = with_foreign_keys();
    let worker = worker(&store, &supabase, 50, 10).await;
    let report = worker.drain(&CancellationToken::new()).await;
    assert_eq!((report.items_synced, report.items_retried), (2, 0));
    let tables = |kind| -> Vec<String> {
        requests(&supabase, kind)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    };
    assert_eq!(tables(RequestKind::Upsert), ["patients", "work"]);

    // Deleted parent first in the queue: the child's delete must still go first.
    store.clinic_write("tblPatients", &key("PersonID", 1), None);
    store.clinic_write("tblWork", &key("WorkID", 10), None);
    let report = worker.drain(&CancellationToken::new()).await;
    assert_eq!((report.items_synced, report.items_retried), (2, 0));
    assert_eq!(tables(RequestKind::Delete), ["work", "patients"]);
    assert!(supabase.rows("patients").is_empty() && supabase.rows("work").is_empty());
}

#[tokio::test]
async fn a_refused_key_releases_the_batch_without_burning_attempts() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    let supabase = MemorySupabase::new();
    supabase.set_failing(Some(401));
    let worker = worker(&store, &supabase, 50, 10).await;
    let report = worker.drain(&CancellationToken::new()).await;
    assert_eq!(report.items_released, 1);
    assert!(report.error.unwrap_or_default().contains("HTTP 401"));
    let item = &store.queue()[0];
    assert_eq!((item.status.as_str(), item.attempts), ("Pending", 0));
}

#[tokio::test]
async fn a_table_sql_server_no_longer_has_pauses_forward_sync_without_spending_attempts() {
    let store = MemoryStore::sample_clinic();
    for id in 1..=5 {
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, "p")));
    }
    store.rename_table("tblPatients", "tblPatientsOld");
    let supabase = MemorySupabase::new();
    // One attempt allowed: a failure charged to the rows would mark them Failed at once.
    let report = worker(&store, &supabase, 50, 1)
        .await
        .drain(&CancellationToken::new())
        .await;
    let error = report.error.expect("the drain reports the fault");
    assert!(error.contains("tblPatients"), "{error}");
    let queue = store.queue();
    assert_eq!(queue.len(), 5);
    assert!(
        queue
            .iter()
            .all(|q| q.status == "Pending" && q.attempts == 0),
        "{queue:?}"
    );
    assert!(supabase.rows("patients").is_empty());
}

/// The queue item of `table`'s record `record_id`.
fn item(store: &MemoryStore, table: &str, record_id: &str) -> MemQueueRow {
    store
        .queue()
        .into_iter()
        .find(|q| q.table == table && q.record_id == record_id)
        .expect("queue item")
}

/// A second agent claims every due item and dies holding them (its lease outlasts the test).
async fn claimed_by_a_dead_agent(store: &MemoryStore, limit: usize) {
    let dead = store.as_agent("dead-agent");
    let claimed = dead
        .claim(limit, Duration::from_secs(3600))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), limit, "{claimed:?}");
}

#[tokio::test]
async fn a_child_whose_parent_is_claimed_by_another_agent_keeps_its_attempts() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    claimed_by_a_dead_agent(&store, 1).await;
    store.clinic_write("tblWork", &key("WorkID", 10), Some(work(10, 1)));
    let supabase = with_foreign_keys();
    // One attempt allowed: charged to the child, the refusal would make it Failed at once.
    let started = Instant::now();
    let report = worker(&store, &supabase, 50, 1)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.items_failed, report.items_released), (0, 1));
    let child = item(&store, "tblWork", r#"{"WorkID":10}"#);
    assert_eq!((child.status.as_str(), child.attempts), ("Pending", 0));
    let error = child.last_error.unwrap_or_default();
    assert!(
        error.contains("23503") && error.contains("still queued"),
        "{error}"
    );
    // Due again after the backoff of its next attempt (at least half the 2 s base), not at once.
    assert!(
        child.next_attempt_at >= started + Duration::from_secs(1),
        "released for {:?}",
        child.next_attempt_at - started
    );
}

#[tokio::test]
async fn a_child_whose_parent_is_not_queued_spends_its_attempts() {
    let store = MemoryStore::sample_clinic();
    // The parent was never queued (nor is it in SQL Server): the child's own fault.
    store.clinic_write("tblWork", &key("WorkID", 10), Some(work(10, 1)));
    let supabase = with_foreign_keys();
    let report = worker(&store, &supabase, 50, 1)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.items_failed, report.items_released), (1, 0));
    let child = item(&store, "tblWork", r#"{"WorkID":10}"#);
    assert_eq!((child.status.as_str(), child.attempts), ("Failed", 1));
    assert!(child.last_error.unwrap_or_default().contains("23503"));
}

#[tokio::test(start_paused = true)]
async fn a_child_waits_while_its_parent_is_retried_and_fails_once_the_parent_has() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "poison")),
    );
    store.clinic_write("tblWork", &key("WorkID", 10), Some(work(10, 1)));
    let supabase = with_foreign_keys();
    supabase.refuse_value("patients", "patient_name", json!("poison"));
    let worker = worker(&store, &supabase, 50, 2).await;
    let parent = || item(&store, "tblPatients", r#"{"PersonID":1}"#);
    let child = || item(&store, "tblWork", r#"{"WorkID":10}"#);
    // The parent spends its attempts; while it is queued, the child spends none.
    for attempts in 1..=2 {
        worker.drain(&CancellationToken::new()).await;
        assert_eq!(parent().attempts, attempts);
        assert_eq!((child().status.as_str(), child().attempts), ("Pending", 0));
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    assert_eq!(parent().status, "Failed");
    // The parent is given up on: the missing parent is now the child's own problem.
    for _ in 0..2 {
        worker.drain(&CancellationToken::new()).await;
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    assert_eq!((child().status.as_str(), child().attempts), ("Failed", 2));
}

#[tokio::test]
async fn a_parent_whose_childs_delete_is_claimed_by_another_agent_keeps_its_attempts() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "p")));
    store.clinic_write("tblWork", &key("WorkID", 10), Some(work(10, 1)));
    let supabase = with_foreign_keys();
    let worker = worker(&store, &supabase, 50, 1).await;
    worker.drain(&CancellationToken::new()).await;
    assert_eq!(supabase.rows("work").len(), 1);
    // The child's delete is stranded in a dead agent's claim; the parent's is refused while
    // Supabase still has the child.
    store.clinic_write("tblWork", &key("WorkID", 10), None);
    claimed_by_a_dead_agent(&store, 1).await;
    store.clinic_write("tblPatients", &key("PersonID", 1), None);
    let report = worker.drain(&CancellationToken::new()).await;
    assert_eq!((report.items_failed, report.items_released), (0, 1));
    let parent = store
        .queue()
        .into_iter()
        .rfind(|q| q.table == "tblPatients")
        .expect("the parent's delete");
    assert_eq!((parent.status.as_str(), parent.attempts), ("Pending", 0));
    assert!(parent.last_error.unwrap_or_default().contains("23503"));
}

#[tokio::test(start_paused = true)]
async fn a_large_batch_is_sent_as_several_requests_in_flight_at_once() {
    let store = MemoryStore::sample_clinic();
    for id in 1..=1000 {
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, "p")));
    }
    let supabase = MemorySupabase::new();
    supabase.delay_next(4, std::time::Duration::from_secs(1));
    let report = worker(&store, &supabase, 1000, 10)
        .await
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.batches, report.items_synced), (1, 1000));
    let sizes: Vec<usize> = requests(&supabase, RequestKind::Upsert)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(sizes, [250, 250, 250, 250]);
    assert_eq!(
        supabase.max_in_flight(),
        4,
        "the four requests were in flight together"
    );
    assert_eq!(supabase.rows("patients").len(), 1000);
}
