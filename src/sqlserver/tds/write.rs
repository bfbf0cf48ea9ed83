//! Reverse-sync writes: one row of a clinic table updated, inserted or deleted, atomically, in
//! one round trip. The agent's session is marked with SESSION_CONTEXT, so the change triggers
//! queue nothing for these writes.
//!
//! The upsert is the well-trodden `IF EXISTS (... WITH (UPDLOCK, HOLDLOCK))` then UPDATE, else
//! INSERT, not MERGE: UPDLOCK makes two concurrent upserts of one key queue up instead of
//! deadlocking, HOLDLOCK (serializable) locks the key range when the row is missing so that no
//! one inserts it between the test and the INSERT.

use std::borrow::Cow;
use std::collections::HashSet;

use tiberius::numeric::Numeric;
use tiberius::{ColumnData, IntoSql, Query};

use super::catalog::{quote, ColumnInfo, TableInfo};
use super::error::SqlResult;
use super::exec::all_results;
use super::pool::TdsClient;
use crate::sqlserver::{ReverseWrite, StoreError, WriteAction, WriteOutcome};
use crate::sqlserver::{SqlType, SqlValue};

/// Collation for the "did anything change" test: binary, so that a change of case or accents
/// counts as a change even when the column's collation would call the two values equal.
const EXACT: &str = "Latin1_General_BIN2";

pub(super) async fn apply(
    client: &mut TdsClient,
    info: &TableInfo,
    write: &ReverseWrite,
) -> Result<WriteOutcome, StoreError> {
    let statement = build(info, write)?;
    let mut query = Query::new(statement.sql);
    for p in statement.params {
        query.bind(p);
    }
    // The outcome is the batch's last result set (a clinic trigger might return its own).
    let results = all_results(query, client).await?;
    let code = results
        .last()
        .and_then(|rows| rows.first())
        .map(|row| row.try_get::<i32, _>(0))
        .transpose()
        .sql()?
        .flatten();
    match code {
        Some(1) => Ok(WriteOutcome::Inserted),
        Some(2) => Ok(WriteOutcome::Updated),
        Some(3) => Ok(WriteOutcome::Unchanged),
        Some(4) => Ok(WriteOutcome::Deleted),
        Some(5) => Ok(WriteOutcome::Missing),
        Some(6) => Ok(WriteOutcome::Guarded),
        other => Err(StoreError::Rejected(format!(
            "the write returned no outcome ({other:?})"
        ))),
    }
}

/// One batch and its parameters.
#[derive(Debug)]
pub(super) struct Statement {
    pub(crate) sql: String,
    pub(crate) params: Vec<ColumnData<'static>>,
}

#[derive(Default)]
struct Params(Vec<ColumnData<'static>>);

impl Params {
    /// Binds a value that belongs to no column of the table; returns its placeholder.
    fn bind_raw(&mut self, value: ColumnData<'static>) -> String {
        self.0.push(value);
        format!("@P{}", self.0.len())
    }

    /// Binds `value` for `col` and returns its placeholder.
    fn bind(&mut self, col: &ColumnInfo, value: &SqlValue) -> Result<String, StoreError> {
        self.0
            .push(param(value, &col.source.sql_type).map_err(|why| {
                StoreError::Invalid(format!("column {}: {why}", col.source.name))
            })?);
        Ok(format!("@P{}", self.0.len()))
    }
}

/// A resolved `(column, value)` list: names checked against the catalog, no duplicates, no
/// identity or computed column (identity values are never written: no IDENTITY_INSERT).
fn resolve<'a>(
    info: &'a TableInfo,
    values: &[(String, SqlValue)],
    role: &str,
) -> Result<Vec<(&'a ColumnInfo, SqlValue)>, StoreError> {
    let mut seen = HashSet::new();
    values
        .iter()
        .map(|(name, value)| {
            let col = info.column(name)?;
            if col.decl.is_none() {
                return Err(StoreError::Invalid(format!(
                    "column {name} has a type the sync does not support"
                )));
            }
            if role != "key" && (col.source.identity || col.source.computed) {
                return Err(StoreError::Invalid(format!(
                    "column {name} is an identity or computed column"
                )));
            }
            if !seen.insert(col.source.name.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "column {name} appears twice in the {role}"
                )));
            }
            if role == "key" && *value == SqlValue::Null {
                return Err(StoreError::Invalid(format!("key column {name} is NULL")));
            }
            Ok((col, value.clone()))
        })
        .collect()
}

