//! Key columns spelled in another case (issue 7): a trigger installed with
//! `@KeyColumns = N'personid'` by an older installer writes `{"personid":1}`. SQL Server calls
//! that the key of `PersonID`, so the agent must too: the item syncs at its first attempt, and
//! coalesces with an item of the same record spelled as declared.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_id_naming_the_key_in_another_case_syncs_at_its_first_attempt() {
    let h = Harness::start().await;
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "Folded Key")),
    );
    // The row's own item (declared spelling) and two written by a differently installed trigger.
    h.sql
        .enqueue_raw("tblPatients", r#"{"personid":1}"#, "UPDATE");
    h.sql
        .enqueue_raw("tblPatients", r#"{"PERSONID":1}"#, "UPDATE");
    h.notify().await;
    h.wait_synced().await;
    let queue = h.sql.queue();
    assert!(
        queue
            .iter()
            .all(|q| q.status == "Synced" && q.attempts == 0 && q.last_error.is_none()),
        "{queue:#?}"
    );
    assert_eq!(
        h.pg_rows("SELECT person_id, patient_name FROM patients")
            .await,
        [json!({"person_id": 1, "patient_name": "Folded Key"})]
    );
}

/// Issue 6.8, the agent's side: a text key changed only in case or by trailing spaces reaches
/// the agent as DELETE (old key) + INSERT (new key), as the generated trigger queues it; the old
/// row must leave Supabase and the new one arrive, not be merged into one by a collation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_changed_only_in_case_or_spaces_replaces_the_row_in_supabase() {
    use syncbridge::mapping::TableMap;
    use syncbridge::sqlserver::memory::MemoryStore;
    use syncbridge::sqlserver::SqlType;
    let store = MemoryStore::new();
    let text_type = SqlType::Text {
        unicode: true,
        max_chars: Some(20),
    };
    store.create_table(
        "tblCodes",
        vec![
            column("Code", text_type.clone()),
            column("Label", text_type),
        ],
    );
    let map: TableMap =
        toml::from_str("[[table]]\nsource = \"tblCodes\"\nkeys = [\"Code\"]").expect("map");
    let h = Harness::start_with(Options {
        map,
        store: Some(store.clone()),
        setup_sql: "CREATE TABLE codes (code text PRIMARY KEY, label text NOT NULL, updated_at timestamptz DEFAULT clock_timestamp())",
        ..Options::default()
    })
    .await;
    let code_row = |code: &str| row(&[("Code", text(code)), ("Label", text("label"))]);
    store.clinic_write("tblCodes", &text_key("Code", "abc"), Some(code_row("abc")));
    h.notify().await;
    h.wait_synced().await;
    for (old, new) in [("abc", "ABC"), ("ABC", "ABC ")] {
        // What the trigger queues for UPDATE ... SET Code = new: DELETE old, then INSERT new.
        store.clinic_write("tblCodes", &text_key("Code", old), None);
        store.clinic_write("tblCodes", &text_key("Code", new), Some(code_row(new)));
        h.notify().await;
        h.wait_synced().await;
        assert_eq!(
            h.pg_rows("SELECT code FROM codes").await,
            [json!({ "code": new })],
            "after {old:?} -> {new:?}"
        );
    }
    assert!(h.sql.queue().iter().all(|q| q.status == "Synced"));
}
