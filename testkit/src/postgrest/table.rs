//! Table requests with PostgREST v12's answers: GET (filtered, ordered, limited rows as a JSON
//! array), POST (insert or upsert with `on_conflict` and `Prefer: resolution=...`: 201, or 200
//! when a merge inserted nothing), PATCH and DELETE (204). Writes answer without a body, which
//! is `return=minimal`, PostgREST's default; `return=representation` is refused. Supabase's
//! pg-safeupdate refuses UPDATE and DELETE without a filter.
//!
//! Statements are shaped like PostgREST's (Query/QueryBuilder.hs): the body goes in as one JSON
//! parameter read with `json_populate_recordset`, filter values are bound as text and cast to
//! the column's type, identifiers are quoted, and rows come back through PostgreSQL's own
//! `json_agg`, so values render exactly as PostgREST renders them.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::filter::Condition;
use super::handler::{Context, Statement};
use super::query::{self, QueryParams};
use super::reply::{Reply, Representation, Resolution};
use super::schema::{load_table, Table};
use crate::db::quote_ident;

/// Alias of the target table; filters are qualified with it so that they cannot collide with
/// the body's columns in `UPDATE ... FROM`.
const TARGET: &str = "pgrst_target";

pub(crate) async fn read(cx: &Context<'_>, name: &str) -> Result<Reply, ApiError> {
    let query = query::parse(&cx.request.query)?;
    // PostgREST reads in a read-only transaction: a function or view that writes fails.
    let row = run_on(cx, name, true, |table| {
        let mut b = Builder::new(table);
        let columns = b.select_list(query.select.as_deref())?;
        let filters = b.where_clause(&query.conditions)?;
        let order = b.order_clause(&query)?;
        let limit = query
            .limit
            .map(|l| format!(" LIMIT {l}"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT coalesce(json_agg(_postgrest_t), '[]')::text FROM \
             (SELECT {columns} FROM {}{filters}{order}{limit}) _postgrest_t",
            b.relation()
        );
        Ok(b.finish(sql))
    })
    .await?;
    Ok(Reply::json(200, row.get(0)))
}

pub(crate) async fn create(cx: &Context<'_>, name: &str) -> Result<Reply, ApiError> {
    refuse_representation(cx)?;
    let query = query::parse(&cx.request.query)?;
    let body = cx.body_text()?;
    let payload = parse_body(body)?;
    let objects: Vec<&Map<String, Value>> = match &payload {
        Value::Object(object) => vec![object],
        Value::Array(items) => items
            .iter()
            .map(Value::as_object)
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::invalid_body("All object keys must match"))?,
        _ => return Err(ApiError::invalid_body("Empty or invalid json")),
    };
    let columns = match &query.columns {
        Some(columns) => dedupe(columns),
        None => uniform_keys(&objects)?,
    };
    let resolution = cx.prefer.resolution;
    let row = run_on(cx, name, false, |table| {
        check_columns(table, &columns)?;
        let keys = query.on_conflict.as_ref().unwrap_or(&table.primary_key);
        let conflict = resolution.filter(|_| !keys.is_empty()).map(|r| (r, keys));
        Ok(insert(table, &columns, body, payload.is_array(), conflict))
    })
    .await?;
    let inserted: i64 = row.get(0);
    // PostgREST v12: an upsert that only merged answers 200, everything else 201.
    let merged_only = resolution == Some(Resolution::Merge) && inserted == 0 && !objects.is_empty();
    Ok(Reply::empty(if merged_only { 200 } else { 201 }))
}

