//! The table map resolved against both schemas: concrete columns with types, target
//! names and ownership, and the conversions every data path maps through (a SQL Server row to
//! PostgREST JSON, a Supabase record to typed SQL Server values, keys both ways). Built once at
//! start-up by [`super::resolve`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::drift::{Drift, Side};
use super::json::{self, ConversionError};
use super::table_map::{TableSpec, ROW_VERSION_COLUMN, SYNC_VERSIONS_COLUMN};
use crate::sqlserver::{
    same_identifier, KeyPart, RecordKey, Row, SourceColumn, SqlType, SqlValue, TableName,
};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappedColumn {
    pub(crate) source: SourceColumn,
    pub(crate) target: String,
    pub(crate) key: bool,
    pub(crate) portal_owned: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedTable {
    pub(crate) spec: TableSpec,
    /// The SQL Server table, parsed once from `spec.source`.
    pub(crate) name: TableName,
    /// `name` as the change triggers spell it in `SyncQueue.TableName` (bare in `dbo`): what the
    /// SQL Server side is asked for.
    pub(crate) source: String,
    pub(crate) target: String,
    /// Synced columns, in catalog order.
    pub(crate) columns: Vec<MappedColumn>,
    /// Supabase has the row version column (`synced_at`, `sql/supabase/04_row_versions.sql`):
    /// forward writes carry the clinic's time of each row, so a late one never wins.
    pub(crate) row_version: bool,
}

/// A problem decoding a Supabase record for this table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("column {column:?} of table {table}: {source}")]
    BadValue {
        table: String,
        column: String,
        #[source]
        source: ConversionError,
    },
    #[error("record for table {table} lacks key column {column:?}")]
    MissingKey { table: String, column: String },
}

impl ResolvedTable {
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn source_columns(&self) -> Vec<SourceColumn> {
        self.columns.iter().map(|c| c.source.clone()).collect()
    }

    pub(crate) fn key_columns(&self) -> impl Iterator<Item = &MappedColumn> {
        self.columns.iter().filter(|c| c.key)
    }

    /// The key columns as declared in SQL Server, in the map's key order (the order the
    /// trigger's `@KeyColumns` lists them in, so RecordIDs are spelled as the trigger spells
    /// them): what [`crate::sqlserver::SqlStore::queue_records`] takes.
    pub(crate) fn queue_key_columns(&self) -> Vec<String> {
        self.spec
            .keys
            .iter()
            .map(|k| {
                self.key_columns()
                    .find(|c| same_identifier(&c.source.name, k))
                    .map_or_else(|| k.clone(), |c| c.source.name.clone())
            })
            .collect()
    }

    /// Supabase key columns: the `on_conflict` target.
    pub(crate) fn on_conflict(&self) -> Vec<String> {
        self.key_columns().map(|c| c.target.clone()).collect()
    }

    pub(crate) fn has_portal_owned(&self) -> bool {
        self.columns.iter().any(|c| c.portal_owned)
    }

    pub(crate) fn by_target(&self, target: &str) -> Option<&MappedColumn> {
        self.columns.iter().find(|c| c.target == target)
    }

    /// A SQL Server row as the PostgREST JSON object for the target table.
    pub(crate) fn row_to_json(&self, row: &Row) -> Map<String, Value> {
        self.columns
            .iter()
            .map(|c| {
                let value = row.get(&c.source.name).map_or(Value::Null, json::to_json);
                (c.target.clone(), value)
            })
            .collect()
    }

    /// `row` as a forward write sends it: with the clinic's time `at` of its change in the row
    /// version column when Supabase has one (RFC 3339 UTC, at the microseconds PostgreSQL
    /// keeps, so that every write of one change carries the same version).
    pub(crate) fn with_row_version(
        &self,
        mut row: Map<String, Value>,
        at: DateTime<Utc>,
    ) -> Map<String, Value> {
        if self.row_version {
            let version = at.to_rfc3339_opts(SecondsFormat::Micros, true);
            row.insert(ROW_VERSION_COLUMN.to_owned(), Value::String(version));
        }
        row
    }

    /// The key of a SQL Server row, as the queue writes it.
    pub(crate) fn key_of_row(&self, row: &Row) -> Option<RecordKey> {
        self.key_columns()
            .map(|c| {
                let part = match row.get(&c.source.name)? {
                    SqlValue::Int(i) => KeyPart::Int(*i),
                    SqlValue::Text(s) => KeyPart::Text(s.clone()),
                    SqlValue::Guid(g) => KeyPart::Text(g.hyphenated().to_string().to_uppercase()),
                    _ => return None,
                };
                Some((c.source.name.clone(), part))
            })
            .collect::<Option<_>>()
            .map(RecordKey)
    }

