//! POST (insert and upsert), PATCH and DELETE on a table, with PostgREST v12's statuses,
//! `Prefer: return=...` bodies and headers, payload checks (PGRST102, PGRST204), and Supabase's
//! pg-safeupdate refusing UPDATE and DELETE without a filter.

use std::collections::BTreeSet;

use axum::http::{header, HeaderName};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::handler::Context;
use super::reply::{content_range, Reply, Representation};
use super::schema::Table;
use super::sql::{self, InsertPlan, Resolution};

fn preference_applied() -> HeaderName {
    HeaderName::from_static("preference-applied")
}

pub(crate) async fn create(context: &Context<'_>) -> Result<Reply, ApiError> {
    let payload = parse_body(&context.request.body)?;
    let (objects, is_array) = match &payload {
        Value::Object(object) => (vec![object], false),
        Value::Array(items) => {
            let objects: Option<Vec<&Map<String, Value>>> =
                items.iter().map(Value::as_object).collect();
            (
                objects.ok_or_else(|| ApiError::invalid_body("All object keys must match"))?,
                true,
            )
        }
        _ => return Err(ApiError::invalid_body("Empty or invalid json")),
    };
    let columns = match &context.query.columns {
        Some(columns) => dedupe(columns),
        None => uniform_keys(&objects)?,
    };

    let mut client = context.connection().await?;
    let (transaction, table) = context.begin(&mut client, false).await?;
    check_columns(&table, &columns)?;
    let on_conflict = context.query.on_conflict.as_ref();
    let conflict_keys = on_conflict.unwrap_or(&table.primary_key);
    let (body, inserted) = if objects.is_empty() {
        ("[]".to_owned(), 0)
    } else {
        let plan = InsertPlan {
            columns: &columns,
            body: std::str::from_utf8(&context.request.body).unwrap_or_default(),
            body_is_array: is_array,
            conflict: context
                .prefer
                .resolution
                .map(|r| (r, conflict_keys.as_slice())),
        };
        let statement = sql::insert(&table, &plan, context.query.select.as_deref())?;
        let row = context.run(&transaction, &statement).await?;
        (row.get::<_, String>(0), row.get::<_, i64>(2))
    };
    context.commit(transaction).await?;

    // PostgREST v12: an upsert that inserted nothing (only merged) answers 200, all else 201.
    let merged_only = context.prefer.resolution == Some(Resolution::Merge) && inserted == 0;
    let status = if merged_only { 200 } else { 201 };
    // Resolution is reported only when there was a key to resolve conflicts on.
    let resolution_applied = !table.primary_key.is_empty() || on_conflict.is_some();
    let reply = with_body(status, &context.prefer.representation, body.clone())
        .header(header::CONTENT_RANGE, "*/*")
        .maybe_header(
            preference_applied(),
            context.prefer.applied(resolution_applied, true, false),
        );
    Ok(match context.prefer.representation {
        Some(Representation::HeadersOnly) => {
            reply.maybe_header(header::LOCATION, location(&table, &body))
        }
        _ => reply,
    })
}

pub(crate) async fn update(context: &Context<'_>) -> Result<Reply, ApiError> {
    let payload = parse_body(&context.request.body)?;
    let Value::Object(object) = &payload else {
        return Err(ApiError::invalid_body("Empty or invalid json"));
    };
    refuse_ranges(context)?;
    let columns = match &context.query.columns {
        Some(columns) => dedupe(columns),
        None => uniform_keys(&[object])?,
    };

    let mut client = context.connection().await?;
    let (transaction, table) = context.begin(&mut client, false).await?;
    check_columns(&table, &columns)?;
    if context.query.conditions.is_empty() && !columns.is_empty() {
        return Err(safeupdate("UPDATE"));
    }
    let body = std::str::from_utf8(&context.request.body).unwrap_or_default();
    let statement = sql::update(&table, &columns, body, &context.query)?;
    let row = context.run(&transaction, &statement).await?;
    context.commit(transaction).await?;

    let rows: i64 = row.get(1);
    let status = if context.prefer.representation == Some(Representation::Full) {
        200
    } else {
        204
    };
    Ok(
        with_body(status, &context.prefer.representation, row.get(0))
            .header(header::CONTENT_RANGE, &content_range(0, rows, None))
            .maybe_header(
                preference_applied(),
                context.prefer.applied(false, true, false),
            ),
    )
}

