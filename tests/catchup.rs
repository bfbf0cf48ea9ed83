//! Catch-up: portal edits made while the agent was down, or whose webhooks pg_net dropped,
//! arrive through keyset-paged PostgREST reads into the inbox.

mod common;

use common::*;
use serde_json::json;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::SqlValue;
use syncbridge_testkit::WebhookRelay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_while_the_agent_was_down_arrive_at_startup_in_pages() {
    let store = MemoryStore::sample_clinic();
    seed_parents(&store);
    store.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 10)),
    );
    let o = Options {
        store: Some(store.clone()),
        setup_sql: "INSERT INTO patients (person_id, patient_name, is_active, patient_guid, date_added)
                      VALUES (1, 'P', true, gen_random_uuid(), '2026-01-01');
                    INSERT INTO work (work_id, person_id, type_of_work, addition_time) VALUES (1, 1, 'Aligners', '2026-01-01');
                    INSERT INTO aligner_sets (aligner_set_id, work_id, set_sequence, creation_date) VALUES (1, 1, 1, now());
                    INSERT INTO aligner_batches (aligner_batch_id, aligner_set_id, batch_sequence, days) VALUES (1, 1, 1, 30);
                    INSERT INTO aligner_notes (aligner_set_id, note_type, note_text)
                      SELECT 1, 'Doctor', 'note ' || g FROM generate_series(1, 1500) g;",
        ..Options::default()
    };
    let h = Harness::start_with(o).await;
    h.wait_store("1,500 notes caught up", |store| {
        store.rows("tblAlignerNotes").len() == 1500
    })
    .await;
    h.wait_store("portal-owned days caught up", |store| {
        days(store, 1) == Some(SqlValue::Int(30))
    })
    .await;
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT days FROM aligner_batches").await[0]["days"],
        json!(30),
        "the clinic's stale days never overwrote the portal's"
    );
    let status = h.status().await;
    assert!(
        status["reverse"]["catchup_watermarks"]["aligner_notes"]["version"].is_string(),
        "{status}"
    );
    let gets = h
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/aligner_notes"))
        .count();
    assert_eq!(gets, 2, "1,500 rows in pages of at most 1,000");

    // A second run re-reads only the overlap window, and applies nothing twice.
    let writes = store.apply_counts().1;
    let report = h.trigger("postgres-to-sql").await;
    assert!(
        report["result"]["postgres_to_sql"]["rows_fetched"]
            .as_u64()
            .is_some(),
        "{report}"
    );
    h.db.client()
        .batch_execute("INSERT INTO aligner_notes (aligner_set_id, note_type, note_text) VALUES (1, 'Doctor', 'late note')")
        .await
        .expect("insert");
    h.trigger("postgres-to-sql").await;
    h.wait_store("late note applied", |store| {
        store.rows("tblAlignerNotes").len() == 1501
    })
    .await;
    assert_eq!(
        store.apply_counts().1,
        writes + 1,
        "duplicates from the overlap are skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_dropped_by_pg_net_are_recovered_by_a_triggered_catch_up() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    seed_supabase_parents(&h.db).await;
    h.db.install_webhooks(&h.url("/api/sync/webhook"), WEBHOOK_SECRET)
        .await
        .expect("webhooks");
    let relay = WebhookRelay::start(h.db.url()).await.expect("relay");
    relay.set_dropping(true);
    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text) VALUES ('{NOTE_A}', 1, 'Doctor', 'lost webhook')"
        ))
        .await
        .expect("portal insert");
    relay
        .wait_for_deliveries(1, DEADLINE)
        .await
        .expect("the webhook fired and was dropped");
    assert!(note_text(&h.sql, NOTE_A).is_none());
    h.trigger("postgres-to-sql").await;
    h.wait_store("dropped note recovered", |store| {
        note_text(store, NOTE_A).as_deref() == Some("lost webhook")
    })
    .await;
}
