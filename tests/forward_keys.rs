//! Forward sync of record keys beyond a single integer: composite keys, GUIDs in either case,
//! and text keys with characters PostgREST's filter grammar reserves.

mod common;

use common::*;
use serde_json::json;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::SqlValue;
use syncbridge::sqlserver::{KeyPart, RecordKey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_upsert_and_delete() {
    use syncbridge::sqlserver::SqlType;
    let store = MemoryStore::new();
    let col = column;
    let int = SqlType::Int { bits: 32 };
    store.create_table(
        "tblToothMoves",
        vec![
            col("WorkID", int.clone()),
            col("ToothNo", int),
            col(
                "Movement",
                SqlType::Text {
                    unicode: true,
                    max_chars: None,
                },
            ),
        ],
    );
    let map: TableMap =
        toml::from_str("[[table]]\nsource = \"tblToothMoves\"\nkeys = [\"WorkID\", \"ToothNo\"]")
            .expect("map");
    let o = Options {
        map,
        store: Some(store.clone()),
        setup_sql: "CREATE TABLE tooth_moves (work_id int, tooth_no int, movement text NOT NULL, updated_at timestamptz DEFAULT clock_timestamp(), PRIMARY KEY (work_id, tooth_no))",
        ..Options::default()
    };
    let h = Harness::start_with(o).await;
    let k = |w: i64, t: i64| {
        RecordKey(
            [
                ("WorkID".to_owned(), KeyPart::Int(w)),
                ("ToothNo".to_owned(), KeyPart::Int(t)),
            ]
            .into_iter()
            .collect(),
        )
    };
    for (w, t) in [(1, 11), (1, 12), (2, 11)] {
        let r = row(&[
            ("WorkID", SqlValue::Int(w)),
            ("ToothNo", SqlValue::Int(t)),
            ("Movement", text("intrusion")),
        ]);
        store.clinic_write("tblToothMoves", &k(w, t), Some(r));
    }
    h.notify().await;
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT count(*) AS n FROM tooth_moves").await[0]["n"],
        json!(3)
    );
    store.clinic_write("tblToothMoves", &k(1, 12), None);
    store.clinic_update(
        "tblToothMoves",
        &k(2, 11),
        &[("Movement", text("rotation"))],
    );
    h.notify().await;
    h.wait_synced().await;
    let rows = h
        .pg_rows("SELECT work_id, tooth_no, movement FROM tooth_moves ORDER BY 1, 2")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"work_id": 1, "tooth_no": 11, "movement": "intrusion"}),
            json!({"work_id": 2, "tooth_no": 11, "movement": "rotation"})
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guid_keys_coalesce_whatever_their_case() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerNotes",
        &note_key(NOTE_A),
        Some(note(NOTE_A, 1, "Lab", "lab note")),
    );
    // The same record queued again with the GUID in lower case (e.g. by a hand-written trigger).
    h.sql.enqueue_raw(
        "tblAlignerNotes",
        &format!(r#"{{"NoteUID":"{NOTE_A}"}}"#),
        "UPDATE",
    );
    h.notify().await;
    h.wait_synced().await;
    assert!(
        h.sql.queue().iter().all(|q| q.status == "Synced"),
        "{:?}",
        h.sql.queue()
    );
    assert_eq!(
        h.pg_rows("SELECT note_text FROM aligner_notes").await,
        vec![json!({"note_text": "lab note"})]
    );
    assert!(
        h.rest.requests().iter().all(|r| r.method != "DELETE"),
        "a case difference never reads as a delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_keys_with_reserved_characters_update_portal_owned_tables() {
    use syncbridge::sqlserver::SqlType;
    let store = MemoryStore::new();
    let col = column;
    let text_type = SqlType::Text {
        unicode: true,
        max_chars: Some(50),
    };
    store.create_table(
        "tblLabels",
        vec![
            col("Code", text_type.clone()),
            col("Label", text_type.clone()),
            col("Shelf", text_type),
        ],
    );
    let map: TableMap = toml::from_str(
        "[[table]]\nsource = \"tblLabels\"\nkeys = [\"Code\"]\nportal_owned = [\"Shelf\"]",
    )
    .expect("map");
    let o = Options {
        map,
        store: Some(store.clone()),
        // A table with portal-owned columns carries their versions (README "Who wins").
        setup_sql:
            "CREATE TABLE labels (code text PRIMARY KEY, label text NOT NULL, shelf text NOT NULL,
                                         sync_versions jsonb NOT NULL DEFAULT '{}');
                    CREATE TRIGGER labels_stamp_versions BEFORE INSERT OR UPDATE ON labels
                      FOR EACH ROW EXECUTE FUNCTION public.syncbridge_stamp_versions('shelf');",
        ..Options::default()
    };
    let h = Harness::start_with(o).await;
    let code = r#"A 1, (b) "c""#;
    let k = RecordKey(
        [("Code".to_owned(), KeyPart::Text(code.to_owned()))]
            .into_iter()
            .collect(),
    );
    let r = |label: &str| {
        row(&[
            ("Code", text(code)),
            ("Label", text(label)),
            ("Shelf", text("clinic shelf")),
        ])
    };
    store.clinic_write("tblLabels", &k, Some(r("old")));
    h.notify().await;
    h.wait_synced().await;
    h.db.client()
        .execute("UPDATE labels SET shelf = 'portal shelf'", &[])
        .await
        .expect("portal edit");
    store.clinic_write("tblLabels", &k, Some(r("new")));
    h.notify().await;
    h.wait_synced().await;
    assert_eq!(
        h.pg_rows("SELECT code, label, shelf FROM labels").await,
        vec![json!({"code": code, "label": "new", "shelf": "portal shelf"})]
    );
}
