//! Issue 6.2, the reverse half: a column added to a Supabase table that the table map does not
//! know never loses a portal edit. Webhooks and catch-up rows carrying it apply every known
//! column; the new column is ignored, reported once (`schema_drift` in status), and both sides
//! end equal on the columns both have.

mod common;

use common::*;
use serde_json::{json, Value};
use syncbridge::mapping::TableMap;

fn supabase_drift(status: &Value) -> Vec<(String, String)> {
    status["schema_drift"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["only_in"] == "supabase")
        .map(|d| {
            let field = |f: &str| d[f].as_str().unwrap_or_default().to_owned();
            (field("table"), field("column"))
        })
        .collect()
}

/// Patient 1 → work 1 → set 1 on both sides, synced, with the forward queue drained.
async fn seeded() -> Harness {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.notify().await;
    h.wait_synced().await;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_in_supabase_while_running_is_ignored_by_webhooks_and_catch_up() {
    let h = seeded().await;
    h.db.client()
        .batch_execute("ALTER TABLE aligner_notes ADD COLUMN colour text DEFAULT 'red'")
        .await
        .expect("add column");

    // A webhook carrying the unknown column: accepted, the known columns applied.
    let mut record = note_record(NOTE_A, "from the portal", "2026-11-25T10:00:00+00:00");
    record["colour"] = json!("blue");
    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text, created_at, colour)
             VALUES ('{NOTE_A}', 1, 'Doctor', 'from the portal', '2026-11-25T10:00:00', 'blue')"
        ))
        .await
        .expect("portal insert");
    h.webhook_accepted(&hook("INSERT", "aligner_notes", Some(record), None))
        .await;
    h.wait_store("webhook note applied", |s| {
        note_text(s, NOTE_A).as_deref() == Some("from the portal")
    })
    .await;

    // A row only catch-up sees (its webhook was lost), carrying the column too.
    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text, created_at)
             VALUES ('{NOTE_B}', 1, 'Lab', 'caught up', '2026-11-25T10:00:00')"
        ))
        .await
        .expect("portal insert");
    let report = h.trigger("postgres-to-sql").await;
    assert_eq!(
        report["result"]["postgres_to_sql"]["rows_rejected"],
        json!(0),
        "{report}"
    );
    h.wait_store("caught-up note applied", |s| {
        note_text(s, NOTE_B).as_deref() == Some("caught up")
    })
    .await;
    h.wait_inbox_empty().await;

    let status = h.status().await;
    assert_eq!(
        supabase_drift(&status),
        [("aligner_notes".to_owned(), "colour".to_owned())],
        "reported once, as a Supabase-only column: {status}"
    );
    assert_eq!(status["reverse"]["inbox"]["dead"], json!(0), "{status}");
    h.notify().await;
    h.wait_synced().await;
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_present_in_supabase_at_start_is_ignored_by_webhooks() {
    let h = Harness::start_with(Options {
        setup_sql: "ALTER TABLE aligner_batches ADD COLUMN shade text",
        ..Options::default()
    })
    .await;
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 10)),
    );
    h.notify().await;
    h.wait_synced().await;
    h.db.client()
        .batch_execute(
            "UPDATE aligner_batches SET days = 21, shade = 'A2' WHERE aligner_batch_id = 1",
        )
        .await
        .expect("portal edit");
    let updated_at = h
        .pg_rows("SELECT updated_at FROM aligner_batches WHERE aligner_batch_id = 1")
        .await[0]["updated_at"]
        .clone();
    let mut new = batch_record(
        1,
        21,
        "first batch",
        updated_at.as_str().unwrap_or_default(),
    );
    new["shade"] = json!("A2");
    let mut old = batch_record(1, 10, "first batch", "2026-11-25T09:00:00+00:00");
    old["shade"] = Value::Null;
    h.webhook_accepted(&hook("UPDATE", "aligner_batches", Some(new), Some(old)))
        .await;
    h.wait_store("days applied", |s| {
        days(s, 1) == Some(syncbridge::sqlserver::SqlValue::Int(21))
    })
    .await;
    let status = h.status().await;
    assert_eq!(
        supabase_drift(&status),
        [("aligner_batches".to_owned(), "shade".to_owned())],
        "{status}"
    );
    h.wait_inbox_empty().await;
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}
