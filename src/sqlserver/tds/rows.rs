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
use crate::sqlserver::{KeyPart, RecordKey, Row, SourceColumn, StoreError};

/// Parameters per statement: SQL Server accepts 2100 per request (sp_executesql's own two
/// included); the rest is headroom.
const MAX_PARAMS: usize = 2000;
/// Binary comparison for text keys: `=` under the column's collation also matches a key in
/// another case (CI) or with other trailing spaces (every collation pads), which to Supabase is
/// another record.
const EXACT: &str = "Latin1_General_BIN2";

/// Loads the rows of `info` whose keys are in `keys`, selecting `columns` (named as the caller
/// names them). One statement per chunk of keys (chunks only when the parameters would not fit
/// in one request): the keys arrive as a VALUES table of parameters typed as the key columns
/// are (int as int, uniqueidentifier as uniqueidentifier, text in the column's own family), so
/// the join compares the key column with a value of its own type and the engine can seek the
/// key; nothing is converted on the column side and nothing is cast per row. A key value that
/// cannot be of the column's type ("abc" for an int key) identifies no row and is dropped here.
/// Text keys must also match exactly: a RecordID of `abc` does not load the row `ABC`.
/// (Not OPENJSON: it needs database compatibility level 130, and clinic databases restored
/// from older servers often run at 100-120.)
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
    for (names, keys) in by_columns {
        // A RecordID naming columns the table does not have identifies no row: those keys are
        // simply absent from the result, like any other missing row.
        let Some(key_columns) = names
            .iter()
            .map(|k| key_column(info, k))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let bound: Vec<Vec<ColumnData<'static>>> = keys
            .iter()
            .filter_map(|k| bind_key(&key_columns, k))
            .collect();
        let per_chunk = (MAX_PARAMS / key_columns.len()).max(1);
        for chunk in bound.chunks(per_chunk) {
            let slots = bucket(chunk.len(), per_chunk);
            let mut query = Query::new(select_sql(info, &selected, &key_columns, slots));
            for param in chunk.iter().flatten() {
                query.bind(param.clone());
            }
            for _ in chunk.len()..slots {
                for (_, kind) in &key_columns {
                    query.bind(kind.null());
                }
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
pub(super) fn select_expr(col: &ColumnInfo) -> Result<String, StoreError> {
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

/// How a key column's values are bound: as a parameter of the column's own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Guid,
    /// nchar/nvarchar: bound as tiberius binds text, nvarchar.
    UnicodeText,
    /// char/varchar: bound as nvarchar (tiberius sends no varchar) and converted once per key
    /// to varchar(8000) (longer than any key column, and not a LOB type) in the VALUES table,
    /// so the column is compared in its own family and not converted to nvarchar per row.
    Text,
}

impl KeyKind {
    /// The parameter for `part`, or `None` when no row of this column can have that value.
    pub(super) fn param(self, part: &KeyPart) -> Option<ColumnData<'static>> {
        let int = || match part {
            KeyPart::Int(i) => Some(*i),
            KeyPart::Text(t) => t.parse::<i64>().ok(),
        };
        Some(match self {
            Self::TinyInt => ColumnData::U8(Some(u8::try_from(int()?).ok()?)),
            Self::SmallInt => ColumnData::I16(Some(i16::try_from(int()?).ok()?)),
            Self::Int => ColumnData::I32(Some(i32::try_from(int()?).ok()?)),
            Self::BigInt => ColumnData::I64(Some(int()?)),
            Self::Guid => match part {
                KeyPart::Text(t) => ColumnData::Guid(Some(t.trim().parse().ok()?)),
                KeyPart::Int(_) => return None,
            },
            Self::UnicodeText | Self::Text => ColumnData::String(Some(part.to_string().into())),
        })
    }

    /// A NULL of the same parameter type, for the unused slots of a statement.
    pub(super) fn null(self) -> ColumnData<'static> {
        match self {
            Self::TinyInt => ColumnData::U8(None),
            Self::SmallInt => ColumnData::I16(None),
            Self::Int => ColumnData::I32(None),
            Self::BigInt => ColumnData::I64(None),
            Self::Guid => ColumnData::Guid(None),
            Self::UnicodeText | Self::Text => ColumnData::String(None),
        }
    }
}

/// The key column called `name` and how it is bound, or `None` if the table has no such
/// column or the sync cannot key on its type (the table map refuses such keys at start-up).
pub(super) fn key_column<'a>(info: &'a TableInfo, name: &str) -> Option<(&'a ColumnInfo, KeyKind)> {
    let col = info.column(name).ok()?;
    let kind = match (&col.source.sql_type, col.type_name.as_str()) {
        (SqlType::Int { bits: 8 }, _) => KeyKind::TinyInt,
        (SqlType::Int { bits: 16 }, _) => KeyKind::SmallInt,
        (SqlType::Int { bits: 32 }, _) => KeyKind::Int,
        (SqlType::Int { .. }, _) => KeyKind::BigInt,
        (SqlType::Guid, _) => KeyKind::Guid,
        (SqlType::Text { .. }, "text" | "ntext") => return None,
        (SqlType::Text { unicode: true, .. }, _) => KeyKind::UnicodeText,
        (SqlType::Text { unicode: false, .. }, _) => KeyKind::Text,
        _ => return None,
    };
    Some((col, kind))
}