pub(crate) async fn delete(context: &Context<'_>) -> Result<Reply, ApiError> {
    refuse_ranges(context)?;
    let mut client = context.connection().await?;
    let (transaction, table) = context.begin(&mut client, false).await?;
    if context.query.conditions.is_empty() {
        return Err(safeupdate("DELETE"));
    }
    let statement = sql::delete(&table, &context.query)?;
    let row = context.run(&transaction, &statement).await?;
    context.commit(transaction).await?;

    let status = if context.prefer.representation == Some(Representation::Full) {
        200
    } else {
        204
    };
    Ok(
        with_body(status, &context.prefer.representation, row.get(0))
            .header(header::CONTENT_RANGE, "*/*")
            .maybe_header(
                preference_applied(),
                context.prefer.applied(false, true, false),
            ),
    )
}

fn with_body(status: u16, representation: &Option<Representation>, body: String) -> Reply {
    match representation {
        Some(Representation::Full) => Reply::json(status, body),
        _ => Reply::empty(status),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::invalid_body("Empty or invalid json"))
}

/// Without `columns`, PostgREST takes the keys of the objects and requires every object to have
/// the same ones; it does not fill gaps with NULL.
fn uniform_keys(objects: &[&Map<String, Value>]) -> Result<Vec<String>, ApiError> {
    let Some(first) = objects.first() else {
        return Ok(Vec::new());
    };
    let keys: BTreeSet<&String> = first.keys().collect();
    if objects
        .iter()
        .any(|object| object.keys().collect::<BTreeSet<_>>() != keys)
    {
        return Err(ApiError::invalid_body("All object keys must match"));
    }
    Ok(keys.into_iter().cloned().collect())
}

fn dedupe(columns: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    columns
        .iter()
        .filter(|c| seen.insert(c.as_str()))
        .cloned()
        .collect()
}

fn check_columns(table: &Table, columns: &[String]) -> Result<(), ApiError> {
    let mut sorted: Vec<&String> = columns.iter().collect();
    sorted.sort();
    match sorted.into_iter().find(|c| table.column(c).is_none()) {
        Some(missing) => Err(ApiError::column_not_found(&table.name, missing)),
        None => Ok(()),
    }
}

/// Supabase loads pg-safeupdate, which rejects UPDATE and DELETE without a WHERE clause.
fn safeupdate(verb: &str) -> ApiError {
    ApiError::pgrst(400, "21000", format!("{verb} requires a WHERE clause"))
}

/// PostgREST limits PATCH/DELETE with limit+order; the fake does not, and must not silently
/// touch more rows than asked.
fn refuse_ranges(context: &Context<'_>) -> Result<(), ApiError> {
    if context.query.limit.is_some() || context.query.offset.is_some() {
        return Err(ApiError::not_implemented(
            "limit/offset on PATCH and DELETE",
        ));
    }
    Ok(())
}

/// `Location` for `return=headers-only`: the first row's primary key as filters.
fn location(table: &Table, body: &str) -> Option<String> {
    if table.primary_key.is_empty() {
        return None;
    }
    let rows: Value = serde_json::from_str(body).ok()?;
    let first = rows.as_array()?.first()?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for key in &table.primary_key {
        let filter = match first.get(key)? {
            Value::String(text) => format!("eq.{text}"),
            Value::Null => "is.null".to_owned(),
            other => format!("eq.{other}"),
        };
        query.append_pair(key, &filter);
    }
    Some(format!("/{}?{}", table.name, query.finish()))
}
