//! The value checks: the agent's own write and read paths (`apply`, `load_rows`) on the scratch
//! table that has a column of every mapped type. Every value goes in as a typed parameter (and
//! every NULL as a typed NULL) and must come back exactly: money at both ends of its range,
//! decimal(38,10), datetime's 1/300 s, datetime2(7)'s 100 ns, datetimeoffset's offset,
//! uniqueidentifier, varbinary with a trailing zero byte, Arabic, Kurdish and astral text.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use uuid::Uuid;

use super::bench::Bench;
use super::report::{CheckResult, Failure, Group, Report};
use crate::sqlserver::{Decimal, SqlValue};
use crate::sqlserver::{KeyPart, RecordKey, ReverseWrite, SqlStore, WriteAction, WriteOutcome};

pub(crate) async fn run(bench: &Bench, report: &mut Report) {
    let g = Group::Values;
    report
        .run(
            g,
            "every mapped type round-trips exactly through typed parameters",
            round_trip(bench),
        )
        .await;
    report
        .run(
            g,
            "typed NULL parameters convert to every column type",
            nulls(bench),
        )
        .await;
    report
        .run(
            g,
            "loading by key: unconvertible keys match nothing, text keys match exactly",
            keys(bench),
        )
        .await;
}

fn dec(units: i128, scale: u8) -> SqlValue {
    SqlValue::Decimal(Decimal { units, scale })
}

fn at(s: &str) -> SqlValue {
    SqlValue::DateTime(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap_or_default())
}

fn offset(s: &str) -> SqlValue {
    DateTime::<FixedOffset>::parse_from_rfc3339(s)
        .map(SqlValue::DateTimeOffset)
        .unwrap_or(SqlValue::Null)
}

/// One value per scratch column, each at an edge where a lossy path would show.
pub(crate) fn sample_values() -> Vec<(&'static str, SqlValue)> {
    vec![
        ("C_tinyint", SqlValue::Int(255)),
        ("C_smallint", SqlValue::Int(-32_768)),
        ("C_int", SqlValue::Int(i64::from(i32::MAX))),
        ("C_bigint", SqlValue::Int(i64::MIN)),
        (
            "C_decimal",
            dec(12_345_678_901_234_567_890_123_456_780_123_456_789, 10),
        ),
        ("C_numeric", dec(-125_050, 2)),
        ("C_money", dec(-9_223_372_036_854_775_808, 4)),
        ("C_smallmoney", dec(2_147_483_647, 4)),
        ("C_bit", SqlValue::Bit(true)),
        ("C_char", SqlValue::Text("IQD".into())),
        (
            "C_varchar",
            SqlValue::Text("plain ASCII, trailing space ".into()),
        ),
        ("C_nchar", SqlValue::Text("ڕۆژا".into())),
        (
            "C_nvarchar",
            SqlValue::Text("ناوی نەخۆش: ڕێژنە — ملاحظة: حساسية من البنسلين".into()),
        ),
        (
            "C_nvarcharmax",
            SqlValue::Text("😀 astral, عربي, کوردی ".repeat(300)),
        ),
        (
            "C_date",
            SqlValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap_or_default()),
        ),
        ("C_datetime", at("2024-02-29 23:59:59.997")),
        ("C_smalldatetime", at("2024-02-29 23:59:00")),
        ("C_datetime2", at("2024-02-29 12:34:56.1234567")),
        ("C_datetimeoffset", offset("2024-06-01T10:00:00.123+03:00")),
        (
            "C_uniqueidentifier",
            SqlValue::Guid(Uuid::from_u128(0x6F96_19FF_8B86_D011_B42D_00C0_4FC9_64FF)),
        ),
        ("C_varbinary", SqlValue::Binary(vec![0, 1, 2, 254, 255, 0])),
        ("C_float", SqlValue::Float(1e300)),
        ("C_real", SqlValue::Float(0.1)),
    ]
}

fn key(k1: i64, k2: &str) -> Vec<(String, SqlValue)> {
    vec![
        ("K1".to_owned(), SqlValue::Int(k1)),
        ("K2".to_owned(), SqlValue::Text(k2.to_owned())),
    ]
}