/// The key's parameters in key-column order, or `None` if one part cannot be of its column's
/// type. `key_columns` is in the key's own (sorted) column order.
fn bind_key(
    key_columns: &[(&ColumnInfo, KeyKind)],
    key: &RecordKey,
) -> Option<Vec<ColumnData<'static>>> {
    key.0
        .values()
        .zip(key_columns)
        .map(|(part, (_, kind))| kind.param(part))
        .collect()
}

/// The load statement for `slots` keys: a VALUES table of typed parameters joined to the key
/// columns, each key column compared with a value of its own type, text keys exactly.
pub(super) fn select_sql(
    info: &TableInfo,
    selected: &[(String, String)],
    key_columns: &[(&ColumnInfo, KeyKind)],
    slots: usize,
) -> String {
    let list = selected
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| format!("{expr} AS [c{i}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let width = key_columns.len();
    let values = (0..slots)
        .map(|row| {
            let cells = key_columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| {
                    let p = format!("@P{}", row * width + i + 1);
                    match kind {
                        // The converted value to seek with, and the parameter as sent, for the
                        // exact comparison.
                        KeyKind::Text => format!("CAST({p} AS varchar(8000)), {p}"),
                        _ => p,
                    }
                })
                .collect::<Vec<_>>();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(",\n    ");
    let names = key_columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| match kind {
            KeyKind::Text => format!("k{i}, r{i}"),
            _ => format!("k{i}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let join = key_columns
        .iter()
        .enumerate()
        .map(|(i, (col, kind))| key_predicate(&quote(&col.source.name), i, *kind))
        .collect::<Vec<_>>()
        .join("\n   AND ");
    format!(
        "SELECT {list}\nFROM (VALUES\n    {values}\n) AS k ({names})\nJOIN {table} AS t\n    ON {join};",
        table = info.quoted(),
    )
}

/// `t.column = k.k{i}`, and for text the exact check: the same characters under a binary
/// collation and the same length (DATALENGTH, since `=` pads trailing spaces even under BIN2).
fn key_predicate(column: &str, i: usize, kind: KeyKind) -> String {
    let seek = format!("t.{column} = k.k{i}");
    match kind {
        KeyKind::UnicodeText => format!(
            "{seek} AND t.{column} COLLATE {EXACT} = k.k{i} AND DATALENGTH(t.{column}) = DATALENGTH(k.k{i})"
        ),
        KeyKind::Text => {
            let text = format!("CAST(t.{column} AS nvarchar(max))");
            format!(
                "{seek} AND {text} COLLATE {EXACT} = k.r{i} AND DATALENGTH({text}) = DATALENGTH(k.r{i})"
            )
        }
        _ => seek,
    }
}

pub(super) fn decode_row(
    row: &tiberius::Row,
    selected: &[(String, String)],
) -> Result<Row, StoreError> {
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
