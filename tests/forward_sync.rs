//! Forward sync end to end: clinic writes in the SQL Server double, a notification through the
//! real HTTP endpoint, rows in a real PostgreSQL through the PostgREST-compatible server.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_delete_reach_supabase_with_exact_values() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 14)),
    );
    assert_eq!(h.notify().await, 202);
    h.wait_synced().await;

    let p = h.pg_rows("SELECT * FROM patients").await;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["patient_name"], json!("Test Patient"));
    assert_eq!(p[0]["date_of_birth"], json!("1990-02-28"));
    assert_eq!(p[0]["date_added"], json!("2026-11-25T09:15:30.123"));
    assert_eq!(
        p[0]["patient_guid"],
        json!("00000000-0000-0000-0000-000000000001")
    );
    let w = h
        .pg_rows("SELECT total_required::text AS t FROM work")
        .await;
    assert_eq!(w[0]["t"], json!("1500000.0000"));
    let s = h.pg_rows("SELECT set_cost::text AS c, creation_date = '2026-11-25T06:30:00.25Z' AS same_instant FROM aligner_sets").await;
    assert_eq!(
        (s[0]["c"].clone(), s[0]["same_instant"].clone()),
        (json!("1250.50"), json!(true))
    );
    let b = h
        .pg_rows("SELECT days, encode(label_code, 'hex') AS label FROM aligner_batches")
        .await;
    assert_eq!(
        (b[0]["days"].clone(), b[0]["label"].clone()),
        (json!(14), json!("deadbeef"))
    );

    h.sql.clinic_update(
        "tblPatients",
        &key("PersonID", 1),
        &[("Phone", text("0770 000 0000"))],
    );
    h.notify().await;
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT phone FROM patients").await[0]["phone"],
        json!("0770 000 0000")
    );

    h.sql
        .clinic_write("tblAlignerBatches", &key("AlignerBatchID", 1), None);
    h.notify().await;
    h.wait_synced().await;
    assert!(h.pg_rows("SELECT * FROM aligner_batches").await.is_empty());
    assert!(h
        .sql
        .queue()
        .iter()
        .all(|q| q.status == "Synced" && q.attempts == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_changes_goes_in_batched_requests() {
    let h = Harness::start().await;
    for id in 1..=1000 {
        h.sql.clinic_write(
            "tblPatients",
            &key("PersonID", id),
            Some(patient(id, &format!("Patient {id}"))),
        );
    }
    h.notify().await;
    h.wait_synced().await;
    let count = h
        .pg_rows("SELECT count(*) AS n, count(DISTINCT patient_name) AS names FROM patients")
        .await;
    assert_eq!(
        (count[0]["n"].clone(), count[0]["names"].clone()),
        (json!(1000), json!(1000))
    );
    let posts = h
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/patients"))
        .count();
    assert_eq!(posts, 1000 / 50, "one upsert request per batch of 50");
    assert_eq!(
        h.sql
            .queue()
            .iter()
            .filter(|q| q.status == "Synced")
            .count(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_one_record_coalesce_into_one_row() {
    let h = Harness::start().await;
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 7), Some(patient(7, "v0")));
    for v in 1..=5 {
        h.sql.clinic_update(
            "tblPatients",
            &key("PersonID", 7),
            &[("PatientName", text(&format!("v{v}")))],
        );
    }
    assert_eq!(h.sql.queue().len(), 6);
    h.notify().await;
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT patient_name FROM patients").await[0]["patient_name"],
        json!("v5")
    );
    let upserts: Vec<_> = h
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(upserts.len(), 1, "{upserts:?}");
    assert_eq!(upserts[0].body_rows, 1, "six queue items, one row sent");
    assert!(h.sql.queue().iter().all(|q| q.status == "Synced"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_are_upserted_before_children_whatever_the_queue_order() {
    let h = Harness::start().await;
    // Queue order: child first, parents last.
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 10)),
    );
    h.sql.clinic_write(
        "tblAlignerSets",
        &key("AlignerSetID", 1),
        Some(aligner_set(1, 1)),
    );
    h.sql
        .clinic_write("tblWork", &key("WorkID", 1), Some(work(1, 1)));
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "P")));
    h.notify().await;
    h.wait_synced().await;
    assert!(
        h.sql
            .queue()
            .iter()
            .all(|q| q.status == "Synced" && q.attempts == 0),
        "{:?}",
        h.sql.queue()
    );
    assert!(
        h.rest.requests().iter().all(|r| r.status < 300),
        "no request failed"
    );
    let order: Vec<String> = h
        .rest
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path.rsplit('/').next().unwrap_or("")))
        .collect();
    // Batches have a portal-owned column: one versioned push (rpc/syncbridge_push).
    assert_eq!(
        order,
        [
            "POST patients",
            "POST work",
            "POST aligner_sets",
            "POST syncbridge_push"
        ]
    );

    // Deleting a parent and its child in one batch deletes the child first.
    h.sql
        .clinic_write("tblAlignerSets", &key("AlignerSetID", 1), None);
    h.sql
        .clinic_write("tblAlignerBatches", &key("AlignerBatchID", 1), None);
    h.notify().await;
    h.wait_synced().await;
    assert!(
        h.sql.queue().iter().all(|q| q.status == "Synced"),
        "{:?}",
        h.sql.queue()
    );
    assert!(h.pg_rows("SELECT 1 FROM aligner_sets").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_row_is_isolated_and_fails_after_max_attempts() {
    let o = Options {
        max_attempts: 3,
        setup_sql: "ALTER TABLE patients ADD CONSTRAINT no_poison CHECK (patient_name <> 'POISON')",
        ..Options::default()
    };
    let h = Harness::start_with(o).await;
    for id in 1..=9 {
        let name = if id == 5 {
            "POISON".to_owned()
        } else {
            format!("P{id}")
        };
        h.sql.clinic_write(
            "tblPatients",
            &key("PersonID", id),
            Some(patient(id, &name)),
        );
    }
    h.notify().await;
    h.wait_store("poison row failed", |store| {
        store.queue().iter().all(|q| q.status != "Pending")
    })
    .await;
    assert_eq!(
        h.pg_rows("SELECT count(*) AS n FROM patients").await[0]["n"],
        json!(8)
    );
    let poison: Vec<_> = h
        .sql
        .queue()
        .into_iter()
        .filter(|q| q.record_id == r#"{"PersonID":5}"#)
        .collect();
    assert_eq!(poison[0].status, "Failed");
    assert_eq!(
        poison[0].attempts, 3,
        "retried with backoff up to SYNC_MAX_ATTEMPTS"
    );
    let error = poison[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("23514") && error.contains("no_poison"),
        "readable PostgREST error: {error}"
    );
    assert!(h
        .sql
        .queue()
        .iter()
        .filter(|q| q.record_id != r#"{"PersonID":5}"#)
        .all(|q| q.status == "Synced" && q.attempts == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tables_and_malformed_items_fail_alone() {
    let h = Harness::start().await;
    h.sql.enqueue_raw("tblNotMapped", r#"{"ID":1}"#, "INSERT");
    h.sql.enqueue_raw("tblPatients", "not json", "UPDATE");
    h.sql
        .enqueue_raw("tblPatients", r#"{"WrongKey":1}"#, "UPDATE");
    h.sql
        .enqueue_raw("tblPatients", r#"{"PersonID":1}"#, "MERGE");
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 2), Some(patient(2, "Good")));
    h.notify().await;
    h.wait_synced().await;
    let q = h.sql.queue();
    assert_eq!(q.iter().filter(|i| i.status == "Failed").count(), 4);
    assert!(q[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("not in the table map"));
    assert_eq!(q[4].status, "Synced");
    assert_eq!(
        h.pg_rows("SELECT patient_name FROM patients").await[0]["patient_name"],
        json!("Good")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_text_and_extreme_money_round_trip_exactly() {
    let h = Harness::start().await;
    let name = "هاوڕێ ئەحمەد — أحمد محمود 👩‍⚕️";
    let mut p = patient(1, name);
    p.insert(
        "Notes".into(),
        text("تێبینی: ددانی خوارەوە\nline two\t\"quoted\""),
    );
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(p));
    let mut w = work(1, 1);
    w.insert("TotalRequired".into(), money("922337203685477.5807"));
    h.sql.clinic_write("tblWork", &key("WorkID", 1), Some(w));
    h.notify().await;
    h.wait_synced().await;
    let rows = h.pg_rows("SELECT patient_name, notes FROM patients").await;
    assert_eq!(rows[0]["patient_name"], json!(name));
    assert_eq!(
        rows[0]["notes"],
        json!("تێبینی: ددانی خوارەوە\nline two\t\"quoted\"")
    );
    let w = h
        .pg_rows("SELECT total_required::text AS t FROM work")
        .await;
    assert_eq!(w[0]["t"], json!("922337203685477.5807"));
}