pub(crate) async fn update(cx: &Context<'_>, name: &str) -> Result<Reply, ApiError> {
    refuse_representation(cx)?;
    let query = query::parse(&cx.request.query)?;
    refuse_limit(&query)?;
    let body = cx.body_text()?;
    let Value::Object(object) = parse_body(body)? else {
        return Err(ApiError::invalid_body("Empty or invalid json"));
    };
    let columns = match &query.columns {
        Some(columns) => dedupe(columns),
        None => uniform_keys(&[&object])?,
    };
    if columns.is_empty() {
        // Nothing to set: PostgREST answers without touching a row.
        return Ok(Reply::empty(204));
    }
    run_on(cx, name, false, |table| {
        check_columns(table, &columns)?;
        if query.conditions.is_empty() {
            return Err(safeupdate("UPDATE"));
        }
        let mut b = Builder::new(table);
        let body = b.bind(body);
        let sets: Vec<String> = columns
            .iter()
            .map(|c| format!("{0} = pgrst_body.{0}", quote_ident(c)))
            .collect();
        let filters = b.where_clause(&query.conditions)?;
        let sql = format!(
            "WITH pgrst_source AS (UPDATE {} SET {} FROM (SELECT * FROM json_populate_record(NULL::{}, {body}::text::json)) AS pgrst_body{filters} RETURNING 1) \
             SELECT count(*) FROM pgrst_source",
            b.relation(),
            sets.join(", "),
            b.table_name(),
        );
        Ok(b.finish(sql))
    })
    .await?;
    Ok(Reply::empty(204))
}

pub(crate) async fn delete(cx: &Context<'_>, name: &str) -> Result<Reply, ApiError> {
    refuse_representation(cx)?;
    let query = query::parse(&cx.request.query)?;
    refuse_limit(&query)?;
    run_on(cx, name, false, |table| {
        if query.conditions.is_empty() {
            return Err(safeupdate("DELETE"));
        }
        let mut b = Builder::new(table);
        let filters = b.where_clause(&query.conditions)?;
        let sql = format!(
            "WITH pgrst_source AS (DELETE FROM {}{filters} RETURNING 1) SELECT count(*) FROM pgrst_source",
            b.relation()
        );
        Ok(b.finish(sql))
    })
    .await?;
    Ok(Reply::empty(204))
}

/// Looks the table up inside the request's transaction, runs what `build` makes of it, commits.
async fn run_on(
    cx: &Context<'_>,
    name: &str,
    read_only: bool,
    build: impl FnOnce(&Table) -> Result<Statement, ApiError>,
) -> Result<tokio_postgres::Row, ApiError> {
    let mut client = cx.connection().await?;
    let transaction = cx.begin(&mut client, read_only).await?;
    let table = load_table(&transaction, name)
        .await
        .map_err(|err| cx.db_error(err))?
        .ok_or_else(|| ApiError::table_not_found(name))?;
    let row = cx.run(&transaction, &build(&table)?).await?;
    cx.commit(transaction).await?;
    Ok(row)
}

/// INSERT ... ON CONFLICT; returns how many rows were inserted rather than merged
/// (`xmax = 0` marks a freshly inserted row version).
fn insert(
    table: &Table,
    columns: &[String],
    body: &str,
    body_is_array: bool,
    conflict: Option<(Resolution, &Vec<String>)>,
) -> Statement {
    let mut b = Builder::new(table);
    let names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let param = b.bind(body);
    let rows = if body_is_array {
        format!("{param}::text::json")
    } else {
        format!("json_build_array({param}::text::json)")
    };
    let (column_list, source) = if names.is_empty() {
        // `{}` or `[{}, {}]`: one row of defaults per object, as PostgREST does.
        (
            String::new(),
            format!("SELECT FROM json_array_elements({rows})"),
        )
    } else {
        let list = names.join(", ");
        let source = format!(
            "SELECT {list} FROM json_populate_recordset(NULL::{}, {rows})",
            b.table_name()
        );
        (format!(" ({list})"), source)
    };
    let on_conflict = match conflict {
        Some((resolution, keys)) => {
            let keys: Vec<String> = keys.iter().map(|k| quote_ident(k)).collect();
            // PostgREST v12 sets every payload column, the conflict columns included.
            let action = if resolution == Resolution::Merge && !names.is_empty() {
                let sets: Vec<String> = names
                    .iter()
                    .map(|n| format!("{n} = EXCLUDED.{n}"))
                    .collect();
                format!("DO UPDATE SET {}", sets.join(", "))
            } else {
                "DO NOTHING".to_owned()
            };
            format!(" ON CONFLICT ({}) {action}", keys.join(", "))
        }
        None => String::new(),
    };
    let sql = format!(
        "WITH pgrst_source AS (INSERT INTO {} AS {TARGET}{column_list} {source}{on_conflict} \
         RETURNING ({TARGET}.xmax = 0) AS pgrst_inserted) \
         SELECT count(*) FILTER (WHERE pgrst_inserted) FROM pgrst_source",
        b.table_name()
    );
    b.finish(sql)
}

