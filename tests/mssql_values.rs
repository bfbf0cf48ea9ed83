//! `TdsStore`'s writes against a real SQL Server (2017+) on the sample tables: the agent's writes
//! queue nothing and report what they did, a refused row is Rejected with SQL Server's error, and
//! a clinic trigger's cascade of an agent write is queued. Every type's exact round trip is the
//! self-test's value check (tests/mssql_self_test.rs). Needs MSSQL_TEST_URL: see
//! tests/common/mssql.rs.

mod common;

use common::mssql::SqlDb;
use syncbridge::sqlserver::SqlValue;
use syncbridge::sqlserver::{RecordKey, ReverseWrite, SqlStore, WriteAction, WriteOutcome};
use uuid::Uuid;

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn agent_writes_queue_nothing() {
    let db = SqlDb::create().await;
    db.seed_parents(&[]).await;
    let store = db.store();
    let uid = Uuid::new_v4();
    let note = |text: &str| ReverseWrite {
        guard: None,
        table: "tblAlignerNotes".into(),
        key: vec![("NoteUID".into(), SqlValue::Guid(uid))],
        action: WriteAction::Upsert {
            insert: vec![
                ("NoteUID".into(), SqlValue::Guid(uid)),
                ("AlignerSetID".into(), SqlValue::Int(1)),
                ("NoteType".into(), SqlValue::Text("Doctor".into())),
                ("NoteText".into(), SqlValue::Text(text.into())),
            ],
            update: vec![("NoteText".into(), SqlValue::Text(text.into()))],
        },
    };
    assert_eq!(
        store.apply(&note("first")).await.unwrap(),
        WriteOutcome::Inserted
    );
    assert_eq!(
        store.apply(&note("first")).await.unwrap(),
        WriteOutcome::Unchanged
    );
    assert_eq!(
        store.apply(&note("First")).await.unwrap(),
        WriteOutcome::Updated,
        "a case change is a change"
    );
    let days = ReverseWrite {
        guard: None,
        table: "tblAlignerBatches".into(),
        key: vec![("AlignerBatchID".into(), SqlValue::Int(1))],
        action: WriteAction::UpdateOnly {
            update: vec![("Days".into(), SqlValue::Int(14))],
        },
    };
    assert_eq!(store.apply(&days).await.unwrap(), WriteOutcome::Updated);
    let missing = ReverseWrite {
        guard: None,
        key: vec![("AlignerBatchID".into(), SqlValue::Int(999))],
        ..days.clone()
    };
    assert_eq!(store.apply(&missing).await.unwrap(), WriteOutcome::Missing);
    assert!(
        db.queued().await.is_empty(),
        "the agent's writes must not be queued"
    );

    // A CHECK violation (NoteType must be Lab or Doctor) is Rejected with SQL Server's message.
    let bad = ReverseWrite {
        guard: None,
        table: "tblAlignerNotes".into(),
        key: vec![("NoteUID".into(), SqlValue::Guid(Uuid::new_v4()))],
        action: WriteAction::Upsert {
            insert: vec![
                ("AlignerSetID".into(), SqlValue::Int(1)),
                ("NoteType".into(), SqlValue::Text("Nurse".into())),
                ("NoteText".into(), SqlValue::Text("x".into())),
            ],
            update: vec![],
        },
    };
    let err = store.apply(&bad).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("547"),
        "{err}"
    );
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn a_clinic_trigger_cascading_from_an_agent_write_is_queued() {
    let db = SqlDb::create().await;
    db.seed_parents(&[]).await;
    db.install_note_marks_its_set().await;
    db.sql("UPDATE dbo.tblAlignerSets SET IsActive = 0; DELETE FROM dbo.SyncQueue;")
        .await;
    let uid = Uuid::new_v4();
    let note = ReverseWrite {
        guard: None,
        table: "tblAlignerNotes".into(),
        key: vec![("NoteUID".into(), SqlValue::Guid(uid))],
        action: WriteAction::Upsert {
            insert: vec![
                ("NoteUID".into(), SqlValue::Guid(uid)),
                ("AlignerSetID".into(), SqlValue::Int(1)),
                ("NoteType".into(), SqlValue::Text("Doctor".into())),
                ("NoteText".into(), SqlValue::Text("from the portal".into())),
            ],
            update: vec![],
        },
    };
    assert_eq!(
        db.store().apply(&note).await.unwrap(),
        WriteOutcome::Inserted
    );
    let queued: Vec<_> = db
        .queued()
        .await
        .into_iter()
        .map(|(table, record_id, operation, _)| {
            (table, RecordKey::parse(&record_id).unwrap(), operation)
        })
        .collect();
    assert_eq!(
        queued,
        [(
            "tblAlignerSets".to_owned(),
            common::key("AlignerSetID", 1),
            "UPDATE".to_owned()
        )],
        "the cascade is queued, the agent's own note is not"
    );
    db.drop_db().await;
}
