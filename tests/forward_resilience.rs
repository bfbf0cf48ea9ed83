//! Forward sync when things go wrong: PostgREST failing and timing out (the long outages are
//! `forward_outage.rs`), a row refused for its data, a wrong key, a missing table, writers
//! that have not committed, notifications lost while the agent was down, and an idle agent.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::SqlStore;

fn patient_queue_item(h: &Harness, id: i64) -> syncbridge::sqlserver::memory::MemQueueRow {
    let record = format!(r#"{{"PersonID":{id}}}"#);
    h.sql
        .queue()
        .into_iter()
        .find(|q| q.record_id == record)
        .expect("queue item")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_on_the_shared_backoff_then_recover() {
    let h = Harness::start_with(Options {
        max_attempts: 5,
        ..Options::default()
    })
    .await;
    // Three 503s exhaust the in-process retry (1 + 2); the shared backoff retries on its own
    // timer, and an outage is not the item's fault.
    h.rest
        .fail_next(3, 503, json!({"message": "upstream unavailable"}));
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "A")));
    h.notify().await;
    h.wait_synced().await;
    let item = patient_queue_item(&h, 1);
    assert_eq!(
        (item.status.as_str(), item.attempts),
        ("Synced", 0),
        "released, then sent without a new notification; no attempt spent"
    );
    let statuses: Vec<u16> = h
        .rest
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 503, 201]);
    let status = h.status().await;
    assert_eq!(status["forward"]["state"]["items_retried"], json!(0));
    assert_eq!(status["forward"]["outage"], json!(null), "over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_spend_no_attempt_and_recover() {
    let h = Harness::start_with(Options {
        timeout: "300ms",
        ..Options::default()
    })
    .await;
    h.rest.delay_next(1, Duration::from_secs(2));
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "A")));
    h.notify().await;
    h.wait_synced().await;
    let item = patient_queue_item(&h, 1);
    assert_eq!((item.status.as_str(), item.attempts), ("Synced", 0));
    assert_eq!(
        h.pg_rows("SELECT patient_name FROM patients").await[0]["patient_name"],
        json!("A")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_refused_for_its_data_stops_at_max_attempts_and_others_still_sync() {
    let h = Harness::start_with(Options {
        max_attempts: 3,
        setup_sql: "ALTER TABLE patients ADD CONSTRAINT no_poison CHECK (patient_name <> 'poison')",
        ..Options::default()
    })
    .await;
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "poison")),
    );
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 2), Some(patient(2, "fine")));
    h.notify().await;
    h.wait_synced().await;
    let item = patient_queue_item(&h, 1);
    assert_eq!((item.status.as_str(), item.attempts), ("Failed", 3));
    assert!(
        item.last_error.unwrap_or_default().contains("23514"),
        "LastError keeps PostgREST's answer"
    );
    assert_eq!(patient_queue_item(&h, 2).status, "Synced");
    // A new change syncs at once.
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 3), Some(patient(3, "B")));
    h.notify().await;
    h.wait_synced().await;
    assert_eq!(patient_queue_item(&h, 3).status, "Synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_pauses_work_without_burning_attempts() {
    let h = Harness::start_with(Options {
        wrong_key: true,
        ..Options::default()
    })
    .await;
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "A")));
    h.notify().await;
    h.wait_status("config fault reported", |s| {
        s["forward"]["config_fault"].is_string()
    })
    .await;
    let status = h.status().await;
    assert!(
        status["forward"]["config_fault"]
            .as_str()
            .unwrap_or("")
            .contains("401"),
        "{status}"
    );
    let item = patient_queue_item(&h, 1);
    assert_eq!(
        (item.status.as_str(), item.attempts),
        ("Pending", 0),
        "a bad key is not the item's fault"
    );
    assert!(item.last_error.unwrap_or_default().contains("401"));
    assert!(h.pg_rows("SELECT 1 FROM patients").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_style_secret_keys_work() {
    let h = Harness::start_with(Options {
        key_style: KeyStyle::SecretKey,
        ..Options::default()
    })
    .await;
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "A")));
    h.notify().await;
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT count(*) AS n FROM patients").await[0]["n"],
        json!(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_before_the_writer_commits_is_not_lost() {
    let h = Harness::start().await;
    let tx = h.sql.begin();
    tx.write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "committed later")),
    );
    // sp_NotifyAppOfSync runs inside the writer's transaction: the agent hears before commit.
    assert_eq!(h.notify().await, 202);
    h.wait_store("agent waiting on the writer", |store| {
        store.calls("wait_for_writers") >= 1 && store.queue()[0].open_tx.is_some()
    })
    .await;
    tx.commit();
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT patient_name FROM patients").await[0]["patient_name"],
        json!("committed later")
    );

    // A writer that rolls back leaves nothing behind and blocks nothing.
    let tx = h.sql.begin();
    tx.write(
        "tblPatients",
        &key("PersonID", 2),
        Some(patient(2, "never")),
    );
    h.notify().await;
    tx.rollback();
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", 3),
        Some(patient(3, "after")),
    );
    h.notify().await;
    h.wait_synced().await;
    let names = h
        .pg_rows("SELECT patient_name FROM patients ORDER BY person_id")
        .await;
    assert_eq!(
        names,
        vec![
            json!({"patient_name": "committed later"}),
            json!({"patient_name": "after"})
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_during_a_drain_is_not_skipped() {
    let h = Harness::start().await;
    h.rest.delay_next(1, Duration::from_millis(400));
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "first")),
    );
    h.notify().await;
    h.wait_store("first batch in flight", |store| {
        store.queue()[0].claim.is_some()
    })
    .await;
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", 2),
        Some(patient(2, "second")),
    );
    assert_eq!(
        h.notify().await,
        202,
        "answered at once even while draining"
    );
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT count(*) AS n FROM patients").await[0]["n"],
        json!(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_drains_at_startup_what_it_was_never_told_about() {
    let store = MemoryStore::sample_clinic();
    store.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "while down")),
    );
    store.clinic_write(
        "tblPatients",
        &key("PersonID", 2),
        Some(patient(2, "claimed by a crashed run")),
    );
    // A previous run of this agent claimed item 2 and died before settling it.
    store.clinic_write(
        "tblPatients",
        &key("PersonID", 3),
        Some(patient(3, "third")),
    );
    let claimed = store
        .claim(1, Duration::from_secs(3600))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let h = Harness::start_with(Options {
        store: Some(store),
        ..Options::default()
    })
    .await;
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT count(*) AS n FROM patients").await[0]["n"],
        json!(3),
        "no notification was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_supabase_table_pauses_work_without_burning_attempts() {
    let o = Options {
        setup_sql: "DROP TABLE aligner_batches CASCADE",
        ..Options::default()
    };
    let h = Harness::start_with(o).await;
    seed_parents(&h.sql);
    for id in 1..=4 {
        h.sql.clinic_write(
            "tblAlignerBatches",
            &key("AlignerBatchID", id),
            Some(batch(id, 1, 7)),
        );
    }
    h.notify().await;
    let status = h
        .wait_status("schema fault reported", |s| {
            s["forward"]["config_fault"].is_string()
        })
        .await;
    assert!(
        status["forward"]["config_fault"]
            .as_str()
            .unwrap_or("")
            .contains("aligner_batches"),
        "{status}"
    );
    let batches: Vec<_> = h
        .sql
        .queue()
        .into_iter()
        .filter(|q| q.table == "tblAlignerBatches")
        .collect();
    assert!(batches
        .iter()
        .all(|q| q.status == "Pending" && q.attempts == 0));
    let posts = h
        .rest
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.table() == "rpc/syncbridge_push")
        .count();
    assert_eq!(posts, 1, "no bisection for a fault every row shares");
    assert_eq!(
        h.pg_rows("SELECT 1 FROM patients").await.len(),
        1,
        "the parents synced"
    );
}
