//! Resolving the table map against SQL Server's catalog: every table and named column must
//! exist, keys must be of a type the queue can identify rows by, and every synced column of a
//! type syncbridge converts. Every problem is reported at once, typed.

use std::fmt;

use super::resolved::{MappedColumn, ResolvedMap, ResolvedTable};
use super::table_map::{TableMap, TableSpec};
use crate::sqlserver::{DescribedTables, SourceColumn, SqlType};

/// One way the table map does not match SQL Server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MapProblem {
    #[error("SQL Server table {table} does not exist")]
    MissingTable { table: String },
    #[error("{table}: column {column} does not exist")]
    MissingColumn { table: String, column: String },
    /// The queue identifies rows by integer, text or GUID keys; any other key type could not be
    /// matched back to its row (and a miss reads as a delete).
    #[error("{table}.{column} is a key of type {sql_type:?}; keys must be integer, (n)char/(n)varchar or uniqueidentifier")]
    UnsupportedKey {
        table: String,
        column: String,
        sql_type: SqlType,
    },
    #[error(
        "{table}.{column} has type {type_name}, which syncbridge does not convert; exclude it"
    )]
    UnsupportedType {
        table: String,
        column: String,
        type_name: String,
    },
}

/// Every problem found, in map order; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct ResolveError(pub(crate) Vec<MapProblem>);

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl ResolvedMap {
    /// Resolves `map` against the described source tables, reporting every problem.
    pub(crate) fn resolve(
        map: &TableMap,
        described: &DescribedTables,
    ) -> Result<Self, ResolveError> {
        let mut problems = Vec::new();
        let mut tables = Vec::new();
        for spec in &map.tables {
            match described.columns(&spec.source) {
                Some(columns) => tables.push(resolve_table(spec, columns, &mut problems)),
                None => problems.push(MapProblem::MissingTable {
                    table: spec.source.clone(),
                }),
            }
        }
        if problems.is_empty() {
            Ok(Self { tables })
        } else {
            Err(ResolveError(problems))
        }
    }
}

#[cfg(test)]
impl ResolvedMap {
    /// The sample clinic map resolved against the SQL Server double's sample schema.
    pub(crate) async fn sample_clinic() -> Self {
        let store = crate::sqlserver::memory::MemoryStore::sample_clinic();
        let map = TableMap::sample_clinic();
        let described = DescribedTables::read(&store, map.sources())
            .await
            .expect("the double describes its tables");
        Self::resolve(&map, &described).expect("the sample map resolves")
    }
}

fn resolve_table(
    spec: &TableSpec,
    columns: &[SourceColumn],
    problems: &mut Vec<MapProblem>,
) -> ResolvedTable {
    let has = |name: &str| columns.iter().any(|c| c.name.eq_ignore_ascii_case(name));
    let named = spec
        .keys
        .iter()
        .chain(&spec.exclude)
        .chain(&spec.portal_owned)
        .chain(spec.rename.keys());
    for name in named.filter(|n| !has(n)) {
        problems.push(MapProblem::MissingColumn {
            table: spec.source.clone(),
            column: name.clone(),
        });
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
            problems.push(MapProblem::UnsupportedKey {
                table: spec.source.clone(),
                column: col.name.clone(),
                sql_type: col.sql_type.clone(),
            });
            continue;
        }
        if let SqlType::Unsupported(ty) = &col.sql_type {
            problems.push(MapProblem::UnsupportedType {
                table: spec.source.clone(),
                column: col.name.clone(),
                type_name: ty.clone(),
            });
            continue;
        }
        mapped.push(MappedColumn {
            target: spec.target_column(&col.name),
            key: is(&spec.keys),
            portal_owned: is(&spec.portal_owned),
            source: col.clone(),
        });
    }
    ResolvedTable {
        target: spec.target_table(),
        spec: spec.clone(),
        columns: mapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlserver::RecordKey;

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

    fn described(columns: Option<Vec<SourceColumn>>) -> DescribedTables {
        DescribedTables(vec![("tblX".to_owned(), columns)])
    }

    #[test]
    fn keys_must_be_integer_text_or_guid() {
        let decimal = described(Some(vec![col(
            "ID",
            SqlType::Decimal {
                precision: 18,
                scale: 0,
            },
        )]));
        let err = ResolvedMap::resolve(&map(&["ID"]), &decimal).expect_err("decimal key refused");
        assert!(err.to_string().contains("tblX.ID is a key"), "{err}");
        let guid = described(Some(vec![col("ID", SqlType::Guid), col("V", SqlType::Bit)]));
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
        let mut m = map(&["ID", "Nope"]);
        m.tables[0].exclude = vec!["Gone".to_owned()];
        let err = ResolvedMap::resolve(
            &m,
            &described(Some(vec![col("ID", SqlType::Int { bits: 32 })])),
        )
        .expect_err("bad map");
        assert_eq!(
            err.to_string(),
            "tblX: column Nope does not exist\ntblX: column Gone does not exist"
        );
        let err = ResolvedMap::resolve(&map(&["ID"]), &described(None)).expect_err("no table");
        assert_eq!(
            err.0,
            [MapProblem::MissingTable {
                table: "tblX".to_owned()
            }]
        );
    }
}
