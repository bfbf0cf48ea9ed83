//! The table map resolved against SQL Server's catalog: concrete columns with types, target
//! names and ownership. Built once at startup; everything downstream maps through it.

use serde_json::{Map, Value};

use super::table_map::{TableMap, TableSpec};
use super::value::{ConversionError, SqlType, SqlValue};
use crate::sqlserver::{KeyPart, RecordKey, Row, SourceColumn};

#[derive(Debug, Clone, PartialEq)]
pub struct MappedColumn {
    pub source: SourceColumn,
    pub target: String,
    pub key: bool,
    pub portal_owned: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTable {
    pub spec: TableSpec,
    pub target: String,
    /// Synced columns, in catalog order.
    pub columns: Vec<MappedColumn>,
}

/// A problem decoding a Supabase record for this table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown column {column:?} for table {table}")]
    UnknownColumn { table: String, column: String },
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
    pub fn source(&self) -> &str {
        &self.spec.source
    }

    pub fn source_columns(&self) -> Vec<SourceColumn> {
        self.columns.iter().map(|c| c.source.clone()).collect()
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &MappedColumn> {
        self.columns.iter().filter(|c| c.key)
    }

    /// Supabase key columns: the `on_conflict` target.
    pub fn on_conflict(&self) -> Vec<String> {
        self.key_columns().map(|c| c.target.clone()).collect()
    }

    pub fn has_portal_owned(&self) -> bool {
        self.columns.iter().any(|c| c.portal_owned)
    }

    /// Supabase columns a forward update may write: everything but portal-owned columns.
    pub fn clinic_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| !c.portal_owned)
            .map(|c| c.target.clone())
            .collect()
    }

    pub fn by_target(&self, target: &str) -> Option<&MappedColumn> {
        self.columns.iter().find(|c| c.target == target)
    }

    /// A SQL Server row as the PostgREST JSON object for the target table.
    pub fn row_to_json(&self, row: &Row) -> Map<String, Value> {
        self.columns
            .iter()
            .map(|c| {
                let value = row
                    .get(&c.source.name)
                    .map_or(Value::Null, SqlValue::to_json);
                (c.target.clone(), value)
            })
            .collect()
    }

    /// The key of a SQL Server row, as the queue writes it.
    pub fn key_of_row(&self, row: &Row) -> Option<RecordKey> {
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
    pub fn canonical_key(&self, key: &RecordKey) -> RecordKey {
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
    pub fn key_filter(&self, key: &RecordKey) -> Option<Vec<(String, Value)>> {
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

    /// Decodes a Supabase record (webhook or PostgREST read) into typed source values, refusing
    /// unknown columns and values the SQL Server column cannot hold exactly.
    pub fn decode_record(
        &self,
        record: &Map<String, Value>,
    ) -> Result<Vec<(&MappedColumn, SqlValue)>, DecodeError> {
        let reverse = self.spec.reverse.as_ref();
        let ignored = |name: &String| {
            reverse.is_some_and(|r| &r.version_column == name || r.ignore_columns.contains(name))
        };
        if let Some(unknown) = record
            .keys()
            .find(|name| self.by_target(name).is_none() && !ignored(name))
        {
            return Err(DecodeError::UnknownColumn {
                table: self.target.clone(),
                column: unknown.clone(),
            });
        }
        let mut out = Vec::with_capacity(record.len());
        for col in &self.columns {
            let Some(value) = record.get(&col.target) else {
                continue;
            };
            let v = SqlValue::from_json(value, &col.source.sql_type).map_err(|source| {
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
pub struct ResolvedMap {
    pub tables: Vec<ResolvedTable>,
}

impl ResolvedMap {
    /// Resolves `map` against described source tables (`describe(source)` as returned by the
    /// SQL Server catalog). Every problem is reported, one per line.
    pub fn resolve(
        map: &TableMap,
        described: &[(String, Option<Vec<SourceColumn>>)],
    ) -> Result<Self, String> {
        let mut problems = Vec::new();
        let mut tables = Vec::new();
        for spec in &map.tables {
            let columns = described
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&spec.source))
                .and_then(|(_, cols)| cols.as_ref());
            let Some(columns) = columns else {
                problems.push(format!("SQL Server table {} does not exist", spec.source));
                continue;
            };
            let has = |name: &str| columns.iter().any(|c| c.name.eq_ignore_ascii_case(name));
            let named = spec
                .keys
                .iter()
                .chain(&spec.exclude)
                .chain(&spec.portal_owned)
                .chain(spec.rename.keys());
            for name in named.filter(|n| !has(n)) {
                problems.push(format!("{}: column {name} does not exist", spec.source));
            }
            let mut mapped = Vec::new();
            for col in columns {
                let is = |list: &[String]| list.iter().any(|n| n.eq_ignore_ascii_case(&col.name));
                if is(&spec.exclude) || col.computed && !is(&spec.keys) {
                    continue;
                }
                let key_type_ok = matches!(
                    col.sql_type,
                    SqlType::Int { .. } | SqlType::Text { .. } | SqlType::Guid
                );
                if is(&spec.keys) && !key_type_ok {
                    // The queue identifies rows by integer, text or GUID keys; any other key
                    // type could not be matched back to its row (and a miss reads as a delete).
                    problems.push(format!(
                        "{}.{} is a key of type {:?}; keys must be integer, (n)char/(n)varchar or uniqueidentifier",
                        spec.source, col.name, col.sql_type
                    ));
                    continue;
                }
                if let SqlType::Unsupported(ty) = &col.sql_type {
                    problems.push(format!(
                        "{}.{} has type {ty}, which syncbridge does not convert; exclude it",
                        spec.source, col.name
                    ));
                    continue;
                }
                mapped.push(MappedColumn {
                    target: spec.target_column(&col.name),
                    key: is(&spec.keys),
                    portal_owned: is(&spec.portal_owned),
                    source: col.clone(),
                });
            }
            tables.push(ResolvedTable {
                target: spec.target_table(),
                spec: spec.clone(),
                columns: mapped,
            });
        }
        if problems.is_empty() {
            Ok(Self { tables })
        } else {
            Err(problems.join("\n"))
        }
    }

    pub fn by_source(&self, source: &str) -> Option<&ResolvedTable> {
        self.tables
            .iter()
            .find(|t| t.spec.source.eq_ignore_ascii_case(source))
    }

    pub fn by_target(&self, target: &str) -> Option<&ResolvedTable> {
        self.tables.iter().find(|t| t.target == target)
    }

    /// Position in parent-before-child order.
    pub fn order_of(&self, source: &str) -> usize {
        self.tables
            .iter()
            .position(|t| t.spec.source.eq_ignore_ascii_case(source))
            .unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::TableMap;

    fn col(name: &str, sql_type: SqlType) -> SourceColumn {
        SourceColumn {
            name: name.to_owned(),
            sql_type,
            nullable: false,
            identity: false,
            computed: false,
        }
    }

    fn map(keys: &[&str]) -> TableMap {
        let keys = keys
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        toml::from_str(&format!("[[table]]\nsource = \"tblX\"\nkeys = [{keys}]")).expect("map")
    }

    #[test]
    fn keys_must_be_integer_text_or_guid() {
        let decimal = vec![(
            "tblX".to_owned(),
            Some(vec![col(
                "ID",
                SqlType::Decimal {
                    precision: 18,
                    scale: 0,
                },
            )]),
        )];
        let err = ResolvedMap::resolve(&map(&["ID"]), &decimal).expect_err("decimal key refused");
        assert!(err.contains("tblX.ID is a key"), "{err}");
        let guid = vec![(
            "tblX".to_owned(),
            Some(vec![col("ID", SqlType::Guid), col("V", SqlType::Bit)]),
        )];
        let resolved = ResolvedMap::resolve(&map(&["ID"]), &guid).expect("guid key");
        let table = resolved.by_source("tblx").expect("case-insensitive lookup");
        let lower =
            RecordKey::parse(r#"{"ID":"6f9619ff-8b86-d011-b42d-00c04fc964ff"}"#).expect("key");
        assert_eq!(
            table.canonical_key(&lower).to_json(),
            r#"{"ID":"6F9619FF-8B86-D011-B42D-00C04FC964FF"}"#
        );
        // A trigger installed with the key spelled in another case names it that way.
        let folded =
            RecordKey::parse(r#"{"id":"6f9619ff-8b86-d011-b42d-00c04fc964ff"}"#).expect("key");
        let canonical = table.canonical_key(&folded);
        assert_eq!(
            canonical.to_json(),
            r#"{"ID":"6F9619FF-8B86-D011-B42D-00C04FC964FF"}"#
        );
        assert!(table.key_filter(&canonical).is_some());
    }

    #[test]
    fn missing_tables_and_columns_are_all_reported() {
        let described = vec![(
            "tblX".to_owned(),
            Some(vec![col("ID", SqlType::Int { bits: 32 })]),
        )];
        let mut m = map(&["ID", "Nope"]);
        m.tables[0].exclude = vec!["Gone".to_owned()];
        let err = ResolvedMap::resolve(&m, &described).expect_err("bad map");
        assert!(
            err.contains("column Nope does not exist")
                && err.contains("column Gone does not exist"),
            "{err}"
        );
        let err = ResolvedMap::resolve(&map(&["ID"]), &[("tblX".to_owned(), None)])
            .expect_err("no table");
        assert!(err.contains("tblX does not exist"), "{err}");
    }
}