fn record_key(k1: i64, k2: &str) -> RecordKey {
    RecordKey(
        [
            ("K1".to_owned(), KeyPart::Int(k1)),
            ("K2".to_owned(), KeyPart::Text(k2.to_owned())),
        ]
        .into_iter()
        .collect(),
    )
}

/// Writes one row through `apply` with `values`, reads it back through `load_rows`, and lists
/// every column that did not come back as written.
async fn write_and_read(bench: &Bench, k1: i64, values: &[(&str, SqlValue)]) -> CheckResult {
    let table = bench.table("Types");
    let mut insert = key(k1, "values");
    insert.extend(values.iter().map(|(c, v)| ((*c).to_owned(), v.clone())));
    let write = ReverseWrite {
        guard: None,
        table: table.clone(),
        key: key(k1, "values"),
        action: WriteAction::Upsert {
            insert,
            update: vec![],
        },
    };
    let outcome = bench.store.apply(&write).await?;
    if outcome != WriteOutcome::Inserted {
        return Err(Failure::unexpected(format!(
            "the insert reported {outcome:?}"
        )));
    }
    let columns = bench
        .store
        .describe_table(&table)
        .await?
        .ok_or_else(|| Failure::unexpected("the scratch table is not in the catalog"))?;
    let rows = bench
        .store
        .load_rows(&table, &columns, &[record_key(k1, "values")])
        .await?;
    let [row] = rows.as_slice() else {
        return Err(Failure::unexpected(format!(
            "loaded {} rows, expected 1",
            rows.len()
        )));
    };
    let differs: Vec<String> = values
        .iter()
        .filter_map(|(c, want)| {
            let got = row.get(*c).unwrap_or(&SqlValue::Null);
            // DateTime<FixedOffset> equality compares the instant only: compare the offset too.
            let same = match (got, want) {
                (SqlValue::DateTimeOffset(a), SqlValue::DateTimeOffset(b)) => {
                    a.to_rfc3339() == b.to_rfc3339()
                }
                _ => got == want,
            };
            (!same).then(|| format!("{c}: wrote {want:?}, read {got:?}"))
        })
        .collect();
    if differs.is_empty() {
        Ok(Some(format!("{} columns", values.len())))
    } else {
        Err(Failure::unexpected(differs.join("; ")))
    }
}

async fn round_trip(bench: &Bench) -> CheckResult {
    write_and_read(bench, 1000, &sample_values()).await
}

async fn nulls(bench: &Bench) -> CheckResult {
    let nulls: Vec<_> = sample_values()
        .into_iter()
        .map(|(c, _)| (c, SqlValue::Null))
        .collect();
    write_and_read(bench, 1001, &nulls).await
}

async fn keys(bench: &Bench) -> CheckResult {
    let table = bench.table("Types");
    let write = ReverseWrite {
        guard: None,
        table: table.clone(),
        key: key(2000, "keys"),
        action: WriteAction::Upsert {
            insert: key(2000, "keys"),
            update: vec![],
        },
    };
    bench.store.apply(&write).await?;
    let columns = bench
        .store
        .describe_table(&table)
        .await?
        .ok_or_else(|| Failure::unexpected("the scratch table is not in the catalog"))?;
    let unconvertible = RecordKey(
        [
            ("K1".to_owned(), KeyPart::Text("abc".into())),
            ("K2".to_owned(), KeyPart::Text("keys".into())),
        ]
        .into_iter()
        .collect(),
    );
    let cases = [
        (unconvertible, 0),
        (record_key(2000, "KEYS"), 0),
        (record_key(2000, "keys "), 0),
        (record_key(2000, "keys"), 1),
    ];
    for (key, expected) in cases {
        let rows = bench
            .store
            .load_rows(&table, &columns, std::slice::from_ref(&key))
            .await?;
        if rows.len() != expected {
            return Err(Failure::unexpected(format!(
                "the key {key} loaded {} rows, expected {expected}",
                rows.len()
            )));
        }
    }
    Ok(None)
}
