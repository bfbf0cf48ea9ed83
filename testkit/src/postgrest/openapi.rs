//! `GET /rest/v1/`: the OpenAPI 2.0 description PostgREST serves at its root (after v12's
//! Response/OpenAPI.hs), reduced to what clients read from it: one definition per table with each
//! column's JSON type, PostgreSQL type name as `format`, default, key notes, and `required`
//! listing every NOT NULL column (PostgREST does not exempt columns that have a default).

use axum::http::Method;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::handler::ApiRequest;
use super::reply::Reply;
use super::schema::{load_all, Column, Table};
use super::ServerState;

const MEDIA_TYPES: [&str; 4] = [
    "application/json",
    "application/vnd.pgrst.object+json;nulls=stripped",
    "application/vnd.pgrst.object+json",
    "text/csv",
];

pub(crate) async fn document(state: &ServerState, request: &ApiRequest) -> Result<Reply, ApiError> {
    let client = state
        .pool
        .get()
        .await
        .map_err(|err| ApiError::from_db(&err, true))?;
    let tables = load_all(&*client)
        .await
        .map_err(|err| ApiError::from_db(&err, true))?;
    let host = request
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let mut paths = Map::new();
    paths.insert(
        "/".to_owned(),
        json!({"get": {"produces": ["application/openapi+json", "application/json"],
                        "responses": {"200": {"description": "OK"}},
                        "summary": "OpenAPI description (this document)",
                        "tags": ["Introspection"]}}),
    );
    let mut definitions = Map::new();
    for table in &tables {
        paths.insert(format!("/{}", table.name), table_path(table));
        definitions.insert(table.name.clone(), definition(table));
    }
    let document = json!({
        "swagger": "2.0",
        "info": {"description": "", "title": "standard public schema", "version": "12.2.3"},
        "host": host,
        "basePath": "/",
        "schemes": ["http"],
        "consumes": MEDIA_TYPES,
        "produces": MEDIA_TYPES,
        "paths": paths,
        "definitions": definitions,
    });
    let mut reply = Reply::empty(200)
        .header(
            axum::http::header::CONTENT_TYPE,
            "application/openapi+json; charset=utf-8",
        )
        .with_body(document.to_string());
    if request.method == Method::HEAD {
        reply.body = None;
    }
    Ok(reply)
}

fn table_path(table: &Table) -> Value {
    let ok = json!({"200": {"description": "OK"}});
    json!({
        "get": {"tags": [table.name], "responses": ok},
        "post": {"tags": [table.name], "responses": {"201": {"description": "Created"}}},
        "patch": {"tags": [table.name], "responses": {"204": {"description": "No Content"}}},
        "delete": {"tags": [table.name], "responses": {"204": {"description": "No Content"}}},
    })
}

fn definition(table: &Table) -> Value {
    let mut properties = Map::new();
    for column in &table.columns {
        let is_key = table.primary_key.contains(&column.name);
        properties.insert(column.name.clone(), property(column, is_key));
    }
    let required: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| c.not_null)
        .map(|c| c.name.as_str())
        .collect();
    json!({"required": required, "properties": properties, "type": "object"})
}

fn property(column: &Column, is_primary_key: bool) -> Value {
    let mut property = Map::new();
    if let Some(default) = column
        .default
        .as_deref()
        .and_then(|d| default_value(&column.type_name, d))
    {
        property.insert("default".to_owned(), default);
    }
    let mut notes = vec!["Note:".to_owned()];
    if is_primary_key {
        notes.push("This is a Primary Key.<pk/>".to_owned());
    }
    if let Some((table, target)) = &column.references {
        notes.push(format!(
            "This is a Foreign Key to `{table}.{target}`.<fk table='{table}' column='{target}'/>"
        ));
    }
    if notes.len() > 1 {
        property.insert("description".to_owned(), Value::String(notes.join("\n")));
    }
    property.insert("format".to_owned(), Value::String(column.type_name.clone()));
    if let Some(kind) = swagger_type(&column.type_name) {
        property.insert("type".to_owned(), Value::String(kind.to_owned()));
        if kind == "array" {
            let element = column.type_name.trim_end_matches("[]");
            property.insert("items".to_owned(), json!({"type": swagger_type(element)}));
        }
    }
    Value::Object(property)
}

/// PostgREST's toSwaggerType; json and jsonb carry no type.
fn swagger_type(type_name: &str) -> Option<&'static str> {
    match type_name {
        "character varying" | "character" | "text" => Some("string"),
        "boolean" => Some("boolean"),
        "smallint" | "integer" | "bigint" => Some("integer"),
        "numeric" | "real" | "double precision" => Some("number"),
        "json" | "jsonb" => None,
        other if other.ends_with("[]") => Some("array"),
        _ => Some("string"),
    }
}

/// PostgREST's parseDefault: for string-typed columns `'IQD'::text` becomes `"IQD"` and an
/// expression such as `gen_random_uuid()` is kept as text; for other types the expression must
/// itself be JSON (`true`, `0`) or the default is left out.
fn default_value(type_name: &str, expression: &str) -> Option<Value> {
    if swagger_type(type_name) == Some("string") {
        let literal = expression
            .strip_suffix(&format!("::{type_name}"))
            .map(|d| d.trim_matches('\''));
        Some(Value::String(literal.unwrap_or(expression).to_owned()))
    } else {
        serde_json::from_str(expression).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_defaults() {
        assert_eq!(swagger_type("timestamp with time zone"), Some("string"));
        assert_eq!(swagger_type("numeric"), Some("number"));
        assert_eq!(swagger_type("integer[]"), Some("array"));
        assert_eq!(swagger_type("jsonb"), None);
        assert_eq!(default_value("text", "'IQD'::text"), Some(json!("IQD")));
        assert_eq!(default_value("boolean", "true"), Some(json!(true)));
        assert_eq!(default_value("integer", "0"), Some(json!(0)));
        assert_eq!(default_value("integer", "nextval('x_seq'::regclass)"), None);
        assert_eq!(
            default_value("uuid", "gen_random_uuid()"),
            Some(json!("gen_random_uuid()"))
        );
    }
}
