//! `TdsStore` and the `sql/sqlserver/` scripts against a real SQL Server (2017+). Every test
//! creates its own database, applies the scripts to it and drops it at the end, so tests run in
//! parallel and leave nothing behind (a panicking test leaves a `syncbridge_test_*` database).
//!
//! MSSQL_TEST_URL is an ADO connection string for a login that may create databases and, on
//! Windows, enable OLE Automation, e.g.
//! `Server=tcp:localhost,1433;User Id=sa;Password=...;TrustServerCertificate=true`.
//! Run with: `cargo test --test mssql -- --include-ignored`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use syncbridge::mapping::value::{Decimal, SqlValue};
use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::sqlserver::{
    KeyPart, RecordKey, ReverseWrite, SettleItem, Settlement, SqlStore, WriteAction, WriteOutcome,
    WriterWait,
};
use tiberius::{Client, Config};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use uuid::Uuid;

type Conn = Client<Compat<TcpStream>>;

/// One test's database.
struct TestDb {
    name: String,
    server: Config,
    config: Config,
}

impl TestDb {
    /// Creates the database and applies every script once; notifications are switched off
    /// (empty NotifyUrl) unless a test turns them on.
    async fn create() -> Self {
        let url = std::env::var("MSSQL_TEST_URL")
            .expect("MSSQL_TEST_URL (an ADO connection string) is not set");
        let server = Config::from_ado_string(&url)
            .expect("MSSQL_TEST_URL is not a valid ADO connection string");
        let name = format!(
            "syncbridge_test_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let mut master = server.clone();
        master.database("master");
        exec(
            &mut connect(&master).await,
            &format!("CREATE DATABASE [{name}];"),
        )
        .await;
        let mut config = server.clone();
        config.database(&name);
        let db = Self {
            name,
            server,
            config,
        };
        db.apply_scripts().await;
        db.sql("UPDATE dbo.SyncConfig SET Value = N'' WHERE Name = N'NotifyUrl';")
            .await;
        db
    }

    async fn apply_scripts(&self) {
        let mut c = self.connect().await;
        for (file, batches) in scripts() {
            for batch in batches {
                let result = match c.simple_query(batch.as_str()).await {
                    Ok(stream) => stream.into_results().await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    panic!("{file}: {e}\n--- batch ---\n{batch}");
                }
            }
        }
    }

    /// A connection as the clinic's applications make them (no session context: triggers fire).
    async fn connect(&self) -> Conn {
        connect(&self.config).await
    }

    fn store(&self) -> TdsStore {
        TdsStore::new(self.config.clone(), "mssql-test-agent".to_owned(), 4)
    }

    async fn sql(&self, sql: &str) {
        exec(&mut self.connect().await, sql).await;
    }

    async fn int(&self, sql: &str) -> i64 {
        let mut c = self.connect().await;
        let row = c
            .simple_query(sql)
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap()
            .expect("a row");
        match row.get_column_data(0).unwrap() {
            tiberius::ColumnData::I32(Some(v)) => i64::from(*v),
            tiberius::ColumnData::I64(Some(v)) => *v,
            other => panic!("not an integer: {other:?}"),
        }
    }

    /// (TableName, RecordID, Operation, Status) of every queue row, in QueueID order.
    async fn queue(&self) -> Vec<(String, String, String, String)> {
        let mut c = self.connect().await;
        let rows = c
            .simple_query("SELECT TableName, RecordID, Operation, Status FROM dbo.SyncQueue ORDER BY QueueID;")
            .await
            .unwrap()
            .into_first_result()
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let s = |i| r.get::<&str, _>(i).unwrap().to_owned();
                (s(0), s(1), s(2), s(3))
            })
            .collect()
    }

    async fn drop_db(self) {
        let mut master = self.server.clone();
        master.database("master");
        let name = &self.name;
        exec(
            &mut connect(&master).await,
            &format!("ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{name}];"),
        )
        .await;
    }
}

