//! The `sql/sqlserver/` scripts against a real SQL Server (2017+): they apply twice, their change
//! triggers queue one item per changed row (composite keys and key changes included), and
//! `sp_NotifyAppOfSync` with nothing listening never hurts the writer. Needs MSSQL_TEST_URL: see
//! tests/common/mssql.rs.

mod common;

use std::time::{Duration, Instant};

use common::key;
use common::mssql::{exec, SqlDb};
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
    assert_eq!(
        setup.notify_url.as_deref(),
        Some("http://127.0.0.1:3000/api/sync/queue-notify")
    );
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn triggers_queue_one_row_per_changed_row() {
    let db = SqlDb::create().await;
    db.sql("INSERT INTO dbo.tblPatients (PatientName) VALUES (N'A'), (N'B'), (N'C');")
        .await;
    db.sql("UPDATE dbo.tblPatients SET Phone = N'555';").await;
    db.sql("UPDATE dbo.tblPatients SET Phone = N'x' WHERE 1 = 0;")
        .await;
    db.sql("DELETE FROM dbo.tblPatients WHERE PersonID = 2;")
        .await;
    let q = db.queued().await;
    let ops: Vec<_> = q
        .iter()
        .map(|(t, r, o, s)| (t.as_str(), r.as_str(), o.as_str(), s.as_str()))
        .collect();
    assert_eq!(ops.len(), 7, "{ops:?}");
    assert!(ops[..3]
        .iter()
        .all(|(t, _, o, s)| *t == "tblPatients" && *o == "INSERT" && *s == "Pending"));
    assert_eq!(
        ops[3..6]
            .iter()
            .filter(|(_, _, o, _)| *o == "UPDATE")
            .count(),
        3
    );
    assert_eq!(
        ops[6],
        ("tblPatients", "{\"PersonID\":2}", "DELETE", "Pending")
    );
    assert_eq!(RecordKey::parse(ops[6].1).unwrap(), key("PersonID", 2));
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn composite_keys_and_key_changes() {
    let db = SqlDb::create().await;
    // A composite-key table of the clinic's own, given its trigger by the generator procedure.
    db.sql("CREATE TABLE dbo.tblTeeth (WorkID int NOT NULL, ToothNo int NOT NULL, Note nvarchar(50) NULL, CONSTRAINT PK_tblTeeth PRIMARY KEY (WorkID, ToothNo));").await;
    db.sql("EXEC dbo.sp_SyncInstallChangeTrigger @Table = N'tblTeeth', @KeyColumns = N'WorkID, ToothNo';").await;
    db.sql("INSERT INTO dbo.tblTeeth (WorkID, ToothNo) VALUES (5, 11);")
        .await;
    db.sql("UPDATE dbo.tblTeeth SET ToothNo = 12 WHERE WorkID = 5;")
        .await;
    let q = db.queued().await;
    assert_eq!(q[0].1, "{\"WorkID\":5,\"ToothNo\":11}");
    let parsed = RecordKey::parse(&q[0].1).unwrap();
    assert_eq!(parsed.get("ToothNo"), Some(&KeyPart::Int(11)));
    assert_eq!(
        (q[1].1.as_str(), q[1].2.as_str()),
        ("{\"WorkID\":5,\"ToothNo\":11}", "DELETE")
    );
    assert_eq!(
        (q[2].1.as_str(), q[2].2.as_str()),
        ("{\"WorkID\":5,\"ToothNo\":12}", "INSERT")
    );

    // tblAlignerNotes is keyed by NoteUID: changing it is a delete plus an insert.
    db.seed_parents(&[]).await;
    db.sql("INSERT INTO dbo.tblAlignerNotes (NoteUID, AlignerSetID, NoteType, NoteText) VALUES ('6F9619FF-8B86-D011-B42D-00C04FC964FF', 1, N'Lab', N'n');").await;
    db.sql("UPDATE dbo.tblAlignerNotes SET NoteUID = '00000000-0000-0000-0000-0000000000AA';")
        .await;
    let q = db.queued().await;
    assert_eq!(
        q[0].1,
        "{\"NoteUID\":\"6F9619FF-8B86-D011-B42D-00C04FC964FF\"}"
    );
    assert_eq!(
        (q[1].1.as_str(), q[1].2.as_str()),
        (
            "{\"NoteUID\":\"6F9619FF-8B86-D011-B42D-00C04FC964FF\"}",
            "DELETE"
        )
    );
    assert_eq!(
        (q[2].1.as_str(), q[2].2.as_str()),
        (
            "{\"NoteUID\":\"00000000-0000-0000-0000-0000000000AA\"}",
            "INSERT"
        )
    );
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn notify_with_nothing_listening_never_hurts_the_writer() {
    let db = SqlDb::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    db.sql(&format!(
        "UPDATE dbo.SyncConfig SET Value = N'http://127.0.0.1:{port}/api/sync/queue-notify' WHERE Name = N'NotifyUrl';"
    ))
    .await;
    let started = Instant::now();
    db.sql("EXEC dbo.sp_NotifyAppOfSync;").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let mut writer = db.connect().await;
    exec(&mut writer, "BEGIN TRANSACTION; INSERT INTO dbo.tblPatients (PatientName) VALUES (N'saved'); COMMIT TRANSACTION;").await;
    exec(
        &mut writer,
        "INSERT INTO dbo.tblPatients (PatientName) VALUES (N'autocommit');",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM dbo.tblPatients;").await, 2);
    assert_eq!(db.queued().await.len(), 2);
    db.drop_db().await;
}
