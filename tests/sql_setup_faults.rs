//! SQL Server refusing for its setup rather than for a row (a table renamed, a column dropped, a
//! permission revoked): nothing is charged to the rows, status names the fault, and everything
//! syncs once the setup is back.

mod common;

use common::*;
use serde_json::json;
use syncbridge::mapping::TableMap;

fn options() -> Options {
    Options {
        // Two attempts: anything charged to the rows would mark them Failed (or dead) at once.
        max_attempts: 2,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_table_pauses_forward_sync_and_loses_nothing() {
    let h = Harness::start_with(options()).await;
    seed_parents(&h.sql);
    h.notify().await;
    h.wait_synced().await;
    for id in 10..15 {
        h.sql
            .clinic_write("tblWork", &key("WorkID", id), Some(work(id, 1)));
    }
    h.sql.rename_table("tblWork", "tblWorkRenamed");
    h.notify().await;
    let status = h
        .wait_status("the fault is reported", |s| {
            s["forward"]["config_fault"].as_str().is_some()
        })
        .await;
    let fault = status["forward"]["config_fault"].as_str().unwrap_or("");
    assert!(fault.contains("tblWork"), "{fault}");
    // Several passes later, still nothing charged.
    h.wait_store("retried several times", |s| s.calls("load_rows") >= 6)
        .await;
    let queue = h.sql.queue();
    assert!(
        queue
            .iter()
            .all(|q| q.status != "Failed" && q.attempts == 0),
        "{queue:?}"
    );
    h.sql.rename_table("tblWorkRenamed", "tblWork");
    assert_nothing_lost(&h, &TableMap::sample_clinic()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_table_keeps_reverse_events_until_it_is_back() {
    let h = Harness::start_with(options()).await;
    seed_parents(&h.sql);
    h.notify().await;
    h.wait_synced().await;
    h.sql.rename_table("tblAlignerNotes", "tblNotesRenamed");
    // A portal note the agent reads by catch-up: the same intake and applier as a webhook's,
    // and Supabase really has the row, so both sides can be compared at the end.
    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text) VALUES ('{NOTE_A}', 1, 'Doctor', 'from the portal')"
        ))
        .await
        .expect("portal note");
    h.trigger("postgres-to-sql").await;
    h.wait_store("the write was tried several times", |s| {
        s.apply_counts().0 >= 4
    })
    .await;
    let status = h.status().await;
    assert_eq!(status["reverse"]["inbox"]["dead"], json!(0), "{status}");
    h.sql.rename_table("tblNotesRenamed", "tblAlignerNotes");
    h.wait_store("the note is applied", |s| {
        note_text(s, NOTE_A).as_deref() == Some("from the portal")
    })
    .await;
    h.wait_inbox_empty().await;
    assert_sides_equal(&h, &TableMap::sample_clinic()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sql_server_outage_spends_no_attempt_of_a_reverse_event() {
    let h = Harness::start_with(options()).await;
    seed_parents(&h.sql);
    h.notify().await;
    h.wait_synced().await;
    h.sql.set_down(true);
    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text) VALUES ('{NOTE_A}', 1, 'Doctor', 'through the outage')"
        ))
        .await
        .expect("portal note");
    // Read by catch-up (the webhook's intake and applier), so both sides hold the same row.
    h.trigger("postgres-to-sql").await;
    h.wait_store("the write was tried through the outage", |s| {
        s.calls("apply") >= 4
    })
    .await;
    // Back, and the first write refused for its data: with two attempts allowed, an event that
    // had been charged for the outage would now be given up on at once.
    h.sql.reject_next_applies(1);
    h.sql.set_down(false);
    h.wait_store("the note is applied", |s| {
        note_text(s, NOTE_A).as_deref() == Some("through the outage")
    })
    .await;
    h.wait_inbox_empty().await;
    let status = h.status().await;
    assert_eq!(status["reverse"]["inbox"]["dead"], json!(0), "{status}");
    assert_sides_equal(&h, &TableMap::sample_clinic()).await;
}
