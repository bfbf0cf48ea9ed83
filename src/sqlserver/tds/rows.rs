//! Reading rows for the forward path: `load_rows` selects the current values of changed records
//! by key, and [`column_value`] turns what tiberius decoded into a [`SqlValue`] without losing a
//! digit, a tick or a byte.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use tiberius::{ColumnData, FromSql, Query};

use super::catalog::{quote, ColumnInfo, TableInfo};
use super::error::SqlResult;
use super::exec::first_result;
use super::pool::TdsClient;
use crate::sqlserver::{Decimal, SqlType, SqlValue};
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
            let found = first_result(query, client).await?;
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
#[path = "rows_tests.rs"]
mod tests;
