//! Parses PostgREST's query string: `select`, `columns`, `on_conflict`, `order`, `limit`,
//! `offset`, horizontal filters (`col=op.value`) and logic trees (`or=(...)`, `and=(...)`),
//! following PostgREST v12's grammar (ApiRequest/QueryParams.hs). Pure: no schema, no SQL.

use super::error::ApiError;
use cursor::Cursor;

mod cursor;

/// The parts of a query string the fake understands.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct QueryParams {
    /// `select`; `None` means `*`.
    pub select: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
    pub on_conflict: Option<Vec<String>>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    /// Root conditions, joined with AND.
    pub conditions: Vec<Condition>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Condition {
    Filter(Filter),
    Logic {
        negated: bool,
        op: LogicOp,
        children: Vec<Condition>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LogicOp {
    And,
    Or,
}

#[derive(Debug, PartialEq)]
pub(crate) struct Filter {
    pub column: String,
    pub negated: bool,
    pub op: FilterOp,
}

#[derive(Debug, PartialEq)]
pub(crate) enum FilterOp {
    Compare(CompareOp, String),
    In(Vec<String>),
    Is(IsValue),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CompareOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    ILike,
    Match,
    IMatch,
    IsDistinct,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum IsValue {
    Null,
    True,
    False,
    Unknown,
}

#[derive(Debug, PartialEq)]
pub(crate) struct OrderTerm {
    pub column: String,
    pub descending: bool,
    pub nulls_first: Option<bool>,
}

pub(crate) fn compare_op(name: &str) -> Option<CompareOp> {
    Some(match name {
        "eq" => CompareOp::Eq,
        "neq" => CompareOp::Neq,
        "gt" => CompareOp::Gt,
        "gte" => CompareOp::Gte,
        "lt" => CompareOp::Lt,
        "lte" => CompareOp::Lte,
        "like" => CompareOp::Like,
        "ilike" => CompareOp::ILike,
        "match" => CompareOp::Match,
        "imatch" => CompareOp::IMatch,
        "isdistinct" => CompareOp::IsDistinct,
        _ => return None,
    })
}

/// Parses a raw (still percent-encoded) query string. `+` decodes to a space, as in PostgREST.
pub(crate) fn parse(raw_query: &str) -> Result<QueryParams, ApiError> {
    let mut params = QueryParams::default();
    for (key, value) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        let (key, value) = (key.as_ref(), value.as_ref());
        match key {
            "select" => params.select = Some(parse_select(value)?),
            "columns" => params.columns = Some(parse_columns(value, "columns")?),
            "on_conflict" => params.on_conflict = Some(parse_columns(value, "on_conflict")?),
            "order" => params.order = parse_order(value)?,
            // PostgREST reads these with readMaybe: a value that is not a number is ignored.
            "limit" => params.limit = value.trim().parse().ok(),
            "offset" => params.offset = value.trim().parse().ok(),
            "and" | "or" | "not.and" | "not.or" => {
                let negated = key.starts_with("not.");
                let op = if key.ends_with("and") {
                    LogicOp::And
                } else {
                    LogicOp::Or
                };
                let mut cursor = Cursor::new(value, "logic tree");
                let children = cursor.logic_children()?;
                cursor.expect_end()?;
                params.conditions.push(Condition::Logic {
                    negated,
                    op,
                    children,
                });
            }
            _ if value.is_empty() || !has_operator(value) => {} // RPC-style parameter: ignored
            _ if key.contains('.') => return Err(ApiError::not_embedded(key)),
            _ => {
                let column = Cursor::new(key, "tree path").field_name()?;
                let filter = Cursor::new(value, "filter").op_expr(column, false)?;
                params.conditions.push(Condition::Filter(filter));
            }
        }
    }
    Ok(params)
}

/// PostgREST treats a parameter as a filter only when its value starts with an operator.
fn has_operator(value: &str) -> bool {
    let mut parts = value.split('.');
    match (parts.next(), parts.next()) {
        (Some("not"), Some(_)) | (Some("is"), _) | (Some("in"), _) => true,
        (Some(first), _) => compare_op(first).is_some(),
        _ => false,
    }
}

fn parse_select(value: &str) -> Result<Vec<String>, ApiError> {
    let mut cursor = Cursor::new(value, "select parameter");
    let mut fields = Vec::new();
    loop {
        cursor.skip_ws();
        if cursor.eat('*') {
            fields.push("*".to_owned());
        } else {
            let name = cursor.field_name()?;
            // `alias:column` renames in PostgREST; the fake keeps the column and ignores the alias.
            if cursor.peek() == Some(':') && !cursor.rest().starts_with("::") {
                cursor.bump();
                fields.push(cursor.field_name()?);
            } else {
                fields.push(name);
            }
            if cursor.peek() == Some('(') {
                return Err(ApiError::not_implemented("resource embedding"));
            }
        }
        cursor.skip_ws();
        if !cursor.eat(',') {
            break;
        }
    }
    cursor.expect_end()?;
    Ok(fields)
}

fn parse_columns(value: &str, what: &'static str) -> Result<Vec<String>, ApiError> {
    let mut cursor = Cursor::new(value, what);
    let mut names = vec![cursor.field_name()?];
    while cursor.eat(',') {
        names.push(cursor.field_name()?);
    }
    cursor.expect_end()?;
    Ok(names)
}

fn parse_order(value: &str) -> Result<Vec<OrderTerm>, ApiError> {
    let mut cursor = Cursor::new(value, "order");
    let mut terms = Vec::new();
    loop {
        let column = cursor.field_name()?;
        let mut term = OrderTerm {
            column,
            descending: false,
            nulls_first: None,
        };
        while cursor.eat('.') {
            match cursor.take_while(|c| c != '.' && c != ',').as_str() {
                "asc" => term.descending = false,
                "desc" => term.descending = true,
                "nullsfirst" => term.nulls_first = Some(true),
                "nullslast" => term.nulls_first = Some(false),
                other => return Err(cursor.error(&format!("unexpected \"{other}\""))),
            }
        }
        terms.push(term);
        if !cursor.eat(',') {
            break;
        }
    }
    cursor.expect_end()?;
    Ok(terms)
}

#[cfg(test)]
mod tests;
