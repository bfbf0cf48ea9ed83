//! End to end against a real SQL Server (2017+), Supabase to the clinic: the real agent with the
//! tiberius store writes the portal's changes without an echo, and work of both directions that
//! arrives while the database is offline is done when it returns. Needs MSSQL_TEST_URL and
//! PG_TEST_URL: see tests/common/mssql.rs.

mod common;

use common::mssql::{owned, SqlDb, ARABIC, KURDISH};
use common::E2e;
use common::{batch_record, hook, note_record, wait_for};
use serde_json::json;
use syncbridge::sqlserver::RecordKey;

/// A note's shared key as the portal creates it (lower case, as PostgreSQL renders uuids).
const NOTE_UID: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
/// Batch 1 (under patient 1 → work 1 → set 1) as the webhooks' `old_record` knows it:
/// `batch_record(1, 14, "first batch", …)`.
const FIRST_BATCH: &[(&str, &str)] = &[("Days", "14"), ("Notes", "N'first batch'")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn portal_writes_reach_sql_server_and_do_not_echo() {
    let sql = SqlDb::create().await;
    sql.seed_parents(FIRST_BATCH).await;
    let e = E2e::start(sql).await;

    let inserted = note_record(NOTE_UID, ARABIC, "2026-11-25T10:00:00+00:00");
    e.webhook_accepted(&hook(
        "INSERT",
        "aligner_notes",
        Some(inserted.clone()),
        None,
    ))
    .await;
    let old_batch = batch_record(1, 14, "first batch", "2026-11-25T10:00:00+00:00");
    let new_batch = batch_record(
        1,
        21,
        "portal text is not the clinic's",
        "2026-11-25T10:01:00+00:00",
    );
    e.webhook_accepted(&hook(
        "UPDATE",
        "aligner_batches",
        Some(new_batch),
        Some(old_batch),
    ))
    .await;

    let db = &e.sql;
    let note_count =
        format!("SELECT COUNT(*) FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}';");
    let note_count = note_count.as_str();
    wait_for("the note and the days in SQL Server", move || async move {
        db.int(note_count).await == 1
            && db
                .int("SELECT ISNULL(Days, 0) FROM dbo.tblAlignerBatches WHERE AlignerBatchID = 1;")
                .await
                == 21
    })
    .await;
    let note = format!(
        "SELECT NoteType, NoteText, CONVERT(nvarchar(12), AlignerSetID),
                CONVERT(nvarchar(40), CreatedAt, 121), CONVERT(nvarchar(1), IsEdited),
                CONVERT(nvarchar(40), EditedAt, 121), CONVERT(nvarchar(1), IsRead)
         FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}';"
    );
    assert_eq!(
        e.sql.one(&note).await,
        owned(&[
            Some("Doctor"),
            Some(ARABIC),
            Some("1"),
            Some("2026-11-25 10:00:00.000"),
            Some("0"),
            None,
            Some("0"),
        ])
    );
    assert_eq!(
        e.sql
            .one("SELECT CONVERT(nvarchar(12), Days), Notes FROM dbo.tblAlignerBatches WHERE AlignerBatchID = 1;")
            .await,
        owned(&[Some("21"), Some("first batch")]),
        "only Days is written"
    );
    // A queue row would have been committed with the write that caused it: none now means none.
    assert!(
        e.sql.queue().await.is_empty(),
        "the agent's writes were queued: {:#?}",
        e.sql.queue().await
    );

    // The doctor edits the note: the portal-owned columns change, still without an echo.
    let mut edited = note_record(NOTE_UID, "تم التعديل", "2026-11-25T10:05:00+00:00");
    edited["is_edited"] = json!(true);
    edited["edited_at"] = json!("2026-11-25T10:05:00");
    e.webhook_accepted(&hook(
        "UPDATE",
        "aligner_notes",
        Some(edited),
        Some(inserted),
    ))
    .await;
    let edited_text = format!(
        "SELECT COUNT(*) FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}' AND NoteText = N'تم التعديل';"
    );
    db.wait_int("the edit in SQL Server", &edited_text, |n| n == 1)
        .await;
    assert_eq!(
        e.sql.one(&note).await,
        owned(&[
            Some("Doctor"),
            Some("تم التعديل"),
            Some("1"),
            Some("2026-11-25 10:00:00.000"),
            Some("1"),
            Some("2026-11-25 10:05:00.000"),
            Some("0"),
        ])
    );
    assert!(
        e.sql.queue().await.is_empty(),
        "the agent's writes were queued: {:#?}",
        e.sql.queue().await
    );

    // The triggers are live for everyone else: a clinic write to the same note is queued.
    e.sql
        .sql(&format!(
            "UPDATE dbo.tblAlignerNotes SET IsRead = 1 WHERE NoteUID = '{NOTE_UID}';"
        ))
        .await;
    let queue = e.sql.queue().await;
    assert_eq!(queue.len(), 1, "{queue:#?}");
    assert_eq!(
        queue[0][..4].to_vec(),
        owned(&[
            Some("tblAlignerNotes"),
            queue[0][1].as_deref(),
            Some("UPDATE"),
            Some("Pending"),
        ])
    );
    // Compared as the key it stands for, not as FOR JSON's formatting of it.
    let record_id = queue[0][1].as_deref().expect("RecordID");
    assert_eq!(
        RecordKey::parse(record_id).expect("a key"),
        common::text_key("NoteUID", &NOTE_UID.to_uppercase())
    );
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn work_that_arrives_while_the_database_is_offline_is_done_when_it_returns() {
    let sql = SqlDb::create().await;
    sql.seed_parents(FIRST_BATCH).await;
    let e = E2e::start(sql).await;

    // A clinic save the agent has not been told about yet (patient 2).
    e.sql
        .sql(&format!(
            "INSERT INTO dbo.tblPatients (PatientName) VALUES (N'{KURDISH}');"
        ))
        .await;
    let name = e.sql.name.clone();
    // Kills every session in the database, the agent's pooled ones included.
    e.sql
        .on_master(&format!(
            "ALTER DATABASE [{name}] SET OFFLINE WITH ROLLBACK IMMEDIATE;"
        ))
        .await;

    // Both directions arrive during the outage: the notification, and a portal note, which
    // is accepted (stored in the inbox) although it cannot be written yet.
    e.notify().await;
    e.webhook_accepted(&hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(NOTE_UID, ARABIC, "2026-11-25T10:00:00+00:00")),
        None,
    ))
    .await;
    let this = &e;
    wait_for(
        "both directions failed against the offline database",
        move || async move {
            let s = this.status().await;
            s["forward"]["state"]["last_error"].is_string()
                && s["reverse"]["state"]["last_error"].is_string()
        },
    )
    .await;
    let s = e.status().await;
    assert_eq!(s["reverse"]["inbox"]["depth"], json!(1), "{s}");
    assert_eq!(
        s["reverse"]["dead_events"],
        json!([]),
        "an outage kills no event: {s}"
    );

    e.sql
        .on_master(&format!("ALTER DATABASE [{name}] SET ONLINE;"))
        .await;
    e.sql.reconnect_observer().await;

    // Nobody notifies again or re-sends: the agent's own backoff brings both through.
    let db = &e.sql;
    let note_text = format!(
        "SELECT COUNT(*) FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}' AND NoteText = N'{ARABIC}';"
    );
    db.wait_int("the note in SQL Server", &note_text, |n| n == 1)
        .await;
    wait_for("the patient in Supabase", move || async move {
        this.pg_rows("SELECT person_id, patient_name FROM patients")
            .await
            == [json!({"person_id": 2, "patient_name": KURDISH})]
    })
    .await;
    e.sql.wait_settled(1).await;
    wait_for("the inbox emptied", move || async move {
        this.status().await["reverse"]["inbox"]["depth"] == json!(0)
    })
    .await;
    assert_eq!(
        e.sql
            .int("SELECT COUNT(*) FROM dbo.SyncQueue WHERE TableName = N'tblAlignerNotes';")
            .await,
        0,
        "the late write did not echo either"
    );
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn a_portal_note_that_cascades_to_its_set_reaches_supabase_and_the_note_does_not_echo() {
    let sql = SqlDb::create().await;
    sql.seed_parents(FIRST_BATCH).await;
    let e = E2e::start(sql).await;
    // The parents in Supabase first (seed_parents removed the items they caused).
    e.sql
        .sql(
            "UPDATE dbo.tblPatients SET PatientName = PatientName;
             UPDATE dbo.tblWork SET TypeOfWork = TypeOfWork;
             UPDATE dbo.tblAlignerSets SET IsActive = 0;",
        )
        .await;
    e.notify().await;
    e.sql.wait_all_synced(3).await;
    let set = "SELECT is_active FROM aligner_sets WHERE aligner_set_id = 1";
    assert_eq!(e.pg_rows(set).await, [json!({"is_active": false})]);
    e.sql.install_note_marks_its_set().await;

    e.webhook_accepted(&hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(NOTE_UID, ARABIC, "2026-11-25T10:00:00+00:00")),
        None,
    ))
    .await;
    let db = &e.sql;
    db.wait_int(
        "the note in SQL Server",
        &format!("SELECT COUNT(*) FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}';"),
        |n| n == 1,
    )
    .await;
    let pending = e
        .sql
        .strings("SELECT TableName, Operation FROM dbo.SyncQueue WHERE Status = 'Pending';")
        .await;
    assert_eq!(
        pending,
        [owned(&[Some("tblAlignerSets"), Some("UPDATE")])],
        "the cascade is queued, the agent's own note is not"
    );
    // What trg_SyncQueue_NotifyApp does when OLE Automation works.
    e.notify().await;
    e.sql.wait_all_synced(4).await;
    assert_eq!(e.pg_rows(set).await, [json!({"is_active": true})]);
    assert_eq!(
        e.sql
            .int("SELECT COUNT(*) FROM dbo.SyncQueue WHERE TableName = N'tblAlignerNotes';")
            .await,
        0,
        "the note did not echo"
    );
    e.finish().await;
}
