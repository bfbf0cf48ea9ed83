//! No echo loops, through real Supabase-style webhooks (the `sql/supabase/` trigger script
//! firing into the relay): a row the agent writes into SQL Server is not queued back, and a row
//! it upserts into Supabase that comes back as a webhook is not written into SQL Server again.
//! If either guard broke, these tests would see the change bounce (queue items, writes,
//! deliveries) without end. And the guard must not be too wide: what the clinic's own triggers
//! change because of an agent's write is a real change and is sent.

mod common;

use common::*;
use serde_json::json;
use syncbridge::sqlserver::memory::{ClinicTrigger, MemoryStore};
use syncbridge::sqlserver::SqlValue;
use syncbridge_testkit::WebhookRelay;

/// Installs the Supabase webhook triggers (sql/supabase/02) pointing at the agent, and starts
/// the relay that delivers them.
async fn install(h: &Harness, skip_agent_writes: bool) -> WebhookRelay {
    h.db.client()
        .execute(
            "SELECT public.syncbridge_install_webhooks($1, $2, $3)",
            &[
                &h.url("/api/sync/webhook"),
                &WEBHOOK_SECRET,
                &skip_agent_writes,
            ],
        )
        .await
        .expect("install webhooks");
    WebhookRelay::start(h.db.url()).await.expect("relay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverse_write_is_not_queued_back_to_supabase() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    seed_supabase_parents(&h.db).await;
    h.notify().await;
    h.wait_synced().await;
    let relay = install(&h, true).await;
    h.rest.clear_requests();
    let queued = h.sql.queue().len();
    // A doctor writes a note in the portal.
    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text) VALUES ('{NOTE_A}', 1, 'Doctor', 'from the portal')"
        ))
        .await
        .expect("portal insert");
    let delivered = relay
        .wait_for_deliveries(1, DEADLINE)
        .await
        .expect("delivered");
    assert_eq!(delivered[0].status(), Some(200));
    h.wait_store("note applied", |store| note_text(store, NOTE_A).is_some())
        .await;
    assert_eq!(
        h.sql.queue().len(),
        queued,
        "the agent's own write queued nothing"
    );
    let report = h.trigger("sql-to-postgres").await;
    assert_eq!(
        report["result"]["sql_to_postgres"]["items_synced"],
        json!(0)
    );
    assert!(
        h.rest.requests().iter().all(|r| r.method == "GET"),
        "nothing was written back to Supabase"
    );
    assert_eq!(relay.deliveries().len(), 1, "and nothing came back");
}

