//! Unit tests of the reverse-write batch builder and parameter conversion (no SQL Server).

use chrono::{FixedOffset, NaiveDate, TimeZone};
use uuid::Uuid;

use super::*;
use crate::sqlserver::Decimal;
use crate::sqlserver::SourceColumn;

fn col(name: &str, sql_type: SqlType, type_name: &str, decl: &str, identity: bool) -> ColumnInfo {
    ColumnInfo {
        source: SourceColumn {
            name: name.into(),
            sql_type,
            nullable: true,
            identity,
            computed: false,
        },
        type_name: type_name.into(),
        decl: Some(decl.into()),
    }
}

fn notes() -> TableInfo {
    let nvarchar = |n| SqlType::Text {
        unicode: true,
        max_chars: n,
    };
    TableInfo {
        schema: "dbo".into(),
        name: "tblAlignerNotes".into(),
        columns: vec![
            col("NoteID", SqlType::Int { bits: 32 }, "int", "int", true),
            col(
                "NoteUID",
                SqlType::Guid,
                "uniqueidentifier",
                "uniqueidentifier",
                false,
            ),
            col(
                "AlignerSetID",
                SqlType::Int { bits: 32 },
                "int",
                "int",
                false,
            ),
            col(
                "NoteType",
                nvarchar(Some(20)),
                "nvarchar",
                "nvarchar(20)",
                false,
            ),
            col(
                "NoteText",
                nvarchar(None),
                "nvarchar",
                "nvarchar(max)",
                false,
            ),
            col("IsRead", SqlType::Bit, "bit", "bit", false),
            col(
                "LabelCode",
                SqlType::Binary {
                    max_bytes: Some(64),
                },
                "varbinary",
                "varbinary(64)",
                false,
            ),
            col(
                "Stamp",
                SqlType::DateTimeOffset { scale: 3 },
                "datetimeoffset",
                "datetimeoffset(3)",
                false,
            ),
        ],
    }
}

fn uid() -> SqlValue {
    SqlValue::Guid(Uuid::parse_str("2f1c6b8e-0d1a-4c3b-9e8f-1a2b3c4d5e6f").unwrap())
}

fn upsert(insert: Vec<(&str, SqlValue)>, update: Vec<(&str, SqlValue)>) -> ReverseWrite {
    let own = |v: Vec<(&str, SqlValue)>| v.into_iter().map(|(c, v)| (c.to_owned(), v)).collect();
    ReverseWrite {
        guard: None,
        table: "tblAlignerNotes".into(),
        key: vec![("NoteUID".into(), uid())],
        action: WriteAction::Upsert {
            insert: own(insert),
            update: own(update),
        },
    }
}

#[test]
fn upsert_locks_the_key_updates_only_on_change_and_inserts_otherwise() {
    let write = upsert(
        vec![
            ("AlignerSetID", SqlValue::Int(7)),
            ("NoteType", SqlValue::Text("Doctor".into())),
            ("NoteText", SqlValue::Text("سڵاو".into())),
        ],
        vec![
            ("NoteText", SqlValue::Text("سڵاو".into())),
            ("IsRead", SqlValue::Bit(true)),
        ],
    );
    let s = build(&notes(), &write).unwrap();
    let sql = s.sql.as_str();
    assert!(
        sql.starts_with("SET NOCOUNT ON;\nSET XACT_ABORT ON;"),
        "{sql}"
    );
    assert!(
        sql.contains("IF EXISTS (SELECT 1 FROM [dbo].[tblAlignerNotes] AS t WITH (UPDLOCK, HOLDLOCK) WHERE t.[NoteUID] = CAST(@P1 AS uniqueidentifier))"),
        "{sql}"
    );
    assert!(
        sql.contains("UPDATE t SET [NoteText] = @P2, [IsRead] = CAST(@P3 AS bit)"),
        "{sql}"
    );
    assert!(
        sql.contains(
            "AND EXISTS (SELECT CAST(t.[NoteText] AS nvarchar(max)) COLLATE Latin1_General_BIN2, \
             DATALENGTH(CAST(t.[NoteText] AS nvarchar(max))), t.[IsRead] \
             EXCEPT SELECT CAST(@P2 AS nvarchar(max)) COLLATE Latin1_General_BIN2, \
             DATALENGTH(CAST(@P2 AS nvarchar(max))), CAST(@P3 AS bit))"
        ),
        "{sql}"
    );
    // The key was not in `insert`: it is added.
    assert!(
        sql.contains(
            "INSERT INTO [dbo].[tblAlignerNotes] ([AlignerSetID], [NoteType], [NoteText], [NoteUID]) \
             VALUES (CAST(@P4 AS int), @P5, @P6, CAST(@P7 AS uniqueidentifier));"
        ),
        "{sql}"
    );
    assert!(
        sql.ends_with("COMMIT TRANSACTION;\nSELECT @outcome AS Outcome;"),
        "{sql}"
    );
    assert_eq!(s.params.len(), 7);
}

