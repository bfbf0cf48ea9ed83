//! The table map as the user writes it: built-in for the sample clinic schema, or a TOML file
//! (`SYNC_TABLE_MAP`) that replaces it. Names follow a convention (`tblAlignerBatches` →
//! `aligner_batches`, `PersonID` → `person_id`) unless overridden per column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use heck::ToSnakeCase;
use serde::Deserialize;

use crate::sqlserver::TableName;

/// Tables in parent-before-child order: forward upserts run in this order and deletes in the
/// reverse, so foreign keys hold in Supabase.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMap {
    #[serde(rename = "table")]
    pub tables: Vec<TableSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// SQL Server table, `dbo` unless schema-qualified.
    pub source: String,
    /// Supabase table; by default the snake_case of `source` without a `tbl` prefix.
    #[serde(default)]
    pub target: Option<String>,
    /// Source key columns: the row identity on both sides and the `on_conflict` target.
    pub keys: Vec<String>,
    /// Source columns never synced.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Source column → Supabase column, where the convention does not fit.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Source columns the portal owns: set by the clinic when it creates a row, afterwards only
    /// the portal changes them (forward sync never overwrites them on update).
    #[serde(default)]
    pub portal_owned: Vec<String>,
    /// Present when Supabase changes to this table flow back into SQL Server.
    #[serde(default)]
    pub reverse: Option<ReverseSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseSpec {
    /// A portal INSERT creates the row in SQL Server (with every mapped column it carries).
    #[serde(default)]
    pub insert: bool,
    /// A portal UPDATE writes the portal-owned columns that changed.
    #[serde(default = "yes")]
    pub update: bool,
    /// A portal DELETE deletes the SQL Server row.
    #[serde(default)]
    pub delete: bool,
    /// The Supabase column that orders versions of a row (an older event never overwrites a
    /// newer one).
    #[serde(default = "updated_at")]
    pub version_column: String,
    /// Supabase-only columns that webhooks may carry and that are ignored (not an error).
    #[serde(default)]
    pub ignore_columns: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The Supabase column every table carries (`sql/supabase/01_schema.sql`): when a row last
/// changed, which catch-up pages by and which orders versions by default.
pub(crate) const DEFAULT_VERSION_COLUMN: &str = "updated_at";

/// The Supabase column holding the per-column versions of a table's portal-owned columns
/// (`sql/supabase/03_versions.sql`): Supabase-only by design, never synced as a column.
pub(crate) const SYNC_VERSIONS_COLUMN: &str = "sync_versions";

/// The Supabase column holding the clinic's version of a row (`sql/supabase/04_row_versions.sql`):
/// the time of the clinic change a forward write carries. Supabase skips a write older than the
/// row's, so a write the agent gave up on never overwrites a newer one. Supabase-only by design.
pub(crate) const ROW_VERSION_COLUMN: &str = "synced_at";

fn updated_at() -> String {
    DEFAULT_VERSION_COLUMN.to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum TableMapError {
    #[error("cannot read table map {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("table map {path} is not valid: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("table map is not consistent: {0}")]
    Invalid(String),
}

/// `tblAlignerBatches` → `aligner_batches`; `dbo.tblWork` and `[dbo].[tblWork]` → `work`.
pub(crate) fn default_target_table(source: &str) -> String {
    let parsed = source_name(source);
    let name = parsed.name.as_str();
    let name = name
        .strip_prefix("tbl")
        .filter(|rest| rest.starts_with(char::is_uppercase))
        .unwrap_or(name);
    name.to_snake_case()
}

/// `source` parsed once into (schema, table); a name that does not parse (refused by
/// [`TableMap::validate`]) is taken whole as a `dbo` table.
fn source_name(source: &str) -> TableName {
    TableName::parse(source).unwrap_or_else(|_| TableName {
        schema: "dbo".to_owned(),
        name: source.to_owned(),
    })
}

/// `PersonID` → `person_id`, `NoteUID` → `note_uid`, `DateOfBirth` → `date_of_birth`.
pub(crate) fn default_target_column(source: &str) -> String {
    source.to_snake_case()
}

impl TableSpec {
    /// The SQL Server table, however `source` spells it.
    pub(crate) fn source_name(&self) -> TableName {
        source_name(&self.source)
    }

    pub(crate) fn target_table(&self) -> String {
        self.target
            .clone()
            .unwrap_or_else(|| default_target_table(&self.source))
    }

    pub(crate) fn target_column(&self, source: &str) -> String {
        self.rename
            .get(source)
            .cloned()
            .unwrap_or_else(|| default_target_column(source))
    }
}

impl TableMap {
    /// The SQL Server tables of the map, parents first.
    pub(crate) fn sources(&self) -> impl Iterator<Item = TableName> + '_ {
        self.tables.iter().map(TableSpec::source_name)
    }

    pub fn load(path: &Path) -> Result<Self, TableMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| TableMapError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let map: Self = toml::from_str(&text).map_err(|source| TableMapError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        map.validate()?;
        Ok(map)
    }

    /// Structural checks that need no database: names unique, keys present and not excluded.
    pub(crate) fn validate(&self) -> Result<(), TableMapError> {
        let mut sources: Vec<TableName> = Vec::new();
        let mut targets = BTreeSet::new();
        for t in &self.tables {
            let bad =
                |why: String| Err(TableMapError::Invalid(format!("table {}: {why}", t.source)));
            let name = match TableName::parse(&t.source) {
                Ok(name) => name,
                Err(e) => return bad(e.to_string()),
            };
            // `tblX`, `dbo.tblX` and `[dbo].[TBLX]` are one table.
            if sources.iter().any(|s| s.same_as(&name)) {
                return bad("listed twice".into());
            }
            sources.push(name);
            if !targets.insert(t.target_table()) {
                return bad(format!("target {} used twice", t.target_table()));
            }
            if t.keys.is_empty() {
                return bad("keys must name at least one column".into());
            }
            if let Some(k) = t
                .keys
                .iter()
                .find(|k| t.exclude.contains(k) || t.portal_owned.contains(k))
            {
                return bad(format!("key column {k} cannot be excluded or portal-owned"));
            }
            if let Some(c) = t.portal_owned.iter().find(|c| t.exclude.contains(c)) {
                return bad(format!(
                    "column {c} cannot be both excluded and portal-owned"
                ));
            }
            if t.reverse
                .as_ref()
                .is_some_and(|r| r.update && t.portal_owned.is_empty())
            {
                return bad("reverse updates need at least one portal_owned column".into());
            }
        }
        Ok(())
    }

    /// The map for the sample clinic schema in `sql/sqlserver/01_sample_schema.sql`.
    pub fn sample_clinic() -> Self {
        let table = |source: &str, key: &str| TableSpec {
            source: source.to_owned(),
            target: None,
            keys: vec![key.to_owned()],
            exclude: Vec::new(),
            rename: BTreeMap::new(),
            portal_owned: Vec::new(),
            reverse: None,
        };
        let reverse = |insert: bool| ReverseSpec {
            insert,
            update: true,
            delete: false,
            version_column: updated_at(),
            ignore_columns: Vec::new(),
        };
        let batches = TableSpec {
            portal_owned: vec!["Days".to_owned()],
            reverse: Some(reverse(false)),
            ..table("tblAlignerBatches", "AlignerBatchID")
        };
        let notes = TableSpec {
            // NoteID is the clinic's local identity; NoteUID identifies a note on both sides.
            exclude: vec!["NoteID".to_owned()],
            portal_owned: ["NoteText", "IsEdited", "EditedAt"]
                .map(String::from)
                .to_vec(),
            reverse: Some(reverse(true)),
            ..table("tblAlignerNotes", "NoteUID")
        };
        Self {
            tables: vec![
                table("tblPatients", "PersonID"),
                table("tblWork", "WorkID"),
                table("tblAlignerSets", "AlignerSetID"),
                batches,
                notes,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_convention() {
        assert_eq!(default_target_table("tblAlignerBatches"), "aligner_batches");
        assert_eq!(default_target_table("dbo.tblWork"), "work");
        assert_eq!(default_target_table("tblPatients"), "patients");
        assert_eq!(default_target_table("tblitems"), "tblitems");
        assert_eq!(default_target_table("[dbo].[tblWork]"), "work");
        assert_eq!(default_target_table("\"sales\".\"tblOrders\""), "orders");
        assert_eq!(default_target_column("PersonID"), "person_id");
        assert_eq!(default_target_column("NoteUID"), "note_uid");
        assert_eq!(default_target_column("DateOfBirth"), "date_of_birth");
        assert_eq!(default_target_column("AlignerBatchID"), "aligner_batch_id");
        assert_eq!(default_target_column("PatientGUID"), "patient_guid");
    }

    #[test]
    fn sample_map_is_valid_and_parent_first() {
        let map = TableMap::sample_clinic();
        map.validate().expect("valid");
        let order: Vec<_> = map.tables.iter().map(TableSpec::target_table).collect();
        assert_eq!(
            order,
            [
                "patients",
                "work",
                "aligner_sets",
                "aligner_batches",
                "aligner_notes"
            ]
        );
    }

    #[test]
    fn toml_overrides_and_validation() {
        let text = r#"
            [[table]]
            source = "tblPatients"
            target = "clinic_patients"
            keys = ["PersonID"]
            exclude = ["Photo"]
            rename = { Phone = "phone_number" }
        "#;
        let map: TableMap = toml::from_str(text).expect("parses");
        map.validate().expect("valid");
        let t = &map.tables[0];
        assert_eq!(t.target_table(), "clinic_patients");
        assert_eq!(t.target_column("Phone"), "phone_number");
        assert_eq!(t.target_column("PatientName"), "patient_name");

        let dup = TableMap {
            tables: vec![t.clone(), t.clone()],
        };
        assert!(dup.validate().is_err());
        for spelling in ["dbo.tblPatients", "[dbo].[TBLPATIENTS]"] {
            let mut other = t.clone();
            other.source = spelling.to_owned();
            other.target = Some("elsewhere".to_owned());
            let dup = TableMap {
                tables: vec![t.clone(), other],
            };
            let err = dup.validate().expect_err(spelling).to_string();
            assert!(err.contains("listed twice"), "{spelling}: {err}");
        }
        let unparsable = TableMap {
            tables: vec![TableSpec {
                source: "a.b.c".to_owned(),
                ..t.clone()
            }],
        };
        assert!(unparsable.validate().is_err());
        let no_key = TableMap {
            tables: vec![TableSpec {
                keys: vec![],
                ..t.clone()
            }],
        };
        assert!(no_key.validate().is_err());
        assert!(toml::from_str::<TableMap>("[[table]]\nsource='x'\nkeys=['a']\nbogus=1").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_example_file_equals_the_built_in_map() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/table-map.toml"
        ));
        let mut loaded = TableMap::load(path).expect("example map loads");
        for t in &mut loaded.tables {
            // The example spells out defaults the built-in map leaves implicit.
            if t.target.as_deref() == Some(default_target_table(&t.source).as_str()) {
                t.target = None;
            }
        }
        assert_eq!(loaded, TableMap::sample_clinic());
    }
}

#[cfg(test)]
#[path = "table_map_props.rs"]
mod props;
