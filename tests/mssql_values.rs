//! `TdsStore`'s writes and reads against a real SQL Server (2017+): the agent's writes queue
//! nothing and report what they did, and every column type round-trips exactly. Needs
//! MSSQL_TEST_URL: see tests/common/mssql.rs.

mod common;

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use common::key;
use common::mssql::SqlDb;
use syncbridge::sqlserver::{Decimal, SqlValue};
use syncbridge::sqlserver::{ReverseWrite, SqlStore, WriteAction, WriteOutcome};
use uuid::Uuid;

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn agent_writes_queue_nothing() {
    let db = SqlDb::create().await;
    db.seed_parents(&[]).await;
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
        db.queued().await.is_empty(),
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
async fn every_type_round_trips_exactly() {
    let db = SqlDb::create().await;
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
    let keys = [key("ID", 1), key("ID", 2), key("ID", 3), key("ID", 1)];
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