/// Builds the batch for `write`. Pure, so the generated T-SQL is unit-tested.
pub(super) fn build(info: &TableInfo, write: &ReverseWrite) -> Result<Statement, StoreError> {
    let key = resolve(info, &write.key, "key")?;
    if key.is_empty() {
        return Err(StoreError::Invalid(format!(
            "a write to {} has no key",
            info.name
        )));
    }
    let mut params = Params::default();
    let key_pred = key
        .iter()
        .map(|(col, v)| Ok(key_match(col, &params.bind(col, v)?)))
        .collect::<Result<Vec<_>, StoreError>>()?
        .join(" AND ");
    let table = info.quoted();
    let sql = match &write.action {
        WriteAction::Delete => format!(
            "SET NOCOUNT ON;\nSET XACT_ABORT ON;\nDELETE t FROM {table} AS t WHERE {key_pred};\n\
             SELECT CASE WHEN @@ROWCOUNT > 0 THEN 4 ELSE 5 END AS Outcome;"
        ),
        WriteAction::Upsert { insert, update } => {
            let exists = update_sql(info, update, &table, &key_pred, &mut params)?;
            let exists = guarded(info, write, &key, exists, &mut params);
            let mut insert = resolve(info, insert, "insert")?;
            // The key belongs in the new row even if the caller left it out of `insert`.
            for (col, v) in &key {
                if !insert.iter().any(|(c, _)| c.source.name == col.source.name) {
                    insert.push((col, v.clone()));
                }
            }
            let names = insert
                .iter()
                .map(|(c, _)| quote(&c.source.name))
                .collect::<Vec<_>>()
                .join(", ");
            let values = insert
                .iter()
                .map(|(c, v)| Ok(value_expr(c, &params.bind(c, v)?)))
                .collect::<Result<Vec<_>, StoreError>>()?
                .join(", ");
            let missing =
                format!("INSERT INTO {table} ({names}) VALUES ({values});\n    SET @outcome = 1;");
            upsert_sql(&table, &key_pred, &exists, &missing)
        }
        WriteAction::UpdateOnly { update } => {
            let exists = update_sql(info, update, &table, &key_pred, &mut params)?;
            let exists = guarded(info, write, &key, exists, &mut params);
            upsert_sql(&table, &key_pred, &exists, "SET @outcome = 5;")
        }
    };
    Ok(Statement {
        sql,
        params: params.0,
    })
}

/// The statements run when the row exists: an UPDATE guarded by a null-safe "differs" test
/// (`EXISTS (SELECT row EXCEPT SELECT new values)`), so an echo or a repeated webhook writes
/// nothing and fires no trigger.
fn update_sql(
    info: &TableInfo,
    update: &[(String, SqlValue)],
    table: &str,
    key_pred: &str,
    params: &mut Params,
) -> Result<String, StoreError> {
    let update = resolve(info, update, "update")?;
    if update.is_empty() {
        return Ok("SET @outcome = 3;".to_owned());
    }
    let mut sets = Vec::new();
    let mut current = Vec::new();
    let mut wanted = Vec::new();
    for (col, v) in &update {
        let value = value_expr(col, &params.bind(col, v)?);
        sets.push(format!("{} = {value}", quote(&col.source.name)));
        current.extend(compare_exprs(
            col,
            &format!("t.{}", quote(&col.source.name)),
        ));
        wanted.extend(compare_exprs(col, &value));
    }
    Ok(format!(
        "UPDATE t SET {sets}\n    FROM {table} AS t\n    WHERE {key_pred}\n      \
         AND EXISTS (SELECT {current} EXCEPT SELECT {wanted});\n    \
         SET @outcome = CASE WHEN @@ROWCOUNT = 0 THEN 3 ELSE 2 END;",
        sets = sets.join(", "),
        current = current.join(", "),
        wanted = wanted.join(", "),
    ))
}

/// The queue a guard looks at. The self-test's scratch queue never sees guarded writes.
const QUEUE: &str = "[dbo].[SyncQueue]";

