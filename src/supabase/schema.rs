//! Supabase's tables and columns as PostgREST describes them (its OpenAPI document,
//! `definitions.<table>.properties.<column>.format`), read once into [`TargetSchema`]: what the
//! table map is resolved against on this side, what `check` compares types with, and what the
//! agent caches so that a start with Supabase unreachable still knows it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Table → column → PostgreSQL type (OpenAPI `format`, e.g. `timestamp with time zone`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSchema {
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

impl TargetSchema {
    /// Reads PostgREST's OpenAPI document; anything that is not a table definition with
    /// properties is left out (a column without `format` gets an empty type).
    pub fn from_openapi(document: &Value) -> Self {
        let tables = document
            .get("definitions")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(table, definition)| {
                let properties = definition.get("properties")?.as_object()?;
                let columns = properties
                    .iter()
                    .map(|(column, p)| {
                        let format = p.get("format").and_then(Value::as_str).unwrap_or("");
                        (column.clone(), format.to_owned())
                    })
                    .collect();
                Some((table.clone(), columns))
            })
            .collect();
        Self { tables }
    }

    /// The columns of `table` (column → type), if Supabase exposes it.
    pub fn columns(&self, table: &str) -> Option<&BTreeMap<String, String>> {
        self.tables.get(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_tables_and_column_types_from_the_openapi_document() {
        let doc = json!({"swagger": "2.0", "definitions": {
            "patients": {"properties": {"person_id": {"format": "integer", "type": "integer"},
                                         "notes": {"type": "string"}}},
            "broken": {"type": "object"}
        }});
        let schema = TargetSchema::from_openapi(&doc);
        let patients = schema.columns("patients").expect("patients");
        assert_eq!(patients["person_id"], "integer");
        assert_eq!(patients["notes"], "");
        assert!(schema.columns("broken").is_none());
        assert!(TargetSchema::from_openapi(&json!({}))
            .columns("patients")
            .is_none());
    }
}
