//! Parses the query strings the stand-in serves, following PostgREST v12's grammar
//! (ApiRequest/QueryParams.hs): `select` (`*` or plain columns), `columns`, `on_conflict`,
//! `order=col.asc|desc,...`, `limit`, and the filters `filter` reads. Parameters PostgREST has
//! and the stand-in does not are refused as not implemented. Pure: no schema, no SQL.

use super::error::ApiError;
use super::filter::{is_field_char, Condition, Cursor};

#[derive(Debug, Default, PartialEq)]
pub(crate) struct QueryParams {
    /// `select`; `None` means `*`.
    pub select: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
    pub on_conflict: Option<Vec<String>>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    /// Root conditions, joined with AND.
    pub conditions: Vec<Condition>,
}

#[derive(Debug, PartialEq)]
pub(crate) struct OrderTerm {
    pub column: String,
    pub descending: bool,
}

/// Parses a raw (still percent-encoded) query string; `+` decodes to a space, as in PostgREST.
pub(crate) fn parse(raw_query: &str) -> Result<QueryParams, ApiError> {
    let mut params = QueryParams::default();
    for (key, value) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        let (key, value) = (key.as_ref(), value.as_ref());
        match key {
            "select" => params.select = Some(parse_select(value)?),
            "columns" => params.columns = Some(parse_names(value, "columns")?),
            "on_conflict" => params.on_conflict = Some(parse_names(value, "on_conflict")?),
            "order" => params.order = parse_order(value)?,
            // PostgREST reads it with readMaybe: a value that is not a number is ignored.
            "limit" => params.limit = value.trim().parse().ok(),
            "offset" => return Err(ApiError::not_implemented("offset")),
            "or" | "and" => {
                let mut cursor = Cursor::new(value, "logic tree");
                let children = cursor.children()?;
                cursor.expect_end()?;
                params.conditions.push(if key == "or" {
                    Condition::Or(children)
                } else {
                    Condition::And(children)
                });
            }
            _ if key.starts_with("not.") => {
                return Err(ApiError::not_implemented("not.and/not.or"))
            }
            _ if key.contains(['.', '(', ':']) || key.contains("->") => {
                return Err(ApiError::not_implemented("embedded or JSON-path filters"))
            }
            _ => {
                let column = Cursor::new(key, "tree path").field_name()?;
                let condition = Cursor::new(value, "filter").filter(column, false)?;
                params.conditions.push(condition);
            }
        }
    }
    Ok(params)
}

fn parse_select(value: &str) -> Result<Vec<String>, ApiError> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    let plain = |item: &&str| {
        *item == "*" || (!item.is_empty() && item.chars().all(is_field_char) && !item.contains('-'))
    };
    if items.iter().all(plain) {
        Ok(items.into_iter().map(str::to_owned).collect())
    } else {
        Err(ApiError::not_implemented(
            "select with aliases, casts, JSON paths or embedding",
        ))
    }
}

fn parse_names(value: &str, what: &'static str) -> Result<Vec<String>, ApiError> {
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
        let mut descending = false;
        while cursor.eat('.') {
            match cursor.take_while(|c| c != '.' && c != ',') {
                "asc" => descending = false,
                "desc" => descending = true,
                "nullsfirst" | "nullslast" => {
                    return Err(ApiError::not_implemented("nullsfirst/nullslast"))
                }
                other => return Err(cursor.error(&format!("unexpected \"{other}\""))),
            }
        }
        terms.push(OrderTerm { column, descending });
        if !cursor.eat(',') {
            break;
        }
    }
    cursor.expect_end()?;
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgrest::filter::CompareOp;

    fn compare(column: &str, op: CompareOp, value: &str) -> Condition {
        Condition::Compare {
            column: column.to_owned(),
            op,
            value: value.to_owned(),
        }
    }

    #[test]
    fn the_agents_keyset_page() {
        let query = "select=*&order=updated_at.asc,note_uid.desc&limit=500\
                     &or=(updated_at.gt.%222026-01-01T00:00:00%2B00:00%22,and(updated_at.eq.%222026-01-01T00:00:00%2B00:00%22,note_uid.gt.7))\
                     &created_at=gte.2026-01-01T00:00:00%2B00:00";
        let params = parse(query).expect("parses");
        let at = "2026-01-01T00:00:00+00:00";
        assert_eq!(params.select, Some(vec!["*".to_owned()]));
        assert_eq!(params.limit, Some(500));
        assert_eq!(
            params.order,
            vec![
                OrderTerm {
                    column: "updated_at".to_owned(),
                    descending: false
                },
                OrderTerm {
                    column: "note_uid".to_owned(),
                    descending: true
                }
            ]
        );
        assert_eq!(
            params.conditions,
            vec![
                Condition::Or(vec![
                    compare("updated_at", CompareOp::Gt, at),
                    Condition::And(vec![
                        compare("updated_at", CompareOp::Eq, at),
                        compare("note_uid", CompareOp::Gt, "7"),
                    ]),
                ]),
                compare("created_at", CompareOp::Gte, at),
            ]
        );
    }

    #[test]
    fn in_lists_unquote_and_top_level_values_are_literal() {
        let params =
            parse(r#"id=in.(1,"a,b","say \"hi\")",x"y)&name=eq."quoted", (kept)"#).expect("parses");
        assert_eq!(
            params.conditions,
            vec![
                Condition::In {
                    column: "id".to_owned(),
                    values: vec![
                        "1".to_owned(),
                        "a,b".to_owned(),
                        "say \"hi\")".to_owned(),
                        "x\"y".to_owned()
                    ],
                },
                compare("name", CompareOp::Eq, "\"quoted\", (kept)"),
            ]
        );
        let upsert = parse("on_conflict=a,b&columns=a,b,c").expect("parses");
        assert_eq!(
            upsert.on_conflict,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(upsert.columns.map(|c| c.len()), Some(3));
    }

    #[test]
    fn unparsable_and_unsupported_requests_are_refused() {
        for (query, code) in [
            ("or=(a.eq.1", "PGRST100"),
            ("a=1", "PGRST100"),
            ("a=eq", "PGRST100"),
            ("a=in.(1", "PGRST100"),
            ("order=a.sideways", "PGRST100"),
            ("a=like.x*", "PGRST127"),
            ("a=not.eq.1", "PGRST127"),
            ("a=eq(any).{1,2}", "PGRST127"),
            ("or=(not.a.eq.1)", "PGRST127"),
            ("select=a:b", "PGRST127"),
            ("offset=10", "PGRST127"),
            ("rel.a=eq.1", "PGRST127"),
        ] {
            let err = parse(query).expect_err(query);
            assert_eq!(
                (err.status, err.body["code"].as_str()),
                (400, Some(code)),
                "{query}"
            );
        }
    }
}
