//! Resolving the table map against SQL Server's catalog and, when known, Supabase's schema:
//! every table and named column must exist in SQL Server, keys must be of a type the queue can
//! identify rows by, and every synced column of a type syncbridge converts (every problem is
//! reported at once, typed); a column one side has and the other lacks is drift, not a problem.

use std::fmt;

use std::collections::BTreeMap;

use super::drift::{Drift, Side};
use super::resolved::{MappedColumn, ResolvedMap, ResolvedTable};
use super::table_map::{
    TableMap, TableSpec, DEFAULT_VERSION_COLUMN, ROW_VERSION_COLUMN, SYNC_VERSIONS_COLUMN,
};
use crate::sqlserver::{DescribedTables, SourceColumn, SqlType, TableName};
use crate::supabase::TargetSchema;

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
        Self::resolve_against(map, described, None)
    }

    /// Resolves `map` against both schemas: SQL Server's catalog (`described`) and, when known,
    /// Supabase's (`target`). A column that exists on one side only is left out and listed in
    /// [`ResolvedMap::drift`], never an error: it is not synced, and everything else is.
    pub(crate) fn resolve_against(
        map: &TableMap,
        described: &DescribedTables,
        target: Option<&TargetSchema>,
    ) -> Result<Self, ResolveError> {
        let mut problems = Vec::new();
        let mut tables = Vec::new();
        let mut drift = Vec::new();
        for spec in &map.tables {
            let name = spec.source_name();
            let Some(columns) = described.columns(&name) else {
                problems.push(MapProblem::MissingTable {
                    table: spec.source.clone(),
                });
                continue;
            };
            let sides = Sides {
                source: columns,
                target: target.and_then(|t| t.columns(&spec.target_table())),
            };
            tables.push(resolve_table(spec, name, &sides, &mut problems, &mut drift));
        }
        if problems.is_empty() {
            Ok(Self { tables, drift })
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

/// One table's columns on both sides; `target` is `None` while Supabase's schema is unknown
/// (then every SQL Server column is taken to exist there too).
struct Sides<'a> {
    source: &'a [SourceColumn],
    target: Option<&'a BTreeMap<String, String>>,
}

/// Supabase columns the map expects there only: the version column (every table carries
/// `updated_at`), the per-column versions (`sync_versions`), the row version (`synced_at`) and
/// the reverse side's `ignore_columns`.
fn supabase_only_by_design(spec: &TableSpec) -> Vec<String> {
    let mut columns = match &spec.reverse {
        Some(r) => std::iter::once(r.version_column.clone())
            .chain(r.ignore_columns.iter().cloned())
            .collect(),
        None => vec![DEFAULT_VERSION_COLUMN.to_owned()],
    };
    columns.push(SYNC_VERSIONS_COLUMN.to_owned());
    columns.push(ROW_VERSION_COLUMN.to_owned());
    columns
}

fn resolve_table(
    spec: &TableSpec,
    name: TableName,
    sides: &Sides<'_>,
    problems: &mut Vec<MapProblem>,
    drift: &mut Vec<Drift>,
) -> ResolvedTable {
    let columns = sides.source;
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
    let target = spec.target_table();
    let mut mapped = Vec::new();
    for col in columns {
        let is = |list: &[String]| list.iter().any(|n| n.eq_ignore_ascii_case(&col.name));
        if is(&spec.exclude) || col.computed && !is(&spec.keys) {
            continue;
        }
        let target_column = spec.target_column(&col.name);
        // A key missing in Supabase is a configuration fault PostgREST will report; any other
        // column Supabase lacks is drift: left out, whatever its type.
        if !is(&spec.keys)
            && sides
                .target
                .is_some_and(|t| !t.contains_key(&target_column))
        {
            drift.push(Drift {
                table: target.clone(),
                source_table: spec.source.clone(),
                column: col.name.clone(),
                only_in: Side::SqlServer,
            });
            continue;
        }
        if let Some(problem) = type_problem(spec, col, is(&spec.keys)) {
            problems.push(problem);
            continue;
        }
        mapped.push(MappedColumn {
            target: target_column,
            key: is(&spec.keys),
            portal_owned: is(&spec.portal_owned),
            source: col.clone(),
        });
    }
    if let Some(target_columns) = sides.target {
        drift.extend(supabase_only(spec, columns, target_columns));
    }
    // Only when Supabase is known to have it (an unknown schema sends what the agent always
    // sent), and never over a synced column of that name.
    let row_version = sides
        .target
        .is_some_and(|t| t.contains_key(ROW_VERSION_COLUMN))
        && !mapped.iter().any(|c| c.target == ROW_VERSION_COLUMN);
    ResolvedTable {
        source: name.to_string(),
        name,
        target,
        spec: spec.clone(),
        columns: mapped,
        row_version,
    }
}

/// The Supabase columns no SQL Server column maps to (excluded ones count as mapped: leaving
/// them out was the map's choice), but for those expected there only.
fn supabase_only(
    spec: &TableSpec,
    columns: &[SourceColumn],
    target_columns: &BTreeMap<String, String>,
) -> Vec<Drift> {
    let known: Vec<String> = columns
        .iter()
        .map(|c| spec.target_column(&c.name))
        .chain(supabase_only_by_design(spec))
        .collect();
    target_columns
        .keys()
        .filter(|c| !known.contains(c))
        .map(|c| Drift {
            table: spec.target_table(),
            source_table: spec.source.clone(),
            column: c.clone(),
            only_in: Side::Supabase,
        })
        .collect()
}

/// Why `col` cannot be synced as its type stands, if it cannot.
fn type_problem(spec: &TableSpec, col: &SourceColumn, key: bool) -> Option<MapProblem> {
    let key_type_ok = matches!(
        col.sql_type,
        SqlType::Int { .. } | SqlType::Text { .. } | SqlType::Guid
    );
    if key && !key_type_ok {
        return Some(MapProblem::UnsupportedKey {
            table: spec.source.clone(),
            column: col.name.clone(),
            sql_type: col.sql_type.clone(),
        });
    }
    match &col.sql_type {
        SqlType::Unsupported(ty) => Some(MapProblem::UnsupportedType {
            table: spec.source.clone(),
            column: col.name.clone(),
            type_name: ty.clone(),
        }),
        _ => None,
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

    fn supabase(columns: &[&str]) -> TargetSchema {
        let properties: serde_json::Map<String, serde_json::Value> = columns
            .iter()
            .map(|c| ((*c).to_owned(), serde_json::json!({"format": "integer"})))
            .collect();
        TargetSchema::from_openapi(
            &serde_json::json!({"definitions": {"x": {"properties": properties}}}),
        )
    }

    #[test]
    fn columns_on_one_side_only_are_left_out_and_reported() {
        let sql = described(Some(vec![
            col("ID", SqlType::Int { bits: 32 }),
            col("Kept", SqlType::Int { bits: 32 }),
            col("NewInSql", SqlType::Int { bits: 32 }),
            // An unconvertible type is no problem while Supabase does not have the column.
            col("Shape", SqlType::Unsupported("geography".into())),
        ]));
        let target = supabase(&["id", "kept", "new_in_supabase", "updated_at"]);
        let resolved =
            ResolvedMap::resolve_against(&map(&["ID"]), &sql, Some(&target)).expect("resolves");
        let synced: Vec<&str> = resolved.tables[0]
            .columns
            .iter()
            .map(|c| c.target.as_str())
            .collect();
        assert_eq!(synced, ["id", "kept"]);
        let drift: Vec<(String, Side)> = resolved
            .drift
            .iter()
            .map(|d| (d.column.clone(), d.only_in))
            .collect();
        assert_eq!(
            drift,
            [
                ("NewInSql".to_owned(), Side::SqlServer),
                ("Shape".to_owned(), Side::SqlServer),
                ("new_in_supabase".to_owned(), Side::Supabase),
            ],
            "updated_at is Supabase-only by design"
        );
        // Without Supabase's schema every SQL Server column is taken to exist there.
        let err = ResolvedMap::resolve_against(&map(&["ID"]), &sql, None).expect_err("geography");
        assert!(err.to_string().contains("Shape"), "{err}");
        // A key Supabase lacks stays mapped: PostgREST's answer will say what is wrong.
        let keyless = supabase(&["kept"]);
        let resolved = ResolvedMap::resolve_against(
            &map(&["ID"]),
            &described(Some(vec![
                col("ID", SqlType::Int { bits: 32 }),
                col("Kept", SqlType::Int { bits: 32 }),
            ])),
            Some(&keyless),
        )
        .expect("resolves");
        assert_eq!(resolved.tables[0].columns.len(), 2);
    }

    #[test]
    fn the_row_version_is_sent_only_where_supabase_has_it_and_is_no_drift() {
        let sql = described(Some(vec![col("ID", SqlType::Int { bits: 32 })]));
        let at = chrono::DateTime::from_timestamp_micros(1_767_261_600_123_456).expect("time");
        let row = |target: &TargetSchema| {
            let resolved =
                ResolvedMap::resolve_against(&map(&["ID"]), &sql, Some(target)).expect("resolves");
            assert!(resolved.drift.is_empty(), "{:?}", resolved.drift);
            resolved.tables[0].with_row_version(serde_json::Map::new(), at)
        };
        assert_eq!(
            row(&supabase(&["id", "updated_at", "synced_at"])),
            serde_json::json!({"synced_at": "2026-01-01T10:00:00.123456Z"})
                .as_object()
                .cloned()
                .expect("object")
        );
        assert!(row(&supabase(&["id", "updated_at"])).is_empty());
    }

    #[test]
    fn every_spelling_of_the_source_finds_the_described_table() {
        let cols = Some(vec![col("ID", SqlType::Int { bits: 32 })]);
        for spelling in ["tblX", "dbo.tblX", "[dbo].[tblX]", "DBO.\"tblX\""] {
            let mut m = map(&["ID"]);
            m.tables[0].source = spelling.to_owned();
            let resolved = ResolvedMap::resolve(&m, &described(cols.clone())).expect(spelling);
            let table = &resolved.tables[0];
            assert_eq!((table.source(), table.target.as_str()), ("tblX", "x"));
            for queued in ["tblX", "TBLX", "dbo.tblX"] {
                assert!(
                    resolved.by_source(queued).is_some(),
                    "{spelling} / {queued}"
                );
            }
            assert!(resolved.by_source("sales.tblX").is_none());
        }
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