struct Builder<'t> {
    table: &'t Table,
    params: Vec<String>,
}

impl<'t> Builder<'t> {
    fn new(table: &'t Table) -> Self {
        Builder {
            table,
            params: Vec::new(),
        }
    }

    fn bind(&mut self, value: &str) -> String {
        self.params.push(value.to_owned());
        format!("${}", self.params.len())
    }

    fn table_name(&self) -> String {
        format!("public.{}", quote_ident(&self.table.name))
    }

    fn relation(&self) -> String {
        format!("{} AS {TARGET}", self.table_name())
    }

    /// `pgrst_target."col"`, or PostgreSQL's 42703 for a name that is not a column.
    fn column(&self, name: &str) -> Result<(String, &'t str), ApiError> {
        let column = self
            .table
            .column(name)
            .ok_or_else(|| ApiError::undefined_column(&self.table.name, name))?;
        let qualified = format!("{TARGET}.{}", quote_ident(&column.name));
        Ok((qualified, column.cast_type.as_str()))
    }

    fn where_clause(&mut self, conditions: &[Condition]) -> Result<String, ApiError> {
        if conditions.is_empty() {
            return Ok(String::new());
        }
        Ok(format!(" WHERE {}", self.join(conditions, " AND ")?))
    }

    fn join(&mut self, conditions: &[Condition], joiner: &str) -> Result<String, ApiError> {
        let parts = conditions
            .iter()
            .map(|c| self.condition(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("({})", parts.join(joiner)))
    }

    fn condition(&mut self, condition: &Condition) -> Result<String, ApiError> {
        match condition {
            Condition::Compare { column, op, value } => {
                let (lhs, cast) = self.column(column)?;
                Ok(format!(
                    "{lhs} {} {}::text::{cast}",
                    op.sql(),
                    self.bind(value)
                ))
            }
            Condition::In { values, .. } if values.is_empty() => Ok("false".to_owned()),
            Condition::In { column, values } => {
                let (lhs, cast) = self.column(column)?;
                let items: Vec<String> = values
                    .iter()
                    .map(|v| format!("{}::text::{cast}", self.bind(v)))
                    .collect();
                Ok(format!("{lhs} = ANY (ARRAY[{}])", items.join(", ")))
            }
            Condition::And(children) => self.join(children, " AND "),
            Condition::Or(children) => self.join(children, " OR "),
        }
    }

    fn order_clause(&self, query: &QueryParams) -> Result<String, ApiError> {
        if query.order.is_empty() {
            return Ok(String::new());
        }
        let terms = query
            .order
            .iter()
            .map(|term| {
                let direction = if term.descending { "DESC" } else { "ASC" };
                Ok(format!("{} {direction}", self.column(&term.column)?.0))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(format!(" ORDER BY {}", terms.join(", ")))
    }

    fn select_list(&self, select: Option<&[String]>) -> Result<String, ApiError> {
        let mut items = Vec::new();
        for name in select.unwrap_or(&["*".to_owned()]) {
            if name == "*" {
                let all = self.table.columns.iter();
                items.extend(all.map(|c| format!("{TARGET}.{}", quote_ident(&c.name))));
            } else {
                items.push(self.column(name)?.0);
            }
        }
        Ok(items.join(", "))
    }

    fn finish(self, sql: String) -> Statement {
        Statement {
            sql,
            params: self.params,
        }
    }
}

fn refuse_representation(cx: &Context<'_>) -> Result<(), ApiError> {
    match cx.prefer.representation {
        Some(Representation::Other) => Err(ApiError::not_implemented(
            "return=representation and return=headers-only",
        )),
        _ => Ok(()),
    }
}

/// PostgREST v12 limits PATCH/DELETE with limit+order; the stand-in must not silently touch
/// more rows than asked.
fn refuse_limit(query: &QueryParams) -> Result<(), ApiError> {
    match query.limit {
        Some(_) => Err(ApiError::not_implemented("limit on PATCH and DELETE")),
        None => Ok(()),
    }
}

fn parse_body(body: &str) -> Result<Value, ApiError> {
    serde_json::from_str(body).map_err(|_| ApiError::invalid_body("Empty or invalid json"))
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
