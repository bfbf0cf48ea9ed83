//! Unit tests of value decoding and of the generated key-matching SELECT (no SQL Server).

use std::borrow::Cow;

use chrono::{NaiveDate, NaiveTime, TimeZone};
use tiberius::numeric::Numeric;
use tiberius::time::{self, Date, DateTime2, Time};
use uuid::Uuid;

use super::*;
use crate::sqlserver::KeyPart;
use crate::sqlserver::SqlType;

fn days_since_year_1(d: NaiveDate) -> u32 {
    u32::try_from((d - NaiveDate::from_ymd_opt(1, 1, 1).unwrap()).num_days()).unwrap()
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[test]
fn integers_bits_and_floats() {
    assert_eq!(
        column_value(&ColumnData::U8(Some(255))),
        Ok(SqlValue::Int(255))
    );
    assert_eq!(
        column_value(&ColumnData::I16(Some(-32768))),
        Ok(SqlValue::Int(-32768))
    );
    assert_eq!(
        column_value(&ColumnData::I32(Some(i32::MAX))),
        Ok(SqlValue::Int(2_147_483_647))
    );
    assert_eq!(
        column_value(&ColumnData::I64(Some(i64::MIN))),
        Ok(SqlValue::Int(i64::MIN))
    );
    assert_eq!(
        column_value(&ColumnData::Bit(Some(true))),
        Ok(SqlValue::Bit(true))
    );
    assert_eq!(
        column_value(&ColumnData::F32(Some(0.1))),
        Ok(SqlValue::Float(0.1))
    );
    assert_eq!(
        column_value(&ColumnData::F64(Some(1e300))),
        Ok(SqlValue::Float(1e300))
    );
}

#[test]
fn nulls_of_every_type_are_null() {
    let nulls = [
        ColumnData::U8(None),
        ColumnData::I32(None),
        ColumnData::F64(None),
        ColumnData::Bit(None),
        ColumnData::String(None),
        ColumnData::Guid(None),
        ColumnData::Binary(None),
        ColumnData::Numeric(None),
        ColumnData::Date(None),
        ColumnData::DateTime2(None),
        ColumnData::DateTimeOffset(None),
        ColumnData::DateTime(None),
    ];
    for null in nulls {
        assert_eq!(column_value(&null), Ok(SqlValue::Null), "{null:?}");
    }
}

#[test]
fn decimals_keep_every_digit_and_their_scale() {
    let units = -12_345_678_901_234_567_890_123_456_789_012_345_678_i128;
    let n = Numeric::new_with_scale(units, 10);
    assert_eq!(
        column_value(&ColumnData::Numeric(Some(n))),
        Ok(SqlValue::Decimal(Decimal { units, scale: 10 }))
    );
    // money arrives as decimal(19,4): 12.3400 keeps its four places.
    let money = Numeric::new_with_scale(123_400, 4);
    let Ok(SqlValue::Decimal(d)) = column_value(&ColumnData::Numeric(Some(money))) else {
        panic!("expected a decimal");
    };
    assert_eq!(d.to_string(), "12.3400");
}

#[test]
fn text_guid_and_bytes_round_trip() {
    let kurdish = "ناوی نەخۆش: ڕێژنە — عربي ✓";
    assert_eq!(
        column_value(&ColumnData::String(Some(Cow::Borrowed(kurdish)))),
        Ok(SqlValue::Text(kurdish.to_owned()))
    );
    let g = Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
    assert_eq!(
        column_value(&ColumnData::Guid(Some(g))),
        Ok(SqlValue::Guid(g))
    );
    let bytes = vec![0u8, 1, 127, 128, 255];
    assert_eq!(
        column_value(&ColumnData::Binary(Some(Cow::Owned(bytes.clone())))),
        Ok(SqlValue::Binary(bytes))
    );
}

#[test]
fn dates_and_times_keep_their_ticks() {
    let day = ymd(2024, 2, 29);
    let date = Date::new(days_since_year_1(day));
    assert_eq!(
        column_value(&ColumnData::Date(Some(date))),
        Ok(SqlValue::Date(day))
    );

    // datetime2(3) 2024-02-29 12:34:56.789
    let ms = (12 * 3600 + 34 * 60 + 56) * 1000 + 789;
    let dt2 = DateTime2::new(date, Time::new(ms, 3));
    let expected = day.and_time(NaiveTime::from_hms_milli_opt(12, 34, 56, 789).unwrap());
    assert_eq!(
        column_value(&ColumnData::DateTime2(Some(dt2))),
        Ok(SqlValue::DateTime(expected))
    );

    // datetime2(7): 100 ns ticks survive.
    let ticks = ((12 * 3600 + 34 * 60 + 56) * 10_000_000) + 1_234_567;
    let dt7 = DateTime2::new(date, Time::new(ticks, 7));
    let expected7 = day.and_time(NaiveTime::from_hms_nano_opt(12, 34, 56, 123_456_700).unwrap());
    assert_eq!(
        column_value(&ColumnData::DateTime2(Some(dt7))),
        Ok(SqlValue::DateTime(expected7))
    );

    // Legacy datetime: days since 1900-01-01 and 1/300 s fragments (noon = 12 * 3600 * 300).
    let legacy = time::DateTime::new(45_350, 12 * 3600 * 300);
    let expected_legacy = (ymd(1900, 1, 1) + chrono::Duration::days(45_350))
        .and_hms_opt(12, 0, 0)
        .unwrap();
    assert_eq!(
        column_value(&ColumnData::DateTime(Some(legacy))),
        Ok(SqlValue::DateTime(expected_legacy))
    );
}

#[test]
fn datetimeoffset_keeps_its_offset() {
    // On the wire: the UTC instant plus the offset in minutes. 07:00Z at +03:00 is 10:00+03:00.
    let day = ymd(2024, 6, 1);
    let utc = DateTime2::new(
        Date::new(days_since_year_1(day)),
        Time::new(7 * 3600 * 1000, 3),
    );
    let dto = time::DateTimeOffset::new(utc, 180);
    let plus3 = FixedOffset::east_opt(3 * 3600).unwrap();
    let expected = plus3.with_ymd_and_hms(2024, 6, 1, 10, 0, 0).unwrap();
    let got = column_value(&ColumnData::DateTimeOffset(Some(dto))).unwrap();
    assert_eq!(got, SqlValue::DateTimeOffset(expected));
    let SqlValue::DateTimeOffset(t) = got else {
        unreachable!()
    };
    assert_eq!(t.offset().local_minus_utc(), 3 * 3600);
}

#[test]
fn unsupported_types_are_refused() {
    assert!(column_value(&ColumnData::Time(Some(Time::new(0, 7)))).is_err());
}

fn col(name: &str, sql_type: SqlType, type_name: &str, decl: Option<&str>) -> ColumnInfo {
    ColumnInfo {
        source: SourceColumn {
            name: name.into(),
            sql_type,
            nullable: true,
            identity: false,
            computed: false,
        },
        type_name: type_name.into(),
        decl: decl.map(str::to_owned),
    }
}

#[test]
fn lossy_types_are_converted_on_the_server() {
    let money = col("Total", SqlType::Money, "money", Some("money"));
    assert_eq!(
        select_expr(&money).unwrap(),
        "CAST(t.[Total] AS decimal(19,4))"
    );
    let dt = col("At", SqlType::DateTime, "datetime", Some("datetime"));
    assert_eq!(select_expr(&dt).unwrap(), "CAST(t.[At] AS datetime2(3))");
    let sdt = col(
        "At",
        SqlType::DateTime,
        "smalldatetime",
        Some("smalldatetime"),
    );
    assert_eq!(select_expr(&sdt).unwrap(), "CAST(t.[At] AS datetime2(0))");
    let code = col(
        "Cur",
        SqlType::Text {
            unicode: false,
            max_chars: Some(3),
        },
        "char",
        Some("char(3)"),
    );
    assert_eq!(select_expr(&code).unwrap(), "CAST(t.[Cur] AS nvarchar(3))");
    let n = col(
        "N",
        SqlType::Text {
            unicode: true,
            max_chars: None,
        },
        "nvarchar",
        Some("nvarchar(max)"),
    );
    assert_eq!(select_expr(&n).unwrap(), "t.[N]");
    let xml = col("X", SqlType::Unsupported("xml".into()), "xml", None);
    assert!(select_expr(&xml).is_err());
}

fn table(name: &str, columns: Vec<ColumnInfo>) -> TableInfo {
    TableInfo {
        schema: "dbo".into(),
        name: name.into(),
        columns,
    }
}

fn int_col(name: &str, bits: u8, type_name: &str) -> ColumnInfo {
    col(name, SqlType::Int { bits }, type_name, Some(type_name))
}

#[test]
fn int_keys_are_joined_as_int_parameters_with_nothing_cast() {
    let info = table("tblPatients", vec![int_col("PersonID", 32, "int")]);
    let selected = vec![("PersonID".to_owned(), "t.[PersonID]".to_owned())];
    let keys = vec![key_column(&info, "personid").unwrap()];
    assert_eq!(keys[0].1, KeyKind::Int);
    let sql = select_sql(&info, &selected, &keys, 2);
    assert_eq!(
        sql,
        "SELECT t.[PersonID] AS [c0]\nFROM (VALUES\n    (@P1),\n    (@P2)\n) AS k (k0)\nJOIN [dbo].[tblPatients] AS t\n    ON t.[PersonID] = k.k0;"
    );
    // int binds as int (i32), not bigint: the column is compared in its own type.
    assert_eq!(
        KeyKind::Int.param(&KeyPart::Int(7)),
        Some(ColumnData::I32(Some(7)))
    );
    assert_eq!(KeyKind::Int.null(), ColumnData::I32(None));
}

#[test]
fn composite_and_text_keys_match_exactly_in_their_own_type_family() {
    let varchar = SqlType::Text {
        unicode: false,
        max_chars: Some(10),
    };
    let nvarchar = SqlType::Text {
        unicode: true,
        max_chars: Some(20),
    };
    let info = table(
        "tblWork",
        vec![
            col("Code", varchar, "varchar", Some("varchar(10)")),
            col("Tag", nvarchar, "nvarchar", Some("nvarchar(20)")),
            int_col("WorkID", 64, "bigint"),
        ],
    );
    let selected = vec![("WorkID".to_owned(), "t.[WorkID]".to_owned())];
    let keys: Vec<_> = ["Code", "Tag", "WorkID"]
        .iter()
        .map(|c| key_column(&info, c).unwrap())
        .collect();
    let sql = select_sql(&info, &selected, &keys, 2);
    assert!(
        sql.contains(
            "(CAST(@P1 AS varchar(8000)), @P1, @P2, @P3),\n    (CAST(@P4 AS varchar(8000)), @P4, @P5, @P6)\n) AS k (k0, r0, k1, k2)"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("t.[Code] = k.k0 AND CAST(t.[Code] AS nvarchar(max)) COLLATE Latin1_General_BIN2 = k.r0 AND DATALENGTH(CAST(t.[Code] AS nvarchar(max))) = DATALENGTH(k.r0)"),
        "{sql}"
    );
    assert!(
        sql.contains("t.[Tag] = k.k1 AND t.[Tag] COLLATE Latin1_General_BIN2 = k.k1 AND DATALENGTH(t.[Tag]) = DATALENGTH(k.k1)"),
        "{sql}"
    );
    assert!(sql.contains("\n   AND t.[WorkID] = k.k2;"), "{sql}");
    assert!(
        !sql.contains("TRY_CAST") && !sql.contains("CAST(t.[WorkID]"),
        "{sql}"
    );
    assert_eq!(
        KeyKind::BigInt.param(&KeyPart::Int(i64::MAX)),
        Some(ColumnData::I64(Some(i64::MAX)))
    );
}

#[test]
fn key_values_that_cannot_be_of_the_column_type_are_dropped() {
    let info = table(
        "t",
        vec![
            int_col("ID", 32, "int"),
            int_col("Small", 8, "tinyint"),
            col(
                "G",
                SqlType::Guid,
                "uniqueidentifier",
                Some("uniqueidentifier"),
            ),
            col("X", SqlType::Unsupported("xml".into()), "xml", None),
        ],
    );
    let text = |s: &str| KeyPart::Text(s.to_owned());
    assert_eq!(KeyKind::Int.param(&text("abc")), None);
    assert_eq!(KeyKind::Int.param(&KeyPart::Int(1 << 40)), None);
    assert_eq!(
        KeyKind::Int.param(&text("12")),
        Some(ColumnData::I32(Some(12)))
    );
    assert_eq!(KeyKind::TinyInt.param(&KeyPart::Int(-1)), None);
    assert_eq!(KeyKind::Guid.param(&KeyPart::Int(1)), None);
    assert_eq!(KeyKind::Guid.param(&text("not-a-guid")), None);
    let g = Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
    assert_eq!(
        KeyKind::Guid.param(&text("6f9619ff-8b86-d011-b42d-00c04fc964ff")),
        Some(ColumnData::Guid(Some(g)))
    );
    assert!(key_column(&info, "X").is_none());
    assert!(key_column(&info, "Nope").is_none());
    // A key with one unconvertible part binds nothing at all.
    let cols = vec![
        key_column(&info, "G").unwrap(),
        key_column(&info, "ID").unwrap(),
    ];
    let bad = RecordKey(
        [
            ("G".to_owned(), text("6f9619ff-8b86-d011-b42d-00c04fc964ff")),
            ("ID".to_owned(), text("abc")),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(bind_key(&cols, &bad), None);
    let good = RecordKey(
        [
            ("G".to_owned(), text("6F9619FF-8B86-D011-B42D-00C04FC964FF")),
            ("ID".to_owned(), KeyPart::Int(3)),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(
        bind_key(&cols, &good),
        Some(vec![ColumnData::Guid(Some(g)), ColumnData::I32(Some(3))])
    );
}

#[test]
fn statement_sizes_come_in_few_buckets() {
    assert_eq!(bucket(1, 2000), 1);
    assert_eq!(bucket(3, 2000), 4);
    assert_eq!(bucket(50, 2000), 64);
    assert_eq!(bucket(1500, 2000), 2000);
    assert_eq!(bucket(7, 7), 7);
}
