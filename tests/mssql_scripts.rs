//! The `sql/sqlserver/` scripts against a real SQL Server (2017+): they apply twice and keep
//! what was configured, and the sample tables' triggers queue their keys as declared. What the
//! generated triggers do in general (multi-row statements, key changes, the loop guard,
//! cascades) and the notification's bound are the self-test's checks: tests/mssql_self_test.rs.
//! Needs MSSQL_TEST_URL: see tests/common/mssql.rs.

mod common;

use common::key;
use common::mssql::SqlDb;
use syncbridge::sqlserver::{KeyPart, RecordKey, SqlStore};

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn scripts_apply_twice() {
    let db = SqlDb::create().await;
    db.apply_scripts().await;
    for object in [
        "dbo.SyncQueue",
        "dbo.SyncConfig",
        "dbo.trg_tblAlignerNotes_SyncQueue",
        "dbo.trg_SyncQueue_NotifyApp",
        "dbo.sp_NotifyAppOfSync",
        "dbo.vw_SyncQueueStatus",
        "dbo.sp_SyncQueuePurgeSynced",
    ] {
        assert_eq!(
            db.int(&format!(
                "SELECT CASE WHEN OBJECT_ID(N'{object}') IS NULL THEN 0 ELSE 1 END;"
            ))
            .await,
            1,
            "{object}"
        );
    }
    assert_eq!(db.int("SELECT COUNT(*) FROM dbo.SyncConfig;").await, 2);
    // A clinic's mass update must not escalate to a table lock on the queue.
    assert_eq!(
        db.int("SELECT COUNT(*) FROM sys.tables WHERE object_id = OBJECT_ID(N'dbo.SyncQueue') AND lock_escalation_desc = N'DISABLE';")
            .await,
        1
    );
    // What `syncbridge check` reads: the generated triggers and the notify URL.
    let setup = db.store().setup_report().await.expect("setup report");
    for table in [
        "dbo.tblPatients",
        "dbo.tblWork",
        "dbo.tblAlignerSets",
        "dbo.tblAlignerBatches",
        "dbo.tblAlignerNotes",
    ] {
        assert!(
            setup
                .tables_with_trigger
                .iter()
                .any(|t| t.eq_ignore_ascii_case(table)),
            "{table}: {setup:?}"
        );
    }
    assert!(
        !setup
            .tables_with_trigger
            .iter()
            .any(|t| t.eq_ignore_ascii_case("dbo.SyncQueue")),
        "{setup:?}"
    );
    // The test database blanks NotifyUrl (SqlDb::create); a re-run keeps a configured value,
    // the blank included, rather than restoring the default.
    assert_eq!(setup.notify_url, None, "{setup:?}");
    assert_eq!(
        db.strings("SELECT Value FROM dbo.SyncConfig WHERE Name = N'NotifyUrl';")
            .await,
        [vec![Some(String::new())]]
    );
    db.drop_db().await;
}

/// The queue as (table, parsed key, operation), in QueueID order: RecordIDs are compared as
/// the keys they stand for, never as formatted text.
async fn queued_keys(db: &SqlDb) -> Vec<(String, RecordKey, String)> {
    db.queued()
        .await
        .into_iter()
        .map(|(table, record_id, operation, _)| {
            let key = RecordKey::parse(&record_id).unwrap_or_else(|e| panic!("{e}"));
            (table, key, operation)
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn sample_triggers_queue_keys_as_declared() {
    let db = SqlDb::create().await;
    // Re-installed with the key spelled in another case: the queue still says PersonID, and
    // TableName keeps the table's declared case too.
    db.sql(
        "EXEC dbo.sp_SyncInstallChangeTrigger @Table = N'TBLPATIENTS', @KeyColumns = N'personid';",
    )
    .await;
    db.sql("INSERT INTO dbo.tblPatients (PatientName) VALUES (N'A');")
        .await;
    assert_eq!(
        queued_keys(&db).await,
        [(
            "tblPatients".to_owned(),
            key("PersonID", 1),
            "INSERT".to_owned()
        )]
    );

    // tblAlignerNotes is keyed by NoteUID, written as SQL Server converts a uniqueidentifier
    // (upper case); changing it is a delete plus an insert.
    db.seed_parents(&[]).await;
    db.sql("INSERT INTO dbo.tblAlignerNotes (NoteUID, AlignerSetID, NoteType, NoteText) VALUES ('6f9619ff-8b86-d011-b42d-00c04fc964ff', 1, N'Lab', N'n');").await;
    db.sql("UPDATE dbo.tblAlignerNotes SET NoteUID = '00000000-0000-0000-0000-0000000000AA';")
        .await;
    let uid = |s: &str| {
        RecordKey(
            [("NoteUID".to_owned(), KeyPart::Text(s.to_owned()))]
                .into_iter()
                .collect(),
        )
    };
    let notes = |op: &str, k: &str| ("tblAlignerNotes".to_owned(), uid(k), op.to_owned());
    assert_eq!(
        queued_keys(&db).await,
        [
            notes("INSERT", "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            notes("DELETE", "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            notes("INSERT", "00000000-0000-0000-0000-0000000000AA"),
        ]
    );
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn the_installer_refuses_what_it_cannot_queue_faithfully() {
    let db = SqlDb::create().await;
    db.sql("CREATE TABLE dbo.tblOdd (ID int NOT NULL PRIMARY KEY, [Tooth.No] int NOT NULL);")
        .await;
    let mut c = db.connect().await;
    for (keys, number) in [("ID, id", 50007), ("[Tooth.No]", 50002), ("Nope", 50002)] {
        let sql = format!(
            "EXEC dbo.sp_SyncInstallChangeTrigger @Table = N'tblOdd', @KeyColumns = N'{keys}';"
        );
        let err = match c.simple_query(sql.as_str()).await {
            Ok(stream) => stream.into_results().await.err(),
            Err(e) => Some(e),
        };
        let err = err.unwrap_or_else(|| panic!("{keys:?} was accepted"));
        assert!(
            err.to_string().contains(&number.to_string()),
            "{keys:?}: {err}"
        );
    }
    let sql = "EXEC dbo.sp_SyncInstallChangeTrigger @Table = N'tblOdd', @KeyColumns = N'Tooth.No';";
    let err = match c.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.err(),
        Err(e) => Some(e),
    };
    assert!(
        err.is_some_and(|e| e.to_string().contains("50008")),
        "a dotted key column would nest in FOR JSON PATH"
    );
    drop(c);
    db.drop_db().await;
}