async fn connect(config: &Config) -> Conn {
    use tiberius::SqlBrowser;
    let tcp = TcpStream::connect_named(config)
        .await
        .expect("cannot reach SQL Server");
    Client::connect(config.clone(), tcp.compat_write())
        .await
        .expect("cannot log in to SQL Server")
}

async fn exec(c: &mut Conn, sql: &str) {
    let stream = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    stream
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

/// `sql/sqlserver/*.sql` in file-name order, each split into its GO-separated batches.
fn scripts() -> Vec<(String, Vec<String>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/sqlserver");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sql/sqlserver")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut batches = vec![String::new()];
            for line in text.lines() {
                if line.trim().eq_ignore_ascii_case("GO") {
                    batches.push(String::new());
                } else {
                    let current = batches.last_mut().unwrap();
                    current.push_str(line);
                    current.push('\n');
                }
            }
            batches.retain(|b| !b.trim().is_empty());
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                batches,
            )
        })
        .collect()
}

fn key(column: &str, part: KeyPart) -> RecordKey {
    RecordKey([(column.to_owned(), part)].into_iter().collect())
}

/// A patient, a work item and an aligner set, so notes and batches have parents.
async fn seed_parents(db: &TestDb) {
    db.sql(
        "INSERT INTO dbo.tblPatients (PatientName) VALUES (N'Parent');
         INSERT INTO dbo.tblWork (PersonID, TypeOfWork) VALUES (1, N'Aligners');
         INSERT INTO dbo.tblAlignerSets (WorkID, SetSequence) VALUES (1, 1);
         INSERT INTO dbo.tblAlignerBatches (AlignerSetID, BatchSequence) VALUES (1, 1);
         DELETE FROM dbo.SyncQueue;",
    )
    .await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn scripts_apply_twice() {
    let db = TestDb::create().await;
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
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn triggers_queue_one_row_per_changed_row() {
    let db = TestDb::create().await;
    db.sql("INSERT INTO dbo.tblPatients (PatientName) VALUES (N'A'), (N'B'), (N'C');")
        .await;
    db.sql("UPDATE dbo.tblPatients SET Phone = N'555';").await;
    db.sql("UPDATE dbo.tblPatients SET Phone = N'x' WHERE 1 = 0;")
        .await;
    db.sql("DELETE FROM dbo.tblPatients WHERE PersonID = 2;")
        .await;
    let q = db.queue().await;
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
    assert_eq!(
        RecordKey::parse(ops[6].1).unwrap(),
        key("PersonID", KeyPart::Int(2))
    );
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn composite_keys_and_key_changes() {
    let db = TestDb::create().await;
    // A composite-key table of the clinic's own, given its trigger by the generator procedure.
    db.sql("CREATE TABLE dbo.tblTeeth (WorkID int NOT NULL, ToothNo int NOT NULL, Note nvarchar(50) NULL, CONSTRAINT PK_tblTeeth PRIMARY KEY (WorkID, ToothNo));").await;
    db.sql("EXEC dbo.sp_SyncInstallChangeTrigger @Table = N'tblTeeth', @KeyColumns = N'WorkID, ToothNo';").await;
    db.sql("INSERT INTO dbo.tblTeeth (WorkID, ToothNo) VALUES (5, 11);")
        .await;
    db.sql("UPDATE dbo.tblTeeth SET ToothNo = 12 WHERE WorkID = 5;")
        .await;
    let q = db.queue().await;
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
    seed_parents(&db).await;
    db.sql("INSERT INTO dbo.tblAlignerNotes (NoteUID, AlignerSetID, NoteType, NoteText) VALUES ('6F9619FF-8B86-D011-B42D-00C04FC964FF', 1, N'Lab', N'n');").await;
    db.sql("UPDATE dbo.tblAlignerNotes SET NoteUID = '00000000-0000-0000-0000-0000000000AA';")
        .await;
    let q = db.queue().await;
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
async fn agent_writes_queue_nothing() {
    let db = TestDb::create().await;
    seed_parents(&db).await;
    let store = db.store();
    let uid = Uuid::new_v4();
    let note = |text: &str| ReverseWrite {
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
        table: "tblAlignerBatches".into(),
        key: vec![("AlignerBatchID".into(), SqlValue::Int(1))],
        action: WriteAction::UpdateOnly {
            update: vec![("Days".into(), SqlValue::Int(14))],
        },
    };
    assert_eq!(store.apply(&days).await.unwrap(), WriteOutcome::Updated);
    let missing = ReverseWrite {
        key: vec![("AlignerBatchID".into(), SqlValue::Int(999))],
        ..days.clone()
    };
    assert_eq!(store.apply(&missing).await.unwrap(), WriteOutcome::Missing);
    assert!(
        db.queue().await.is_empty(),
        "the agent's writes must not be queued"
    );

    // A CHECK violation (NoteType must be Lab or Doctor) is Rejected with SQL Server's message.
    let bad = ReverseWrite {
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
async fn claim_settle_next_due_and_lease() {
    let db = TestDb::create().await;
    let store = db.store();
    assert_eq!(store.next_due_in().await.unwrap(), None);
    db.sql("INSERT INTO dbo.tblPatients (PatientName) VALUES (N'A'), (N'B');")
        .await;
    db.sql("UPDATE dbo.tblPatients SET Phone = N'1' WHERE PersonID = 1;")
        .await;
    // Due now (SyncQueue keeps milliseconds, so "now" may round up by one).
    let due_now = |d: Option<Duration>| d.is_some_and(|d| d <= Duration::from_millis(5));
    assert!(due_now(store.next_due_in().await.unwrap()));

    // Limit 1 takes the oldest item and its sibling (same record), not the other record.
    let items = store.claim(1, Duration::from_secs(600)).await.unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|i| i.record_id == "{\"PersonID\":1}"));
    assert!(
        due_now(store.next_due_in().await.unwrap()),
        "PersonID 2 is still due"
    );
    let rest = store.claim(10, Duration::from_secs(600)).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(
        store
            .claim(10, Duration::from_secs(600))
            .await
            .unwrap()
            .is_empty(),
        "leased items are not due"
    );
    let lease = store.next_due_in().await.unwrap().unwrap();
    assert!(
        lease > Duration::from_secs(590) && lease <= Duration::from_secs(600),
        "{lease:?}"
    );

    let stale = SettleItem {
        id: rest[0].id,
        claim: syncbridge::sqlserver::ClaimToken(Uuid::new_v4()),
        outcome: Settlement::Synced,
    };
    let mut settle: Vec<_> = items
        .iter()
        .map(|i| SettleItem {
            id: i.id,
            claim: i.claim,
            outcome: Settlement::Synced,
        })
        .collect();
    settle.push(stale);
    store.settle(&settle).await.unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        (stats.synced, stats.pending),
        (2, 1),
        "a stale token settles nothing"
    );

    let retry = SettleItem {
        id: rest[0].id,
        claim: rest[0].claim,
        outcome: Settlement::Retry {
            delay: Duration::from_secs(3600),
            error: "e".repeat(3000),
        },
    };
    store.settle(&[retry]).await.unwrap();
    let due = store.next_due_in().await.unwrap().unwrap();
    assert!(due > Duration::from_secs(3590), "{due:?}");
    assert_eq!(
        db.int("SELECT Attempts FROM dbo.SyncQueue WHERE Status = 'Pending';")
            .await,
        1
    );
    assert_eq!(
        db.int("SELECT LEN(LastError) FROM dbo.SyncQueue WHERE Status = 'Pending';")
            .await,
        2000
    );

    // A crashed agent's claims: release_own_claims makes them due at once.
    db.sql("UPDATE dbo.SyncQueue SET NextAttemptAt = SYSUTCDATETIME() WHERE Status = 'Pending';")
        .await;
    let again = store.claim(10, Duration::from_secs(600)).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    assert_eq!(store.release_own_claims().await.unwrap(), 1);
    assert!(due_now(store.next_due_in().await.unwrap()));
    let failed = store.claim(10, Duration::from_secs(600)).await.unwrap();
    store
        .settle(&[SettleItem {
            id: failed[0].id,
            claim: failed[0].claim,
            outcome: Settlement::Failed {
                error: "gave up".into(),
            },
        }])
        .await
        .unwrap();
    assert_eq!(store.queue_stats().await.unwrap().failed, 1);
    assert_eq!(store.next_due_in().await.unwrap(), None);
    db.sql("EXEC dbo.sp_SyncQueueRetryFailed;").await;
    assert_eq!(store.queue_stats().await.unwrap().pending, 1);
    db.sql("UPDATE dbo.SyncQueue SET CreatedAt = DATEADD(DAY, -40, CreatedAt) WHERE Status = 'Synced'; EXEC dbo.sp_SyncQueuePurgeSynced @olderThanDays = 30, @batchSize = 1;").await;
    assert_eq!(store.queue_stats().await.unwrap().synced, 0);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn concurrent_claims_never_share_an_item() {
    let db = TestDb::create().await;
    db.sql("INSERT INTO dbo.tblPatients (PatientName) SELECT TOP (200) N'p' FROM sys.all_objects;")
        .await;
    let store = std::sync::Arc::new(db.store());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let items = store.claim(7, Duration::from_secs(600)).await.unwrap();
                if items.is_empty() {
                    return ids;
                }
                ids.extend(items.into_iter().map(|i| i.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(unique.len(), 200, "an item was claimed twice");
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn wait_for_writers_waits_for_an_open_transaction() {
    let db = TestDb::create().await;
    let store = db.store();
    assert_eq!(
        store
            .wait_for_writers(Duration::from_secs(5))
            .await
            .unwrap(),
        WriterWait::Idle
    );

    let mut writer = db.connect().await;
    exec(
        &mut writer,
        "BEGIN TRANSACTION; INSERT INTO dbo.tblPatients (PatientName) VALUES (N'uncommitted');",
    )
    .await;
    assert!(
        store
            .claim(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "uncommitted rows are skipped"
    );
    let started = Instant::now();
    let commit = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        exec(&mut writer, "COMMIT TRANSACTION;").await;
    };
    let (waited, ()) = tokio::join!(store.wait_for_writers(Duration::from_secs(20)), commit);
    assert_eq!(waited.unwrap(), WriterWait::Waited);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        store
            .claim(10, Duration::from_secs(60))
            .await
            .unwrap()
            .len(),
        1
    );

    // A writer that stays open: the wait ends at max_wait, still as Waited.
    exec(
        &mut writer,
        "BEGIN TRANSACTION; INSERT INTO dbo.tblPatients (PatientName) VALUES (N'slow');",
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        store
            .wait_for_writers(Duration::from_millis(300))
            .await
            .unwrap(),
        WriterWait::Waited
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    exec(&mut writer, "ROLLBACK TRANSACTION;").await;
    assert_eq!(
        store
            .wait_for_writers(Duration::from_secs(5))
            .await
            .unwrap(),
        WriterWait::Idle
    );
    drop(writer);
    drop(store);
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn every_type_round_trips_exactly() {
    let db = TestDb::create().await;
    db.sql(
        "CREATE TABLE dbo.tblTypes (
            ID int NOT NULL PRIMARY KEY, M money NULL, D38 decimal(38,10) NULL, T nvarchar(200) NULL,
            V varchar(20) NULL, DTO datetimeoffset(3) NULL, VB varbinary(64) NULL, G uniqueidentifier NULL,
            DA date NULL, DT datetime NULL, SDT smalldatetime NULL, DT2 datetime2(7) NULL, B bit NULL,
            F float NULL, TI tinyint NULL, BI bigint NULL);",
    )
    .await;
    let store = db.store();
    let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    let plus3 = FixedOffset::east_opt(3 * 3600).unwrap();
    let values = vec![
        (
            "M",
            SqlValue::Decimal(Decimal {
                units: -123_456_789,
                scale: 4,
            }),
        ),
        (
            "D38",
            SqlValue::Decimal(Decimal {
                units: 12_345_678_901_234_567_890_123_456_780_123_456_789,
                scale: 10,
            }),
        ),
        (
            "T",
            SqlValue::Text("ڕۆژباش، نەخۆشی ئازیز — مرحبا بالعالم 😀".into()),
        ),
        ("V", SqlValue::Text("IQD plain".into())),
        (
            "DTO",
            SqlValue::DateTimeOffset(
                plus3.with_ymd_and_hms(2024, 6, 1, 10, 0, 0).unwrap()
                    + chrono::Duration::milliseconds(123),
            ),
        ),
        ("VB", SqlValue::Binary(vec![0, 1, 2, 254, 255])),
        (
            "G",
            SqlValue::Guid(Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap()),
        ),
        (
            "DA",
            SqlValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        ),
        ("DT", SqlValue::DateTime(at("2024-02-29 23:59:59.997"))),
        ("SDT", SqlValue::DateTime(at("2024-02-29 23:59:00"))),
        ("DT2", SqlValue::DateTime(at("2024-02-29 12:34:56.1234567"))),
        ("B", SqlValue::Bit(true)),
        ("F", SqlValue::Float(0.1)),
        ("TI", SqlValue::Int(255)),
        ("BI", SqlValue::Int(i64::MIN)),
    ];
    let mut insert: Vec<(String, SqlValue)> = values
        .iter()
        .map(|(c, v)| ((*c).to_owned(), v.clone()))
        .collect();
    insert.push(("ID".into(), SqlValue::Int(1)));
    let write = ReverseWrite {
        table: "dbo.tblTypes".into(),
        key: vec![("ID".into(), SqlValue::Int(1))],
        action: WriteAction::Upsert {
            insert,
            update: vec![],
        },
    };
    assert_eq!(store.apply(&write).await.unwrap(), WriteOutcome::Inserted);
    // A row of NULLs too: typed NULL parameters convert to every column type.
    let nulls = ReverseWrite {
        key: vec![("ID".into(), SqlValue::Int(2))],
        action: WriteAction::Upsert {
            insert: values
                .iter()
                .map(|(c, _)| ((*c).to_owned(), SqlValue::Null))
                .collect(),
            update: vec![],
        },
        ..write.clone()
    };
    assert_eq!(store.apply(&nulls).await.unwrap(), WriteOutcome::Inserted);

    let columns = store
        .describe_table("tblTypes")
        .await
        .unwrap()
        .expect("tblTypes exists");
    let keys = [
        key("ID", KeyPart::Int(1)),
        key("ID", KeyPart::Int(2)),
        key("ID", KeyPart::Int(3)),
        key("ID", KeyPart::Int(1)),
    ];
    let mut rows = store.load_rows("tblTypes", &columns, &keys).await.unwrap();
    rows.sort_by_key(|r| format!("{:?}", r["ID"]));
    assert_eq!(
        rows.len(),
        2,
        "duplicate keys load once, missing keys are absent"
    );
    for (column, expected) in &values {
        assert_eq!(&rows[0][*column], expected, "{column}");
        assert_eq!(rows[1][*column], SqlValue::Null, "{column}");
    }
    // DateTime<FixedOffset> equality compares instants only: check the offset as well.
    let SqlValue::DateTimeOffset(dto) = &rows[0]["DTO"] else {
        panic!("DTO")
    };
    assert_eq!(dto.offset().local_minus_utc(), 3 * 3600);
    assert!(store
        .describe_table("dbo.NoSuchTable")
        .await
        .unwrap()
        .is_none());
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn notify_with_nothing_listening_never_hurts_the_writer() {
    let db = TestDb::create().await;
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
    assert_eq!(db.queue().await.len(), 2);
    db.drop_db().await;
}
