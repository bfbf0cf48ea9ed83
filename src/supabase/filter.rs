//! PostgREST query-string grammar: filters that identify rows by key, and keyset paging.
//! Values are quoted per PostgREST's rules so that commas, parentheses and quotes inside keys
//! cannot change the meaning of a filter.

use serde_json::Value;

/// A value as PostgREST reads it inside `in.(...)`, `or=(...)` and after `eq.`.
pub(crate) fn quote(value: &Value) -> String {
    let raw = match value {
        Value::String(s) => s.clone(),
        Value::Null => return "null".to_owned(),
        other => other.to_string(),
    };
    let reserved =
        |c: char| matches!(c, ',' | '.' | ':' | '(' | ')' | '"' | '\\') || c.is_whitespace();
    if raw.is_empty() || raw.chars().any(reserved) {
        format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        raw
    }
}

/// A value as PostgREST reads it after a top-level operator (`col=eq.<value>`): literally.
pub(crate) fn raw(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// Query pairs selecting exactly `keys` (each a list of `(column, value)` in key order).
/// One key column: `col=in.(a,b)`; composite: `or=(and(a.eq.1,b.eq.2),...)`.
pub(crate) fn keys_filter(keys: &[Vec<(String, Value)>]) -> Vec<(String, String)> {
    let Some(first) = keys.first() else {
        return Vec::new();
    };
    if first.len() == 1 {
        let column = first[0].0.clone();
        let values: Vec<String> = keys
            .iter()
            .filter_map(|k| k.first())
            .map(|(_, v)| quote(v))
            .collect();
        return vec![(column, format!("in.({})", values.join(",")))];
    }
    let alternatives: Vec<String> = keys
        .iter()
        .map(|k| {
            let parts: Vec<String> = k
                .iter()
                .map(|(c, v)| format!("{c}.eq.{}", quote(v)))
                .collect();
            format!("and({})", parts.join(","))
        })
        .collect();
    vec![("or".to_owned(), format!("({})", alternatives.join(",")))]
}

/// The keyset condition "(order columns) > (after values)", lexicographic, as PostgREST
/// `or=(...)`: `(a > x) or (a = x and b > y) or ...`.
pub(crate) fn after_filter(after: &[(String, Value)]) -> Option<(String, String)> {
    if after.is_empty() {
        return None;
    }
    let mut alternatives = Vec::new();
    for i in 0..after.len() {
        let mut parts: Vec<String> = after[..i]
            .iter()
            .map(|(c, v)| format!("{c}.eq.{}", quote(v)))
            .collect();
        let (c, v) = &after[i];
        parts.push(format!("{c}.gt.{}", quote(v)));
        alternatives.push(if parts.len() == 1 {
            parts.remove(0)
        } else {
            format!("and({})", parts.join(","))
        });
    }
    Some(("or".to_owned(), format!("({})", alternatives.join(","))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quoting() {
        assert_eq!(quote(&json!(12)), "12");
        assert_eq!(quote(&json!("abc")), "abc");
        assert_eq!(quote(&json!("a,b")), "\"a,b\"");
        assert_eq!(quote(&json!("say \"hi\")")), "\"say \\\"hi\\\")\"");
        assert_eq!(
            quote(&json!("2026-01-01T10:00:00.5+00:00")),
            "\"2026-01-01T10:00:00.5+00:00\""
        );
        assert_eq!(quote(&json!("")), "\"\"");
    }

    #[test]
    fn single_and_composite_keys() {
        let single = vec![
            vec![("person_id".to_owned(), json!(1))],
            vec![("person_id".to_owned(), json!(2))],
        ];
        assert_eq!(
            keys_filter(&single),
            vec![("person_id".to_owned(), "in.(1,2)".to_owned())]
        );
        let composite = vec![vec![
            ("a".to_owned(), json!(1)),
            ("b".to_owned(), json!("x,y")),
        ]];
        assert_eq!(
            keys_filter(&composite),
            vec![("or".to_owned(), "(and(a.eq.1,b.eq.\"x,y\"))".to_owned())]
        );
        assert!(keys_filter(&[]).is_empty());
    }

    #[test]
    fn keyset_condition() {
        let after = vec![
            ("updated_at".to_owned(), json!("2026-01-01T00:00:00+00:00")),
            ("id".to_owned(), json!(7)),
        ];
        assert_eq!(
            after_filter(&after),
            Some((
                "or".to_owned(),
                "(updated_at.gt.\"2026-01-01T00:00:00+00:00\",and(updated_at.eq.\"2026-01-01T00:00:00+00:00\",id.gt.7))".to_owned()
            ))
        );
        assert_eq!(after_filter(&[]), None);
    }
}
