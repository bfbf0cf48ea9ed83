//! Reading rows for the forward path: `load_rows` selects the current values of changed records
//! by key, and [`column_value`] turns what tiberius decoded into a [`SqlValue`] without losing a
//! digit, a tick or a byte.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use tiberius::{ColumnData, FromSql, Query};

use super::catalog::{quote, ColumnInfo, TableInfo};
use super::error::SqlResult;
use super::pool::TdsClient;
use crate::mapping::value::{Decimal, SqlType, SqlValue};
use crate::sqlserver::{RecordKey, Row, SourceColumn, StoreError};

/// Parameters per statement: SQL Server accepts 2100 per request.
const MAX_PARAMS: usize = 2000;

/// Loads the rows of `info` whose keys are in `keys`, selecting `columns` (named as the caller
/// names them). Keys are matched set-based: one statement per chunk of keys, the keys bound as
/// parameters in a `VALUES` list. (Not OPENJSON: it needs database compatibility level 130,
/// and clinic databases restored from older servers often run at 100-120.)
pub(super) async fn load(
    client: &mut TdsClient,
    info: &TableInfo,
    columns: &[SourceColumn],
    keys: &[RecordKey],
) -> Result<Vec<Row>, StoreError> {
    let selected = columns
        .iter()
        .map(|c| {
            let col = info.column(&c.name)?;
            select_expr(col).map(|expr| (c.name.clone(), expr))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if selected.is_empty() {
        return Err(StoreError::Invalid(format!(
            "no columns requested from {}",
            info.name
        )));
    }
    let mut by_columns: BTreeMap<Vec<&str>, Vec<&RecordKey>> = BTreeMap::new();
    for key in keys.iter().collect::<BTreeSet<_>>() {
        by_columns
            .entry(key.0.keys().map(String::as_str).collect())
            .or_default()
            .push(key);
    }
    let mut rows = Vec::new();
    for (key_columns, keys) in by_columns {
        // A RecordID naming columns the table does not have identifies no row: those keys are
        // simply absent from the result, like any other missing row.
        let Some(matchers) = key_columns
            .iter()
            .map(|k| key_matcher(info, k))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let per_chunk = (MAX_PARAMS / matchers.len()).max(1);
        for chunk in keys.chunks(per_chunk) {
            let slots = bucket(chunk.len(), per_chunk);
            let sql = select_sql(info, &selected, &matchers, slots);
            let mut query = Query::new(sql);
            for key in chunk {
                for part in key.0.values() {
                    query.bind(Some(part.to_string()));
                }
            }
            for _ in chunk.len() * matchers.len()..slots * matchers.len() {
                query.bind(None::<String>);
            }
            let found = query
                .query(client)
                .await
                .sql()?
                .into_first_result()
                .await
                .sql()?;
            for row in &found {
                rows.push(decode_row(row, &selected)?);
            }
        }
    }
    Ok(rows)
}

/// Rounds a row count up to a power of two (at most `max`), so that statements with different
/// numbers of keys share a handful of cached plans instead of one plan per count.
pub(super) fn bucket(n: usize, max: usize) -> usize {
    n.max(1)
        .checked_next_power_of_two()
        .unwrap_or(max)
        .min(max)
        .max(n)
}

/// How a column is read: converted on the server wherever tiberius would otherwise lose
/// exactness (money, which tiberius decodes as f64; datetime and its 1/300 s ticks) or depend
/// on a client-side code page (char/varchar).
fn select_expr(col: &ColumnInfo) -> Result<String, StoreError> {
    let name = format!("t.{}", quote(&col.source.name));
    let unicode_len = |chars: Option<u32>| match chars {
        Some(n) if n <= 4000 => format!("nvarchar({n})"),
        _ => "nvarchar(max)".to_owned(),
    };
    Ok(match (&col.source.sql_type, col.type_name.as_str()) {
        (SqlType::Unsupported(ty), _) => {
            return Err(StoreError::Invalid(format!(
                "column {} has type {ty}, which the sync does not support",
                col.source.name
            )))
        }
        (SqlType::Money, _) => format!("CAST({name} AS decimal(19,4))"),
        (SqlType::DateTime, "smalldatetime") => format!("CAST({name} AS datetime2(0))"),
        (SqlType::DateTime, _) => format!("CAST({name} AS datetime2(3))"),
        // char/varchar/text: converted to Unicode by SQL Server with the column's own code page.
        (
            SqlType::Text {
                unicode: false,
                max_chars,
            },
            _,
        ) => format!("CAST({name} AS {})", unicode_len(*max_chars)),
        (SqlType::Text { .. }, "ntext") => format!("CAST({name} AS nvarchar(max))"),
        (SqlType::Binary { .. }, "image") => format!("CAST({name} AS varbinary(max))"),
        _ => name,
    })
}

/// The predicate comparing a key column with the parameter `k.{slot}` (always nvarchar), or
/// `None` if the table has no such column or it cannot be a key.
fn key_matcher(info: &TableInfo, column: &str) -> Option<(String, String)> {
    let col = info.column(column).ok()?;
    let target = format!("t.{}", quote(&col.source.name));
    let cast = match &col.source.sql_type {
        SqlType::Unsupported(_) => return None,
        SqlType::Text { unicode: true, .. } => "{}".to_owned(),
        // varchar(max): never truncates the parameter, so never matches a shorter key.
        SqlType::Text { unicode: false, .. } => "CAST({} AS varchar(max))".to_owned(),
        // A key that does not convert (a RecordID with "abc" for an int key) matches nothing.
        _ => format!("TRY_CAST({{}} AS {})", col.decl.as_deref()?),
    };
    Some((target, cast))
}

fn select_sql(
    info: &TableInfo,
    selected: &[(String, String)],
    matchers: &[(String, String)],
    slots: usize,
) -> String {
    let list = selected
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| format!("{expr} AS [c{i}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let width = matchers.len();
    let values = (0..slots)
        .map(|row| {
            let params = (0..width)
                .map(|i| format!("@P{}", row * width + i + 1))
                .collect::<Vec<_>>();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(",\n        ");
    let names = (0..width)
        .map(|i| format!("k{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let predicate = matchers
        .iter()
        .enumerate()
        .map(|(i, (target, cast))| format!("{target} = {}", cast.replace("{}", &format!("k.k{i}"))))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "SELECT {list}\nFROM {table} AS t\nWHERE EXISTS (\n    SELECT 1 FROM (VALUES\n        {values}\n    ) AS k ({names})\n    WHERE {predicate}\n);",
        table = info.quoted(),
    )
}

fn decode_row(row: &tiberius::Row, selected: &[(String, String)]) -> Result<Row, StoreError> {
    selected
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let data = row.get_column_data(i).sql()?;
            column_value(data)
                .map(|v| (name.clone(), v))
                .map_err(|why| StoreError::Rejected(format!("column {name}: {why}")))
        })
        .collect()
}

/// Converts one value as tiberius decoded it. Exact: decimals keep their scale, date/time
/// values their ticks, strings and bytes their content; `real` goes through its shortest
/// decimal form so 0.1 stays 0.1 rather than 0.10000000149011612.
pub(super) fn column_value(data: &ColumnData<'static>) -> Result<SqlValue, String> {
    let value = match data {
        ColumnData::U8(v) => v.map(|x| SqlValue::Int(i64::from(x))),
        ColumnData::I16(v) => v.map(|x| SqlValue::Int(i64::from(x))),
        ColumnData::I32(v) => v.map(|x| SqlValue::Int(i64::from(x))),
        ColumnData::I64(v) => v.map(SqlValue::Int),
        ColumnData::F32(v) => {
            v.map(|x| SqlValue::Float(x.to_string().parse::<f64>().unwrap_or(f64::from(x))))
        }
        ColumnData::F64(v) => v.map(SqlValue::Float),
        ColumnData::Bit(v) => v.map(SqlValue::Bit),
        ColumnData::String(v) => v.as_ref().map(|s| SqlValue::Text(s.to_string())),
        ColumnData::Guid(v) => v.map(SqlValue::Guid),
        ColumnData::Binary(v) => v.as_ref().map(|b| SqlValue::Binary(b.to_vec())),
        ColumnData::Numeric(v) => v.map(|n| {
            SqlValue::Decimal(Decimal {
                units: n.value(),
                scale: n.scale(),
            })
        }),
        ColumnData::Date(_) => NaiveDate::from_sql(data)
            .map_err(|e| e.to_string())?
            .map(SqlValue::Date),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            NaiveDateTime::from_sql(data)
                .map_err(|e| e.to_string())?
                .map(SqlValue::DateTime)
        }
        ColumnData::DateTimeOffset(_) => DateTime::<FixedOffset>::from_sql(data)
            .map_err(|e| e.to_string())?
            .map(SqlValue::DateTimeOffset),
        ColumnData::Time(_) => return Err("time values are not supported".to_owned()),
        ColumnData::Xml(_) => return Err("xml values are not supported".to_owned()),
    };
    Ok(value.unwrap_or(SqlValue::Null))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use chrono::{NaiveDate, NaiveTime, TimeZone};
    use tiberius::numeric::Numeric;
    use tiberius::time::{self, Date, DateTime2, Time};
    use uuid::Uuid;

    use super::*;
    use crate::mapping::value::SqlType;
    use crate::sqlserver::KeyPart;

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
        let expected7 =
            day.and_time(NaiveTime::from_hms_nano_opt(12, 34, 56, 123_456_700).unwrap());
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

    #[test]
    fn keys_are_matched_through_a_values_list() {
        let info = TableInfo {
            schema: "dbo".into(),
            name: "tblWork".into(),
            columns: vec![
                col("WorkID", SqlType::Int { bits: 32 }, "int", Some("int")),
                col(
                    "Code",
                    SqlType::Text {
                        unicode: false,
                        max_chars: Some(10),
                    },
                    "varchar",
                    Some("varchar(10)"),
                ),
            ],
        };
        let selected = vec![("WorkID".to_owned(), "t.[WorkID]".to_owned())];
        let matchers: Vec<_> = ["Code", "WorkID"]
            .iter()
            .map(|c| key_matcher(&info, c).unwrap())
            .collect();
        let sql = select_sql(&info, &selected, &matchers, 2);
        assert!(sql.contains("FROM [dbo].[tblWork] AS t"), "{sql}");
        assert!(sql.contains("(@P1, @P2),\n        (@P3, @P4)"), "{sql}");
        assert!(
            sql.contains(
                "t.[Code] = CAST(k.k0 AS varchar(max)) AND t.[WorkID] = TRY_CAST(k.k1 AS int)"
            ),
            "{sql}"
        );
        assert!(key_matcher(&info, "Nope").is_none());
        // Parameters are bound in the RecordKey's (sorted) column order, as strings.
        let key = RecordKey(
            [("WorkID".to_owned(), KeyPart::Int(5))]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            key.0.values().map(ToString::to_string).collect::<Vec<_>>(),
            ["5"]
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
}