#[test]
fn upsert_with_nothing_to_update_only_inserts() {
    let s = build(
        &notes(),
        &upsert(vec![("NoteText", SqlValue::Text("x".into()))], vec![]),
    )
    .unwrap();
    assert!(
        s.sql.contains("BEGIN\n    SET @outcome = 3;\nEND"),
        "{}",
        s.sql
    );
    assert!(!s.sql.contains("UPDATE"), "{}", s.sql);
}

#[test]
fn update_only_reports_a_missing_row() {
    let write = ReverseWrite {
        guard: None,
        table: "tblAlignerNotes".into(),
        key: vec![("NoteUID".into(), uid())],
        action: WriteAction::UpdateOnly {
            update: vec![("IsRead".into(), SqlValue::Bit(false))],
        },
    };
    let s = build(&notes(), &write).unwrap();
    assert!(
        s.sql.contains("ELSE\nBEGIN\n    SET @outcome = 5;\nEND;"),
        "{}",
        s.sql
    );
    assert!(!s.sql.contains("INSERT"), "{}", s.sql);
}

#[test]
fn delete_reports_deleted_or_missing() {
    let write = ReverseWrite {
        guard: None,
        table: "tblAlignerNotes".into(),
        key: vec![("NoteUID".into(), uid())],
        action: WriteAction::Delete,
    };
    let s = build(&notes(), &write).unwrap();
    assert_eq!(
        s.sql,
        "SET NOCOUNT ON;\nSET XACT_ABORT ON;\nDELETE t FROM [dbo].[tblAlignerNotes] AS t \
         WHERE t.[NoteUID] = CAST(@P1 AS uniqueidentifier);\n\
         SELECT CASE WHEN @@ROWCOUNT > 0 THEN 4 ELSE 5 END AS Outcome;"
    );
}

#[test]
fn binary_and_offset_columns_compare_exactly() {
    let write = upsert(
        vec![],
        vec![
            ("LabelCode", SqlValue::Binary(vec![1, 2])),
            ("Stamp", SqlValue::Null),
        ],
    );
    let sql = build(&notes(), &write).unwrap().sql;
    assert!(
        sql.contains("[LabelCode] = @P2, [Stamp] = CAST(@P3 AS datetimeoffset(3))"),
        "{sql}"
    );
    assert!(
        sql.contains("CAST(t.[LabelCode] AS varbinary(max)), DATALENGTH(CAST(t.[LabelCode] AS varbinary(max))), t.[Stamp], DATEPART(TZOFFSET, t.[Stamp])"),
        "{sql}"
    );
}

#[test]
fn bad_writes_are_refused_before_reaching_sql_server() {
    let info = notes();
    let bad = [
        upsert(vec![("NoteID", SqlValue::Int(1))], vec![]),
        upsert(vec![], vec![("Nope", SqlValue::Int(1))]),
        upsert(
            vec![],
            vec![
                ("IsRead", SqlValue::Bit(true)),
                ("isread", SqlValue::Bit(false)),
            ],
        ),
        ReverseWrite {
            guard: None,
            table: "tblAlignerNotes".into(),
            key: vec![("NoteUID".into(), SqlValue::Null)],
            action: WriteAction::Delete,
        },
        ReverseWrite {
            guard: None,
            table: "tblAlignerNotes".into(),
            key: vec![],
            action: WriteAction::Delete,
        },
    ];
    for write in bad {
        assert!(
            matches!(build(&info, &write), Err(StoreError::Invalid(_))),
            "{write:?}"
        );
    }
}

#[test]
fn nulls_are_typed_like_their_column() {
    let p = |ty: SqlType| param(&SqlValue::Null, &ty).unwrap();
    assert_eq!(
        p(SqlType::Binary {
            max_bytes: Some(64)
        }),
        ColumnData::Binary(None)
    );
    assert_eq!(
        p(SqlType::Text {
            unicode: true,
            max_chars: None
        }),
        ColumnData::String(None)
    );
    assert_eq!(p(SqlType::Money), ColumnData::Numeric(None));
    assert_eq!(
        p(SqlType::DateTime2 { scale: 3 }),
        ColumnData::DateTime2(None)
    );
    assert_eq!(p(SqlType::Guid), ColumnData::Guid(None));
    assert!(param(&SqlValue::Null, &SqlType::Unsupported("xml".into())).is_err());
}

