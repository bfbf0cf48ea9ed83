//! Turns a parsed request into one SQL statement, shaped like the ones PostgREST v12 generates
//! (Query/QueryBuilder.hs): the body goes in as one JSON parameter read with
//! `json_populate_recordset`, filter values are bound as text and cast to the column's type, and
//! identifiers are always quoted. Results come back as PostgreSQL's own `json_agg`, so values
//! render exactly as PostgREST renders them.

use super::error::ApiError;
use super::query::{
    CompareOp, Condition, Filter, FilterOp, IsValue, LogicOp, OrderTerm, QueryParams,
};
use super::schema::{Column, Table};
use crate::db::quote_ident;

/// Alias of the target table in every statement; filters are qualified with it so that they
/// cannot collide with the body's columns in `UPDATE ... FROM`.
const TARGET: &str = "pgrst_target";

/// One statement and its text parameters ($1, $2, ...).
#[derive(Debug)]
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<String>,
}

/// How `Prefer: resolution=...` resolves a conflict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolution {
    Merge,
    Ignore,
}

/// What an INSERT needs beyond the query string.
pub(crate) struct InsertPlan<'a> {
    pub columns: &'a [String],
    pub body: &'a str,
    pub body_is_array: bool,
    /// Resolution and conflict target; absent for a plain INSERT.
    pub conflict: Option<(Resolution, &'a [String])>,
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

    fn column(&self, name: &str) -> Result<&'t Column, ApiError> {
        self.table
            .column(name)
            .ok_or_else(|| ApiError::undefined_column(&self.table.name, name))
    }

    fn target_relation(&self) -> String {
        format!("public.{} AS {TARGET}", quote_ident(&self.table.name))
    }

    fn where_clause(&mut self, conditions: &[Condition]) -> Result<String, ApiError> {
        if conditions.is_empty() {
            return Ok(String::new());
        }
        let parts = conditions
            .iter()
            .map(|c| self.condition(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!(" WHERE {}", parts.join(" AND ")))
    }

    fn condition(&mut self, condition: &Condition) -> Result<String, ApiError> {
        match condition {
            Condition::Filter(filter) => self.filter(filter),
            Condition::Logic {
                negated,
                op,
                children,
            } => {
                let joiner = if *op == LogicOp::And { " AND " } else { " OR " };
                let parts = children
                    .iter()
                    .map(|c| self.condition(c))
                    .collect::<Result<Vec<_>, _>>()?;
                let tree = format!("({})", parts.join(joiner));
                Ok(if *negated {
                    format!("NOT {tree}")
                } else {
                    tree
                })
            }
        }
    }

    fn filter(&mut self, filter: &Filter) -> Result<String, ApiError> {
        let column = self.column(&filter.column)?;
        let lhs = format!("{TARGET}.{}", quote_ident(&column.name));
        let cast = &column.cast_type;
        let expr = match &filter.op {
            FilterOp::Compare(op, value) => match op {
                CompareOp::Like | CompareOp::ILike => {
                    let word = if *op == CompareOp::Like {
                        "LIKE"
                    } else {
                        "ILIKE"
                    };
                    // PostgREST lets clients write * for % so URLs need no escaping.
                    format!("{lhs} {word} {}::text", self.bind(&value.replace('*', "%")))
                }
                CompareOp::Match => format!("{lhs} ~ {}::text", self.bind(value)),
                CompareOp::IMatch => format!("{lhs} ~* {}::text", self.bind(value)),
                CompareOp::IsDistinct => {
                    format!("{lhs} IS DISTINCT FROM {}::text::{cast}", self.bind(value))
                }
                _ => {
                    let symbol = match op {
                        CompareOp::Eq => "=",
                        CompareOp::Neq => "<>",
                        CompareOp::Gt => ">",
                        CompareOp::Gte => ">=",
                        CompareOp::Lt => "<",
                        _ => "<=",
                    };
                    format!("{lhs} {symbol} {}::text::{cast}", self.bind(value))
                }
            },
            FilterOp::In(values) if values.is_empty() => "false".to_owned(),
            FilterOp::In(values) => {
                let items: Vec<String> = values
                    .iter()
                    .map(|v| format!("{}::text::{cast}", self.bind(v)))
                    .collect();
                format!("{lhs} = ANY (ARRAY[{}])", items.join(", "))
            }
            FilterOp::Is(value) => {
                let word = match value {
                    IsValue::Null => "NULL",
                    IsValue::True => "TRUE",
                    IsValue::False => "FALSE",
                    IsValue::Unknown => "UNKNOWN",
                };
                format!("{lhs} IS {word}")
            }
        };
        Ok(if filter.negated {
            format!("NOT ({expr})")
        } else {
            expr
        })
    }

    fn order_clause(&self, order: &[OrderTerm]) -> Result<String, ApiError> {
        if order.is_empty() {
            return Ok(String::new());
        }
        let terms = order
            .iter()
            .map(|term| {
                let column = self.column(&term.column)?;
                let direction = if term.descending { "DESC" } else { "ASC" };
                let nulls = match term.nulls_first {
                    Some(true) => " NULLS FIRST",
                    Some(false) => " NULLS LAST",
                    None => "",
                };
                Ok(format!(
                    "{TARGET}.{} {direction}{nulls}",
                    quote_ident(&column.name)
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(format!(" ORDER BY {}", terms.join(", ")))
    }

    /// The select list, each column prefixed with `qualifier` (empty for the CTE's output).
    fn select_list(&self, select: Option<&[String]>, qualifier: &str) -> Result<String, ApiError> {
        let mut items = Vec::new();
        for name in select.unwrap_or(&["*".to_owned()]) {
            if name == "*" {
                items.extend(
                    self.table
                        .columns
                        .iter()
                        .map(|c| format!("{qualifier}{}", quote_ident(&c.name))),
                );
            } else {
                items.push(format!(
                    "{qualifier}{}",
                    quote_ident(&self.column(name)?.name)
                ));
            }
        }
        Ok(items.join(", "))
    }

    fn body(&mut self, body: &str, is_array: bool) -> String {
        let param = self.bind(body);
        if is_array {
            format!("{param}::text::json")
        } else {
            format!("json_build_array({param}::text::json)")
        }
    }

    /// The common tail of mutations: rendered rows, row count and inserted-row count.
    fn mutation_result(&self, select: Option<&[String]>) -> Result<String, ApiError> {
        Ok(format!(
            " SELECT coalesce((SELECT json_agg(_postgrest_t) FROM (SELECT {} FROM pgrst_source) _postgrest_t), '[]')::text, \
             (SELECT count(*) FROM pgrst_source), \
             (SELECT count(*) FROM pgrst_source WHERE pgrst_inserted)",
            self.select_list(select, "")?
        ))
    }

    fn finish(self, sql: String) -> Statement {
        Statement {
            sql,
            params: self.params,
        }
    }
}

/// GET: returns (rows as JSON text, row count).
pub(crate) fn select(table: &Table, query: &QueryParams) -> Result<Statement, ApiError> {
    let mut b = Builder::new(table);
    let columns = b.select_list(query.select.as_deref(), &format!("{TARGET}."))?;
    let filters = b.where_clause(&query.conditions)?;
    let order = b.order_clause(&query.order)?;
    let mut range = String::new();
    if let Some(limit) = query.limit {
        range.push_str(&format!(" LIMIT {limit}"));
    }
    if let Some(offset) = query.offset {
        range.push_str(&format!(" OFFSET {offset}"));
    }
    let sql = format!(
        "SELECT coalesce(json_agg(_postgrest_t), '[]')::text, count(*) FROM \
         (SELECT {columns} FROM {}{filters}{order}{range}) _postgrest_t",
        b.target_relation()
    );
    Ok(b.finish(sql))
}

/// `Prefer: count=exact`: the total ignoring limit and offset.
pub(crate) fn count(table: &Table, query: &QueryParams) -> Result<Statement, ApiError> {
    let mut b = Builder::new(table);
    let filters = b.where_clause(&query.conditions)?;
    let sql = format!("SELECT count(*) FROM {}{filters}", b.target_relation());
    Ok(b.finish(sql))
}

/// POST: returns (rows, row count, inserted count); the last tells an upsert's inserts from
/// its updates (xmax = 0 marks a freshly inserted row version).
pub(crate) fn insert(
    table: &Table,
    plan: &InsertPlan<'_>,
    select: Option<&[String]>,
) -> Result<Statement, ApiError> {
    let mut b = Builder::new(table);
    let names: Vec<String> = plan.columns.iter().map(|c| quote_ident(c)).collect();
    let body = b.body(plan.body, plan.body_is_array);
    let target_table = format!("public.{}", quote_ident(&table.name));
    let source = if names.is_empty() {
        // `{}` or `[{}, {}]`: one row of defaults per object, as PostgREST does.
        format!("SELECT FROM json_array_elements({body})")
    } else {
        format!(
            "SELECT {cols} FROM json_populate_recordset(NULL::{target_table}, {body})",
            cols = names.join(", ")
        )
    };
    let column_list = if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    };
    let on_conflict = match plan.conflict {
        Some((resolution, keys)) if !keys.is_empty() => {
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
        _ => String::new(),
    };
    let sql = format!(
        "WITH pgrst_source AS (INSERT INTO {target_table} AS {TARGET}{column_list} {source}{on_conflict} \
         RETURNING {TARGET}.*, ({TARGET}.xmax = 0) AS pgrst_inserted){}",
        b.mutation_result(select)?
    );
    Ok(b.finish(sql))
}

/// PATCH: sets the body's columns on every row the filters match.
pub(crate) fn update(
    table: &Table,
    columns: &[String],
    body: &str,
    query: &QueryParams,
) -> Result<Statement, ApiError> {
    let mut b = Builder::new(table);
    let target_table = format!("public.{}", quote_ident(&table.name));
    let sql = if columns.is_empty() {
        // Nothing to set: PostgREST answers without touching a row.
        format!(
            "WITH pgrst_source AS (SELECT {TARGET}.*, false AS pgrst_inserted FROM {} WHERE false){}",
            b.target_relation(),
            b.mutation_result(query.select.as_deref())?
        )
    } else {
        let body = b.body(body, false);
        let sets: Vec<String> = columns
            .iter()
            .map(|c| format!("{0} = pgrst_body.{0}", quote_ident(c)))
            .collect();
        let filters = b.where_clause(&query.conditions)?;
        format!(
            "WITH pgrst_source AS (UPDATE {} SET {} FROM (SELECT * FROM json_populate_recordset(NULL::{target_table}, {body})) AS pgrst_body{filters} \
             RETURNING {TARGET}.*, false AS pgrst_inserted){}",
            b.target_relation(),
            sets.join(", "),
            b.mutation_result(query.select.as_deref())?
        )
    };
    Ok(b.finish(sql))
}

/// DELETE: removes every row the filters match.
pub(crate) fn delete(table: &Table, query: &QueryParams) -> Result<Statement, ApiError> {
    let mut b = Builder::new(table);
    let filters = b.where_clause(&query.conditions)?;
    let sql = format!(
        "WITH pgrst_source AS (DELETE FROM {}{filters} RETURNING {TARGET}.*, false AS pgrst_inserted){}",
        b.target_relation(),
        b.mutation_result(query.select.as_deref())?
    );
    Ok(b.finish(sql))
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