/// A clinic trigger as clinics write them: a new or edited note marks its aligner set (here by
/// setting `IsActive`, a column the sample schema syncs).
fn note_marks_its_set() -> ClinicTrigger {
    ClinicTrigger::new("tblAlignerNotes", "tblAlignerSets", |note| {
        let SqlValue::Int(set) = note.get("AlignerSetID")? else {
            return None;
        };
        Some((
            key("AlignerSetID", *set),
            vec![("IsActive".to_owned(), SqlValue::Bit(true))],
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_note_that_cascades_to_its_set_reaches_supabase_and_the_note_does_not_echo() {
    let store = MemoryStore::sample_clinic();
    store.add_clinic_trigger(note_marks_its_set());
    let h = Harness::start_with(Options {
        store: Some(store),
        ..Options::default()
    })
    .await;
    seed_parents(&h.sql);
    h.sql.clinic_update(
        "tblAlignerSets",
        &key("AlignerSetID", 1),
        &[("IsActive", SqlValue::Bit(false))],
    );
    h.notify().await;
    h.wait_synced().await;
    let set = "SELECT is_active FROM aligner_sets WHERE aligner_set_id = 1";
    assert_eq!(h.pg_rows(set).await, [json!({"is_active": false})]);
    let relay = install(&h, true).await;
    h.rest.clear_requests();

    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text) VALUES ('{NOTE_A}', 1, 'Doctor', 'from the portal')"
        ))
        .await
        .expect("portal insert");
    relay
        .wait_for_deliveries(1, DEADLINE)
        .await
        .expect("delivered");
    h.wait_store("note applied", |store| note_text(store, NOTE_A).is_some())
        .await;
    let pending: Vec<_> = h
        .sql
        .queue()
        .into_iter()
        .filter(|q| q.status == "Pending")
        .map(|q| (q.table, q.operation))
        .collect();
    assert_eq!(
        pending,
        [("tblAlignerSets".to_owned(), "UPDATE".to_owned())],
        "the cascaded change is queued, the agent's own note is not"
    );

    // What SQL Server's notification trigger would do for the queued change.
    h.notify().await;
    h.wait_synced().await;
    assert_eq!(h.pg_rows(set).await, [json!({"is_active": true})]);
    let notes_written: Vec<_> = h
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.path.contains("aligner_notes"))
        .map(|r| (r.method, r.path))
        .collect();
    assert!(
        notes_written.is_empty(),
        "the note echoed: {notes_written:?}"
    );
    assert_eq!(relay.deliveries().len(), 1, "and nothing came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_upsert_that_comes_back_as_a_webhook_writes_nothing() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    // Supabase-side filtering off: every agent write really comes back as a webhook.
    let relay = install(&h, false).await;
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 12)),
    );
    h.sql.clinic_write(
        "tblAlignerNotes",
        &note_key(NOTE_B),
        Some(note(NOTE_B, 1, "Lab", "lab note")),
    );
    h.notify().await;
    h.wait_synced().await;
    // First sync: the note's INSERT (one versioned push per table; batches send UPDATE events
    // only). Then a clinic edit of each.
    h.sql.clinic_update(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        &[("Notes", text("clinic edit"))],
    );
    h.sql.clinic_update(
        "tblAlignerNotes",
        &note_key(NOTE_B),
        &[("IsRead", SqlValue::Bit(true))],
    );
    h.notify().await;
    h.wait_synced().await;
    let delivered = match relay.wait_for_deliveries(3, DEADLINE).await {
        Ok(d) => d,
        Err(e) => panic!(
            "{e}: {:?} {:#?}",
            h.rest
                .requests()
                .iter()
                .map(|r| (r.method.clone(), r.path.clone(), r.query.clone(), r.status))
                .collect::<Vec<_>>(),
            relay
                .deliveries()
                .iter()
                .map(|d| (
                    d.payload["type"].clone(),
                    d.payload["table"].clone(),
                    d.status()
                ))
                .collect::<Vec<_>>()
        ),
    };
    assert!(
        delivered.iter().all(|d| d.status() == Some(200)),
        "{delivered:?}"
    );
    h.wait_status("echoes processed", |s| {
        s["reverse"]["inbox"]["depth"] == json!(0)
    })
    .await;
    assert_eq!(
        h.sql.apply_counts().1,
        0,
        "no echo was written into SQL Server"
    );
    assert!(
        h.sql.queue().iter().all(|q| q.status == "Synced"),
        "nothing new to send back"
    );
    let report = h.trigger("sql-to-postgres").await;
    assert_eq!(
        report["result"]["sql_to_postgres"]["items_synced"],
        json!(0)
    );
    assert_eq!(
        relay.deliveries().len(),
        3,
        "the exchange stopped: {:#?} {:#?}",
        relay
            .deliveries()
            .iter()
            .map(|d| (
                d.payload["type"].clone(),
                d.payload["table"].clone(),
                d.payload["record"].clone(),
                d.payload["old_record"].clone()
            ))
            .collect::<Vec<_>>(),
        h.sql.queue()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supabase_filter_drops_agent_writes_at_the_source() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    let relay = install(&h, true).await;
    h.sql.clinic_write(
        "tblAlignerNotes",
        &note_key(NOTE_B),
        Some(note(NOTE_B, 1, "Lab", "lab note")),
    );
    h.notify().await;
    h.wait_synced().await;
    // A portal edit after the agent's write: NOTIFY delivers in commit order, so once this one
    // arrives any webhook for the agent's write would already have arrived.
    h.db.client()
        .batch_execute(&format!(
            "UPDATE aligner_notes SET note_text = 'doctor reply' WHERE note_uid = '{NOTE_B}'"
        ))
        .await
        .expect("portal edit");
    let delivered = relay
        .wait_for_deliveries(1, DEADLINE)
        .await
        .expect("portal webhook");
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].payload["type"], json!("UPDATE"));
    h.wait_store("doctor reply applied", |store| {
        note_text(store, NOTE_B).as_deref() == Some("doctor reply")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_edit_racing_a_clinic_edit_of_the_same_batch_keeps_both() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 10)),
    );
    h.notify().await;
    h.wait_synced().await;
    let relay = install(&h, true).await;
    // The doctor changes days in the portal while the clinic edits the batch's notes; the
    // clinic's copy still says 10 days when its change is synced.
    h.db.client()
        .batch_execute("UPDATE aligner_batches SET days = 21 WHERE aligner_batch_id = 1")
        .await
        .expect("portal edit");
    h.sql.clinic_update(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        &[("Notes", text("clinic edit"))],
    );
    h.notify().await;
    relay
        .wait_for_deliveries(1, DEADLINE)
        .await
        .expect("portal webhook");
    h.wait_store("days applied to SQL Server", |store| {
        days(store, 1) == Some(SqlValue::Int(21))
    })
    .await;
    h.wait_synced().await;
    let pg = h.pg_rows("SELECT days, notes FROM aligner_batches").await;
    assert_eq!(pg, vec![json!({"days": 21, "notes": "clinic edit"})]);
    let row = h
        .sql
        .row("tblAlignerBatches", &key("AlignerBatchID", 1))
        .expect("row");
    assert_eq!(
        (row["Days"].clone(), row["Notes"].clone()),
        (SqlValue::Int(21), text("clinic edit"))
    );
}
