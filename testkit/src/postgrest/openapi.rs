//! `GET /rest/v1/`: the OpenAPI 2.0 document PostgREST serves at its root (Response/OpenAPI.hs),
//! reduced to what clients read from it: one definition per table and view, each column with
//! its PostgreSQL type name as `format` and its JSON `type`, and `required` listing every
//! NOT NULL column (PostgREST does not exempt columns that have a default). Paths, defaults and
//! key descriptions are left out.

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::reply::Reply;
use super::schema::{load_tables, Table};
use super::ServerState;

pub(crate) async fn document(state: &ServerState) -> Result<Reply, ApiError> {
    let client = state
        .pool
        .get()
        .await
        .map_err(|err| ApiError::from_db(&err, true))?;
    let tables = load_tables(&*client, None)
        .await
        .map_err(|err| ApiError::from_db(&err, true))?;
    let definitions: Map<String, Value> = tables
        .iter()
        .map(|table| (table.name.clone(), definition(table)))
        .collect();
    let document = json!({
        "swagger": "2.0",
        "info": {"description": "", "title": "standard public schema", "version": "12.2.3"},
        "definitions": definitions,
    });
    let content_type = "application/openapi+json; charset=utf-8";
    Ok(Reply::with_type(200, content_type, document.to_string()))
}

fn definition(table: &Table) -> Value {
    let mut properties = Map::new();
    for column in &table.columns {
        let mut property = json!({"format": column.type_name});
        if let Some(kind) = swagger_type(&column.type_name) {
            property["type"] = json!(kind);
        }
        properties.insert(column.name.clone(), property);
    }
    let required: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| c.not_null)
        .map(|c| c.name.as_str())
        .collect();
    json!({"required": required, "properties": properties, "type": "object"})
}

/// PostgREST's toSwaggerType; json and jsonb carry no type.
fn swagger_type(type_name: &str) -> Option<&'static str> {
    match type_name {
        "boolean" => Some("boolean"),
        "smallint" | "integer" | "bigint" => Some("integer"),
        "numeric" | "real" | "double precision" => Some("number"),
        "json" | "jsonb" => None,
        other if other.ends_with("[]") => Some("array"),
        _ => Some("string"),
    }
}
