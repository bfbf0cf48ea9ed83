//! What SQL Server's catalog says about a table: its canonical name and columns with their
//! declared types. Everything syncbridge interpolates into a statement (a table or column name,
//! a type for a CAST) comes from here, so no name the agent was merely told is ever spliced
//! into SQL; values always travel as parameters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tiberius::Query;

use super::error::SqlResult;
use super::exec::all_results;
use super::pool::TdsClient;
use crate::sqlserver::SqlType;
use crate::sqlserver::{same_identifier, SourceColumn, StoreError, TableName};

/// A table (or view) as the catalog names and types it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TableInfo {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ColumnInfo {
    pub(crate) source: SourceColumn,
    /// The base system type (`nvarchar` for `sysname`, `int` for an alias of int), lower case.
    pub(crate) type_name: String,
    /// The declared type as T-SQL, for CASTs; `None` when the sync does not support the type.
    pub(crate) decl: Option<String>,
}

impl TableInfo {
    /// `[schema].[name]`, safe to splice into a statement.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    /// The column called `name`: exact match first, then the single case-insensitive match
    /// (SQL Server names usually compare case-insensitively: [`same_identifier`]).
    pub(crate) fn column(&self, name: &str) -> Result<&ColumnInfo, StoreError> {
        if let Some(c) = self.columns.iter().find(|c| c.source.name == name) {
            return Ok(c);
        }
        let mut folded = self
            .columns
            .iter()
            .filter(|c| same_identifier(&c.source.name, name));
        match (folded.next(), folded.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(StoreError::Invalid(format!(
                "{}.{} has no column {name:?}",
                self.schema, self.name
            ))),
        }
    }

    pub(crate) fn source_columns(&self) -> Vec<SourceColumn> {
        self.columns.iter().map(|c| c.source.clone()).collect()
    }
}

/// `[name]` with `]` doubled, as QUOTENAME does.
pub(super) fn quote(identifier: &str) -> String {
    format!("[{}]", identifier.replace(']', "]]"))
}