#[test]
fn values_become_exact_parameters() {
    let money = SqlValue::Decimal(Decimal {
        units: 123_400,
        scale: 4,
    });
    assert_eq!(
        param(&money, &SqlType::Money).unwrap(),
        ColumnData::Numeric(Some(Numeric::new_with_scale(123_400, 4)))
    );
    let huge = SqlValue::Decimal(Decimal {
        units: 10i128.pow(38),
        scale: 0,
    });
    assert!(param(
        &huge,
        &SqlType::Decimal {
            precision: 38,
            scale: 0
        }
    )
    .is_err());

    let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    assert!(matches!(
        param(&SqlValue::Date(day), &SqlType::Date).unwrap(),
        ColumnData::Date(Some(_))
    ));
    let at = day.and_hms_milli_opt(23, 59, 59, 997).unwrap();
    assert!(matches!(
        param(&SqlValue::DateTime(at), &SqlType::DateTime).unwrap(),
        ColumnData::DateTime2(Some(_))
    ));
    let plus3 = FixedOffset::east_opt(3 * 3600)
        .unwrap()
        .with_ymd_and_hms(2024, 6, 1, 10, 0, 0)
        .unwrap();
    let ColumnData::DateTimeOffset(Some(dto)) = param(
        &SqlValue::DateTimeOffset(plus3),
        &SqlType::DateTimeOffset { scale: 3 },
    )
    .unwrap() else {
        panic!("expected a datetimeoffset");
    };
    assert_eq!(dto.offset(), 180);
    assert_eq!(
        param(
            &SqlValue::Binary(vec![0, 255]),
            &SqlType::Binary { max_bytes: None }
        )
        .unwrap(),
        ColumnData::Binary(Some(Cow::Owned(vec![0, 255])))
    );
}

#[test]
fn a_varchar_key_is_compared_as_varchar_without_a_large_object_type() {
    let varchar = SqlType::Text {
        unicode: false,
        max_chars: Some(10),
    };
    let code = col("Code", varchar, "varchar", "varchar(10)", false);
    assert_eq!(key_expr(&code, "@P1"), "CAST(@P1 AS varchar(8000))");
    let id = col("ID", SqlType::Int { bits: 32 }, "int", "int", false);
    assert_eq!(key_expr(&id, "@P1"), "CAST(@P1 AS int)");
}

#[test]
fn a_text_key_matches_exactly_and_still_seeks() {
    let varchar = SqlType::Text {
        unicode: false,
        max_chars: Some(10),
    };
    let code = col("Code", varchar, "varchar", "varchar(10)", false);
    // The plain comparison first (the seek), then case, accents and trailing spaces count.
    assert_eq!(
        key_match(&code, "@P1"),
        "t.[Code] = CAST(@P1 AS varchar(8000)) \
         AND CAST(t.[Code] AS nvarchar(max)) COLLATE Latin1_General_BIN2 = @P1 \
         AND DATALENGTH(CAST(t.[Code] AS nvarchar(max))) = DATALENGTH(@P1)"
    );
    let fixed = SqlType::Text {
        unicode: true,
        max_chars: Some(4),
    };
    let label = col("Label", fixed, "nchar", "nchar(4)", false);
    // A fixed-width value is padded to its width: its length would never match the key's.
    assert_eq!(
        key_match(&label, "@P1"),
        "t.[Label] = @P1 \
         AND CAST(t.[Label] AS nvarchar(max)) COLLATE Latin1_General_BIN2 = @P1"
    );
    let id = col("ID", SqlType::Int { bits: 32 }, "int", "int", false);
    assert_eq!(key_match(&id, "@P1"), "t.[ID] = CAST(@P1 AS int)");
}

#[test]
fn a_guarded_update_checks_the_queue_under_the_row_lock_with_typed_keys() {
    let mut write = upsert(
        vec![("NoteText", SqlValue::Text("x".into()))],
        vec![("NoteText", SqlValue::Text("x".into()))],
    );
    let at = chrono::DateTime::from_timestamp_micros(1_764_000_000_000_000).unwrap();
    write.guard = Some(at);
    let s = build(&notes(), &write).unwrap();
    let sql = s.sql.as_str();
    let lock = sql.find("WITH (UPDLOCK, HOLDLOCK)").expect("row lock");
    let check = sql
        .find("IF EXISTS (SELECT 1 FROM [dbo].[SyncQueue] AS q WITH (READCOMMITTEDLOCK)")
        .expect("queue check");
    let update = sql.find("UPDATE t SET [NoteText]").expect("update");
    assert!(lock < check && check < update, "{sql}");
    assert!(
        sql.contains("q.Status = 'Pending' AND q.CreatedAt > @P"),
        "{sql}"
    );
    assert!(
        sql.contains("TRY_CONVERT(uniqueidentifier, JSON_VALUE(q.RecordID, @P"),
        "the key is compared typed, the path is a parameter: {sql}"
    );
    assert!(sql.contains("SET @outcome = 6;"), "{sql}");
    // Only the table name, the time, the path and the key are new parameters: no value text.
    assert!(
        s.params
            .iter()
            .any(|p| matches!(p, ColumnData::String(Some(v)) if v == "$.\"NoteUID\"")),
        "{:?}",
        s.params
    );
    // The queue is searched under the trigger's spelling of the table, not the map's.
    write.table = "[dbo].[tblAlignerNotes]".into();
    let s = build(&notes(), &write).unwrap();
    assert!(
        s.params
            .iter()
            .any(|p| matches!(p, ColumnData::String(Some(v)) if v == "tblAlignerNotes")),
        "{:?}",
        s.params
    );
    // Without a guard nothing of the queue is read.
    write.guard = None;
    assert!(!build(&notes(), &write).unwrap().sql.contains("SyncQueue"));
}