/// `exists` (the statements for an existing row), run only when no `Pending` queue item of
/// this record is newer than the guard; otherwise outcome 6 (guarded). It runs after the row's
/// UPDLOCK is held, so a clinic write of the row has committed its queue item (same
/// transaction, the change trigger) before the check; READCOMMITTEDLOCK makes the check wait
/// for a writer still open instead of reading past it under READ_COMMITTED_SNAPSHOT. Keys are
/// read from RecordID with JSON_VALUE (path as a parameter, SQL Server 2017+) and compared
/// typed, never as formatted text.
fn guarded(
    info: &TableInfo,
    write: &ReverseWrite,
    key: &[(&ColumnInfo, SqlValue)],
    exists: String,
    params: &mut Params,
) -> String {
    let Some(newer_than) = write.guard else {
        return exists;
    };
    // The change trigger's spelling of the table (bare in dbo, declared case), whatever the
    // table map wrote (`dbo.tblX`, `[tblX]`): compared with it, the guard sees every item.
    let queued_as = if info.schema.eq_ignore_ascii_case("dbo") {
        info.name.clone()
    } else {
        format!("{}.{}", info.schema, info.name)
    };
    let table = params.bind_raw(ColumnData::String(Some(Cow::Owned(queued_as))));
    let at = params.bind_raw(newer_than.naive_utc().into_sql());
    let mut preds = Vec::new();
    for (col, value) in key {
        let path = format!(
            "$.\"{}\"",
            col.source.name.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let path = params.bind_raw(ColumnData::String(Some(Cow::Owned(path))));
        let decl = col.decl.as_deref().unwrap_or("nvarchar(450)");
        let value = match param(value, &col.source.sql_type) {
            Ok(v) => params.bind_raw(v),
            Err(_) => "NULL".to_owned(),
        };
        preds.push(format!(
            "TRY_CONVERT({decl}, JSON_VALUE(q.RecordID, {path})) = {value}"
        ));
    }
    format!(
        "IF EXISTS (SELECT 1 FROM {QUEUE} AS q WITH (READCOMMITTEDLOCK)\n        \
         WHERE q.TableName = {table} AND q.Status = 'Pending' AND q.CreatedAt > {at}\n          \
         AND {keys})\n        SET @outcome = 6;\n    ELSE\n    BEGIN\n    {exists}\n    END",
        keys = preds.join(" AND "),
    )
}

fn upsert_sql(table: &str, key_pred: &str, exists: &str, missing: &str) -> String {
    format!(
        "SET NOCOUNT ON;\nSET XACT_ABORT ON;\nDECLARE @outcome int;\nBEGIN TRANSACTION;\n\
         IF EXISTS (SELECT 1 FROM {table} AS t WITH (UPDLOCK, HOLDLOCK) WHERE {key_pred})\nBEGIN\n    {exists}\nEND\n\
         ELSE\nBEGIN\n    {missing}\nEND;\nCOMMIT TRANSACTION;\nSELECT @outcome AS Outcome;"
    )
}

/// A value as assigned to `col`. Text and binary parameters are assigned as they are, so that
/// a value too long for the column fails with SQL Server's truncation error (a CAST would
/// silently cut it); every other type is CAST to the declared type, which also gives a NULL or
/// a differently typed parameter the column's exact type for the comparison.
fn value_expr(col: &ColumnInfo, param: &str) -> String {
    match (&col.source.sql_type, col.decl.as_deref()) {
        (SqlType::Text { .. } | SqlType::Binary { .. }, _) | (_, None) => param.to_owned(),
        (_, Some(decl)) => format!("CAST({param} AS {decl})"),
    }
}

/// A parameter compared with a key column: as `value_expr`, except that a varchar key is
/// compared as varchar (an nvarchar parameter would convert the column and defeat its index);
/// varchar(8000) is longer than any key column can be (so a longer key is never cut down to
/// match a shorter one) and, unlike varchar(max), not a large-object type.
fn key_expr(col: &ColumnInfo, param: &str) -> String {
    match col.source.sql_type {
        SqlType::Text { unicode: false, .. } => format!("CAST({param} AS varchar(8000))"),
        _ => value_expr(col, param),
    }
}

/// `t.<key column>` is the record `param` names. The plain `=` keeps the seek on the key; for
/// text it is only a pre-filter: under a case-insensitive collation, or with trailing spaces
/// (which `=` ignores), it also matches another record's key, so the exact comparison of the
/// forward path's row loading (`rows::key_predicate`) follows it, and a portal write for `ab12`
/// never lands on the clinic's `AB12`.
fn key_match(col: &ColumnInfo, param: &str) -> String {
    let column = format!("t.{}", quote(&col.source.name));
    let seek = format!("{column} = {}", key_expr(col, param));
    let SqlType::Text { .. } = col.source.sql_type else {
        return seek;
    };
    let text = format!("CAST({column} AS nvarchar(max))");
    let exact = format!("{text} COLLATE {EXACT} = {param}");
    // A fixed-width column's value is padded to its width; the binary comparison pads too.
    if matches!(col.type_name.as_str(), "char" | "nchar") {
        format!("{seek} AND {exact}")
    } else {
        format!("{seek} AND {exact} AND DATALENGTH({text}) = DATALENGTH({param})")
    }
}

/// The expressions whose equality means "unchanged": exact (binary collation) for text, with
/// the length so that trailing spaces count; the offset for datetimeoffset, whose equality
/// alone compares only the instant.
fn compare_exprs(col: &ColumnInfo, expr: &str) -> Vec<String> {
    let fixed = matches!(col.type_name.as_str(), "char" | "nchar" | "binary");
    match col.source.sql_type {
        SqlType::Text { .. } => {
            let text = format!("CAST({expr} AS nvarchar(max))");
            let mut v = vec![format!("{text} COLLATE {EXACT}")];
            if !fixed {
                v.push(format!("DATALENGTH({text})"));
            }
            v
        }
        SqlType::Binary { .. } => {
            let bytes = format!("CAST({expr} AS varbinary(max))");
            let mut v = vec![bytes.clone()];
            if !fixed {
                v.push(format!("DATALENGTH({bytes})"));
            }
            v
        }
        SqlType::DateTimeOffset { .. } => {
            vec![expr.to_owned(), format!("DATEPART(TZOFFSET, {expr})")]
        }
        _ => vec![expr.to_owned()],
    }
}

/// A [`SqlValue`] as a tiberius parameter. A NULL gets the type family of its column, so that
/// it converts where an nvarchar NULL would not (nvarchar to varbinary is not implicit).
pub(super) fn param(value: &SqlValue, column: &SqlType) -> Result<ColumnData<'static>, String> {
    Ok(match value {
        SqlValue::Null => typed_null(column)?,
        SqlValue::Int(i) => ColumnData::I64(Some(*i)),
        SqlValue::Decimal(d) => {
            let fits =
                d.scale <= Numeric::MAX_NUMERIC_SCALE && d.units.unsigned_abs() < 10u128.pow(38);
            if !fits {
                return Err(format!("{d} has more than 38 digits"));
            }
            ColumnData::Numeric(Some(Numeric::new_with_scale(d.units, d.scale)))
        }
        SqlValue::Bit(b) => ColumnData::Bit(Some(*b)),
        SqlValue::Text(s) => ColumnData::String(Some(Cow::Owned(s.clone()))),
        SqlValue::Date(d) => d.into_sql(),
        SqlValue::DateTime(t) => t.into_sql(),
        SqlValue::DateTimeOffset(t) => t.into_sql(),
        SqlValue::Guid(g) => ColumnData::Guid(Some(*g)),
        SqlValue::Binary(b) => ColumnData::Binary(Some(Cow::Owned(b.clone()))),
        SqlValue::Float(f) => ColumnData::F64(Some(*f)),
    })
}

fn typed_null(column: &SqlType) -> Result<ColumnData<'static>, String> {
    Ok(match column {
        SqlType::Int { .. } => ColumnData::I64(None),
        SqlType::Decimal { .. } | SqlType::Money => ColumnData::Numeric(None),
        SqlType::Bit => ColumnData::Bit(None),
        SqlType::Text { .. } => ColumnData::String(None),
        SqlType::Date => ColumnData::Date(None),
        SqlType::DateTime | SqlType::DateTime2 { .. } => ColumnData::DateTime2(None),
        SqlType::DateTimeOffset { .. } => ColumnData::DateTimeOffset(None),
        SqlType::Guid => ColumnData::Guid(None),
        SqlType::Binary { .. } => ColumnData::Binary(None),
        SqlType::Float => ColumnData::F64(None),
        SqlType::Unsupported(name) => return Err(format!("type {name} is not supported")),
    })
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