/// `table`, `schema.table`, `[schema].[table]` or `"schema"."table"` as (schema, table), the
/// schema `dbo` by default ([`TableName::parse`]).
pub(super) fn parse_table_name(input: &str) -> Result<(String, String), StoreError> {
    TableName::parse(input)
        .map(|t| (t.schema, t.name))
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// The sync's view of a column type, and its T-SQL declaration.
pub(super) fn column_type(
    type_name: &str,
    max_length: i16,
    precision: u8,
    scale: u8,
) -> (SqlType, Option<String>) {
    let len = |unit: i16| (max_length > 0).then(|| u32::from((max_length / unit).unsigned_abs()));
    let sized = |name: &str, n: Option<u32>| match n {
        Some(n) => format!("{name}({n})"),
        None => format!("{name}(max)"),
    };
    // Fixed-length types have no `(max)`; a length the catalog did not give is T-SQL's default, 1.
    let fixed = |name: &str, n: Option<u32>| format!("{name}({})", n.unwrap_or(1));
    let t = type_name.to_ascii_lowercase();
    let (ty, decl) = match t.as_str() {
        "tinyint" => (SqlType::Int { bits: 8 }, t.clone()),
        "smallint" => (SqlType::Int { bits: 16 }, t.clone()),
        "int" => (SqlType::Int { bits: 32 }, t.clone()),
        "bigint" => (SqlType::Int { bits: 64 }, t.clone()),
        "decimal" | "numeric" => (
            SqlType::Decimal { precision, scale },
            format!("decimal({precision},{scale})"),
        ),
        "money" | "smallmoney" => (SqlType::Money, t.clone()),
        "bit" => (SqlType::Bit, t.clone()),
        "char" | "varchar" | "nchar" | "nvarchar" => {
            // max_length is in bytes: two per character for the Unicode (n-) types.
            let unicode = t.starts_with('n');
            let n = len(if unicode { 2 } else { 1 });
            let decl = if t.ends_with("varchar") {
                sized(&t, n)
            } else {
                fixed(&t, n)
            };
            (
                SqlType::Text {
                    unicode,
                    max_chars: n,
                },
                decl,
            )
        }
        "text" => (
            SqlType::Text {
                unicode: false,
                max_chars: None,
            },
            "varchar(max)".to_owned(),
        ),
        "ntext" => (
            SqlType::Text {
                unicode: true,
                max_chars: None,
            },
            "nvarchar(max)".to_owned(),
        ),
        "date" => (SqlType::Date, t.clone()),
        "datetime" | "smalldatetime" => (SqlType::DateTime, t.clone()),
        "datetime2" => (SqlType::DateTime2 { scale }, format!("datetime2({scale})")),
        "datetimeoffset" => (
            SqlType::DateTimeOffset { scale },
            format!("datetimeoffset({scale})"),
        ),
        "uniqueidentifier" => (SqlType::Guid, t.clone()),
        "binary" => {
            let n = len(1);
            (SqlType::Binary { max_bytes: n }, fixed("binary", n))
        }
        "varbinary" => {
            let n = len(1);
            (SqlType::Binary { max_bytes: n }, sized("varbinary", n))
        }
        "image" => (
            SqlType::Binary { max_bytes: None },
            "varbinary(max)".to_owned(),
        ),
        "real" | "float" => (SqlType::Float, t.clone()),
        // time, xml, sql_variant, rowversion (timestamp), hierarchyid, geography, geometry, ...
        _ => return (SqlType::Unsupported(t), None),
    };
    (ty, Some(decl))
}

/// The table's names and columns. The object is found the way the engine resolves a name
/// (OBJECT_ID over QUOTENAME'd parts: the database's collation decides case), and every name
/// the agent will use is read from INFORMATION_SCHEMA, which reports names as declared on every
/// engine (some fold the sys.* views' names), with OBJECT_NAME/COL_NAME as a fallback; types,
/// lengths and flags come from sys.columns, which INFORMATION_SCHEMA does not describe fully.
/// Columns are joined by id (COLUMNPROPERTY resolves each reported name to its column_id), never
/// by comparing names as text.
pub(super) const DESCRIBE_SQL: &str = "\
SET NOCOUNT ON;
DECLARE @id int = OBJECT_ID(QUOTENAME(@P1) + N'.' + QUOTENAME(@P2));
IF OBJECTPROPERTY(@id, 'IsTable') = 0 AND OBJECTPROPERTY(@id, 'IsView') = 0
    SET @id = NULL;
SELECT COALESCE(t.TABLE_SCHEMA, OBJECT_SCHEMA_NAME(o.id)) AS SchemaName,
       COALESCE(t.TABLE_NAME, OBJECT_NAME(o.id)) AS TableName
FROM (SELECT @id AS id) AS o
LEFT JOIN INFORMATION_SCHEMA.TABLES AS t
    ON t.TABLE_SCHEMA = OBJECT_SCHEMA_NAME(o.id) AND t.TABLE_NAME = OBJECT_NAME(o.id)
   AND OBJECT_ID(QUOTENAME(t.TABLE_SCHEMA) + N'.' + QUOTENAME(t.TABLE_NAME)) = o.id
WHERE o.id IS NOT NULL;
-- A user-defined type (and sysname) resolves to its base type through system_type_id; CLR
-- types (system_type_id 240) have no base row and keep their own name.
SELECT COALESCE(ic.COLUMN_NAME, COL_NAME(c.object_id, c.column_id)) AS ColumnName,
       COALESCE(bt.name, TYPE_NAME(c.user_type_id)) AS TypeName,
       c.max_length AS MaxLength,
       c.precision AS NumericPrecision,
       c.scale AS NumericScale,
       c.is_nullable AS IsNullable,
       c.is_identity AS IsIdentity,
       c.is_computed AS IsComputed
FROM sys.columns AS c
LEFT JOIN INFORMATION_SCHEMA.COLUMNS AS ic
    ON ic.TABLE_SCHEMA = OBJECT_SCHEMA_NAME(@id) AND ic.TABLE_NAME = OBJECT_NAME(@id)
   AND COLUMNPROPERTY(@id, ic.COLUMN_NAME, 'ColumnId') = c.column_id
LEFT JOIN sys.types AS bt ON bt.user_type_id = c.system_type_id AND bt.is_user_defined = 0
WHERE c.object_id = @id
ORDER BY c.column_id;";

/// Reads the catalog: `None` when no table or view of that name exists (or the login may not
/// see it).
pub(super) async fn describe(
    client: &mut TdsClient,
    table: &str,
) -> Result<Option<TableInfo>, StoreError> {
    let (schema, name) = parse_table_name(table)?;
    let mut query = Query::new(DESCRIBE_SQL);
    query.bind(schema);
    query.bind(name);
    let results = all_results(query, client).await?;
    let mut sets = results.into_iter();
    let Some(found) = sets.next().and_then(|rows| rows.into_iter().next()) else {
        return Ok(None);
    };
    let text = |row: &tiberius::Row, i: usize| -> Result<String, StoreError> {
        row.try_get::<&str, _>(i)
            .sql()?
            .map(str::to_owned)
            .ok_or_else(|| {
                StoreError::Rejected(format!("the catalog returned no value in column {i}"))
            })
    };
    let mut info = TableInfo {
        schema: text(&found, 0)?,
        name: text(&found, 1)?,
        columns: Vec::new(),
    };
    for row in sets.next().unwrap_or_default() {
        let type_name = text(&row, 1)?;
        let max_length = row.try_get::<i16, _>(2).sql()?.unwrap_or(0);
        let precision = row.try_get::<u8, _>(3).sql()?.unwrap_or(0);
        let scale = row.try_get::<u8, _>(4).sql()?.unwrap_or(0);
        let (sql_type, decl) = column_type(&type_name, max_length, precision, scale);
        info.columns.push(ColumnInfo {
            source: SourceColumn {
                name: text(&row, 0)?,
                sql_type,
                nullable: row.try_get::<bool, _>(5).sql()?.unwrap_or(true),
                identity: row.try_get::<bool, _>(6).sql()?.unwrap_or(false),
                computed: row.try_get::<bool, _>(7).sql()?.unwrap_or(false),
            },
            type_name: type_name.to_ascii_lowercase(),
            decl,
        });
    }
    Ok(Some(info))
}

/// Table descriptions by requested name, so that `load_rows` and `apply` validate names
/// without a catalog round trip each time. `describe_table` always refreshes; an entry is
/// dropped after a rejected statement in case the table changed underneath.
#[derive(Default)]
pub(super) struct TableCache {
    tables: Mutex<HashMap<String, Arc<TableInfo>>>,
}

impl TableCache {
    fn key(table: &str) -> String {
        table.trim().to_lowercase()
    }

    pub(crate) fn get(&self, table: &str) -> Option<Arc<TableInfo>> {
        self.lock().get(&Self::key(table)).cloned()
    }

    pub(crate) fn put(&self, table: &str, info: TableInfo) -> Arc<TableInfo> {
        let info = Arc::new(info);
        self.lock().insert(Self::key(table), Arc::clone(&info));
        info
    }

    pub(crate) fn forget(&self, table: &str) {
        self.lock().remove(&Self::key(table));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TableInfo>>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