    /// `key` with its columns named as declared (a trigger installed with another case writes
    /// `{"personid":1}`) and GUID parts in SQL Server's spelling (upper case, as `FOR JSON`
    /// writes them), so that two queue items of one record always coalesce and match the
    /// loaded row.
    pub(crate) fn canonical_key(&self, key: &RecordKey) -> RecordKey {
        let mut key = key.with_declared_names(self.key_columns().map(|c| c.source.name.as_str()));
        for col in self
            .key_columns()
            .filter(|c| c.source.sql_type == SqlType::Guid)
        {
            if let Some(KeyPart::Text(t)) = key.0.get_mut(&col.source.name) {
                *t = t.to_uppercase();
            }
        }
        key
    }

    /// `(target column, JSON value)` pairs identifying a record in Supabase, if the key names
    /// exactly this table's key columns.
    pub(crate) fn key_filter(&self, key: &RecordKey) -> Option<Vec<(String, Value)>> {
        if key.0.len() != self.key_columns().count() {
            return None;
        }
        self.key_columns()
            .map(|c| {
                let value = match key.get(&c.source.name)? {
                    KeyPart::Int(i) => Value::from(*i),
                    KeyPart::Text(s) => Value::String(s.clone()),
                };
                Some((c.target.clone(), value))
            })
            .collect()
    }

    /// The canonical key of a Supabase record (sorted Supabase key columns as JSON), if it has
    /// one: how both directions name a record in the agent's own state.
    pub(crate) fn record_key(&self, record: &Map<String, Value>) -> Option<String> {
        let key: std::collections::BTreeMap<&str, Value> = self
            .key_columns()
            .map(|c| {
                let v = record.get(&c.target)?;
                // Supabase renders uuids in lower case; normalise them so that case never
                // splits a record. Other text keys are kept as they are.
                let v = match v {
                    Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => {
                        Value::String(s.to_lowercase())
                    }
                    Value::Null => return None,
                    other => other.clone(),
                };
                Some((c.target.as_str(), v))
            })
            .collect::<Option<_>>()?;
        serde_json::to_string(&key).ok()
    }

    /// The columns of a Supabase record the map does not know (added in Supabase after the
    /// map was written): schema drift, ignored by [`Self::decode_record`]. Columns the map
    /// expects in Supabase only (the version column, `ignore_columns`) are not drift.
    pub(crate) fn unknown_columns<'a>(
        &'a self,
        record: &'a Map<String, Value>,
    ) -> impl Iterator<Item = Drift> + 'a {
        let reverse = self.spec.reverse.as_ref();
        let by_design = move |name: &String| {
            name == SYNC_VERSIONS_COLUMN
                || name == ROW_VERSION_COLUMN
                || reverse
                    .is_some_and(|r| &r.version_column == name || r.ignore_columns.contains(name))
        };
        record
            .keys()
            .filter(move |name| self.by_target(name).is_none() && !by_design(name))
            .map(|name| Drift {
                table: self.target.clone(),
                source_table: self.spec.source.clone(),
                column: name.clone(),
                only_in: Side::Supabase,
            })
    }

    /// Decodes a Supabase record (webhook or PostgREST read) into typed source values, refusing
    /// values the SQL Server column cannot hold exactly. Columns the map does not know are
    /// left out ([`Self::unknown_columns`] lists them): a column added in Supabase must never
    /// stop the known ones from syncing.
    pub(crate) fn decode_record(
        &self,
        record: &Map<String, Value>,
    ) -> Result<Vec<(&MappedColumn, SqlValue)>, DecodeError> {
        let mut out = Vec::with_capacity(record.len());
        for col in &self.columns {
            let Some(value) = record.get(&col.target) else {
                continue;
            };
            let v = json::from_json(value, &col.source.sql_type).map_err(|source| {
                DecodeError::BadValue {
                    table: self.target.clone(),
                    column: col.target.clone(),
                    source,
                }
            })?;
            out.push((col, v));
        }
        if let Some(missing) = self
            .key_columns()
            .find(|k| !out.iter().any(|(c, _)| c.target == k.target))
        {
            return Err(DecodeError::MissingKey {
                table: self.target.clone(),
                column: missing.target.clone(),
            });
        }
        Ok(out)
    }
}

/// The whole resolved map, in parent-before-child order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedMap {
    pub(crate) tables: Vec<ResolvedTable>,
    /// Columns that exist on one side only, left out of `tables`.
    pub(crate) drift: Vec<Drift>,
}

impl ResolvedMap {
    /// The table a queue item's `TableName` (or any other spelling) names.
    pub(crate) fn by_source(&self, source: &str) -> Option<&ResolvedTable> {
        self.position(source).map(|i| &self.tables[i])
    }

    pub(crate) fn by_target(&self, target: &str) -> Option<&ResolvedTable> {
        self.tables.iter().find(|t| t.target == target)
    }

    /// Position in parent-before-child order.
    pub(crate) fn order_of(&self, source: &str) -> usize {
        self.position(source).unwrap_or(usize::MAX)
    }

    fn position(&self, source: &str) -> Option<usize> {
        let name = TableName::parse(source).ok()?;
        self.tables.iter().position(|t| t.name.same_as(&name))
    }
}
