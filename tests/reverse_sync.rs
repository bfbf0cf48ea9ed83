//! Reverse sync through `POST /api/sync/webhook`: mapping and ownership, durability across SQL
//! Server outages and restarts, duplicates and reordering. Who may post and what bad input
//! gets: tests/webhook_refusals.rs.

mod common;

use common::*;
use serde_json::json;
use syncbridge::sqlserver::SqlValue;

async fn wait_note(h: &Harness, uid: &str, body: &str) {
    h.wait_store("note applied", |store| {
        note_text(store, uid).as_deref() == Some(body)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_notes_are_inserted_then_only_portal_columns_update() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    let (status, body) = h
        .webhook(
            &hook(
                "INSERT",
                "aligner_notes",
                Some(note_record(
                    NOTE_A,
                    "أول ملاحظة",
                    "2026-11-25T10:00:00+00:00",
                )),
                None,
            ),
            None,
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["status"].clone()),
        (200, json!("accepted"))
    );
    wait_note(&h, NOTE_A, "أول ملاحظة").await;
    let row = h
        .sql
        .row("tblAlignerNotes", &note_key(NOTE_A))
        .expect("row");
    assert_eq!(row["NoteType"], text("Doctor"));
    assert_eq!(row["AlignerSetID"], SqlValue::Int(1));

    // The clinic marks it read; a later portal edit must not undo that (is_read is clinic-owned).
    h.sql.clinic_update(
        "tblAlignerNotes",
        &note_key(NOTE_A),
        &[("IsRead", SqlValue::Bit(true))],
    );
    let mut edited = note_record(NOTE_A, "edited", &now_plus(1));
    edited["is_edited"] = json!(true);
    let old = note_record(NOTE_A, "أول ملاحظة", "2026-11-25T10:00:00+00:00");
    let (status, _) = h
        .webhook(
            &hook("UPDATE", "aligner_notes", Some(edited), Some(old)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    wait_note(&h, NOTE_A, "edited").await;
    let row = h
        .sql
        .row("tblAlignerNotes", &note_key(NOTE_A))
        .expect("row");
    assert_eq!(
        (row["IsRead"].clone(), row["IsEdited"].clone()),
        (SqlValue::Bit(true), SqlValue::Bit(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_days_sync_only_when_days_changed() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 4),
        Some(batch(4, 1, 10)),
    );
    let before = h.sql.apply_counts();
    let old = batch_record(4, 10, "first batch", "2026-11-25T10:00:00+00:00");
    let new = batch_record(4, 14, "portal text is not ours", &now_plus(1));
    assert_eq!(
        h.webhook(
            &hook("UPDATE", "aligner_batches", Some(new.clone()), Some(old)),
            None
        )
        .await
        .0,
        200
    );
    h.wait_store("days applied", |store| {
        days(store, 4) == Some(SqlValue::Int(14))
    })
    .await;
    let row = h
        .sql
        .row("tblAlignerBatches", &key("AlignerBatchID", 4))
        .expect("row");
    assert_eq!(row["Notes"], text("first batch"), "only Days is written");

    let unchanged = batch_record(4, 14, "another text", &now_plus(2));
    let (status, body) = h
        .webhook(
            &hook("UPDATE", "aligner_batches", Some(unchanged), Some(new)),
            None,
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["status"].clone()),
        (200, json!("ignored"))
    );
    let (status, body) = h
        .webhook(
            &hook(
                "INSERT",
                "aligner_batches",
                Some(batch_record(9, 7, "x", "2026-11-25T10:00:00+00:00")),
                None,
            ),
            None,
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["status"].clone()),
        (200, json!("ignored")),
        "batches are created by the clinic"
    );
    assert_eq!(
        h.sql.apply_counts().0 - before.0,
        1,
        "one write for one real change"
    );
    assert!(h
        .sql
        .queue()
        .iter()
        .all(|q| q.table != "tblAlignerBatches" || q.record_id != r#"{"AlignerBatchID":9}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_out_a_sql_server_outage_in_order() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.sql.set_down(true);
    let versions = [
        "2026-11-25T10:00:00+00:00",
        "2026-11-25T10:00:01+00:00",
        "2026-11-25T10:00:02+00:00",
    ];
    let (ins, v1, v2) = (
        note_record(NOTE_A, "v0", versions[0]),
        note_record(NOTE_A, "v1", versions[1]),
        note_record(NOTE_A, "v2", versions[2]),
    );
    for body in [
        hook("INSERT", "aligner_notes", Some(ins.clone()), None),
        hook("UPDATE", "aligner_notes", Some(v1.clone()), Some(ins)),
        hook("UPDATE", "aligner_notes", Some(v2), Some(v1)),
        hook(
            "INSERT",
            "aligner_notes",
            Some(note_record(NOTE_B, "other", versions[0])),
            None,
        ),
    ] {
        assert_eq!(
            h.webhook(&body, None).await.0,
            200,
            "accepted while SQL Server is down"
        );
    }
    h.wait_store("applier tried and backed off", |store| {
        store.calls("apply") >= 1
    })
    .await;
    assert_eq!(h.status().await["reverse"]["inbox"]["depth"], json!(4));
    h.sql.set_down(false);
    wait_note(&h, NOTE_A, "v2").await;
    wait_note(&h, NOTE_B, "other").await;
    let status = h.status().await;
    assert_eq!(
        status["reverse"]["inbox"]["depth"],
        json!(0),
        "applied events are pruned"
    );
    assert_eq!(
        h.sql.apply_counts().1,
        4,
        "every event written once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_the_inbox_survive_a_restart() {
    let mut h = Harness::start().await;
    seed_parents(&h.sql);
    h.sql.set_down(true);
    let body = hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(
            NOTE_A,
            "kept across restart",
            "2026-11-25T10:00:00+00:00",
        )),
        None,
    );
    assert_eq!(h.webhook(&body, None).await.0, 200);
    h.stop().await;
    h.sql.set_down(false);
    assert!(note_text(&h.sql, NOTE_A).is_none());
    h.launch(&Options::default()).await;
    wait_note(&h, NOTE_A, "kept across restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_reordered_deliveries_are_harmless() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    let old = note_record(NOTE_A, "old", "2026-11-25T10:00:00+00:00");
    let new = note_record(NOTE_A, "new", "2026-11-25T10:00:05+00:00");
    for body in [
        hook("INSERT", "aligner_notes", Some(new.clone()), None),
        hook("INSERT", "aligner_notes", Some(new.clone()), None),
        hook("INSERT", "aligner_notes", Some(old.clone()), None),
        hook("UPDATE", "aligner_notes", Some(old), Some(new.clone())),
    ] {
        assert_eq!(h.webhook(&body, None).await.0, 200);
    }
    h.wait_status("inbox empty", |s| {
        s["reverse"]["inbox"]["depth"] == json!(0)
    })
    .await;
    assert_eq!(
        note_text(&h.sql, NOTE_A).as_deref(),
        Some("new"),
        "an older event never overwrites newer data"
    );
    assert_eq!(h.sql.apply_counts().1, 1, "one write");
    assert_eq!(
        h.status().await["reverse"]["state"]["events_stale"],
        json!(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_deletes_apply_where_the_map_allows_them() {
    let mut map = syncbridge::mapping::TableMap::sample_clinic();
    for t in &mut map.tables {
        if let Some(r) = t.reverse.as_mut().filter(|_| t.source == "tblAlignerNotes") {
            r.delete = true;
        }
    }
    let h = Harness::start_with(Options {
        map,
        ..Options::default()
    })
    .await;
    seed_parents(&h.sql);
    let rec = note_record(NOTE_A, "to be deleted", "2026-11-25T10:00:00+00:00");
    assert_eq!(
        h.webhook(
            &hook("INSERT", "aligner_notes", Some(rec.clone()), None),
            None
        )
        .await
        .0,
        200
    );
    wait_note(&h, NOTE_A, "to be deleted").await;
    let (status, body) = h
        .webhook(&hook("DELETE", "aligner_notes", None, Some(rec)), None)
        .await;
    assert_eq!(
        (status.as_u16(), body["status"].clone()),
        (200, json!("accepted"))
    );
    h.wait_store("note deleted", |store| note_text(store, NOTE_A).is_none())
        .await;
    assert_eq!(
        h.status().await["reverse"]["state"]["events_stale"],
        json!(0)
    );
}
