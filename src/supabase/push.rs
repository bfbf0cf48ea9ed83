//! The versioned push (`POST /rest/v1/rpc/syncbridge_push`, installed by
//! `sql/supabase/03_versions.sql`): one request per table per batch for tables with
//! portal-owned columns. What goes in ([`PushRow`]) and what comes back ([`Refused`]).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JsonRow;

/// The function's name under `rpc/`.
pub(crate) const PUSH_FUNCTION: &str = "syncbridge_push";

/// One row of a push: the row as the clinic has it, and the portal-owned columns the clinic
/// changed since they last synced, each with the time of the clinic's change (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct PushRow {
    pub row: JsonRow,
    pub changed: BTreeMap<String, DateTime<Utc>>,
}

/// What a push writes into one table: its key columns and which columns are portal-owned.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTable<'a> {
    pub table: &'a str,
    pub keys: &'a [String],
    pub shared: &'a [String],
}

/// A portal-owned column the push did not write because Supabase holds a newer (or tied)
/// edit of it: Supabase's value and version, for the agent to write into SQL Server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Refused {
    /// The row's position in the push.
    pub index: usize,
    pub column: String,
    pub value: Value,
    /// `sync_versions[column]` as Supabase stores it (a timestamptz in JSON).
    pub version: Value,
}

#[derive(Serialize)]
struct Item<'a> {
    row: &'a JsonRow,
    changed: BTreeMap<&'a str, String>,
}

/// The RPC's JSON body: its named arguments, borrowing the rows (serialised as they are,
/// never copied into a `Value` first).
#[derive(Serialize)]
pub(crate) struct Body<'a> {
    p_table: &'a str,
    p_keys: &'a [String],
    p_shared: &'a [String],
    p_rows: Vec<Item<'a>>,
}

/// The RPC's JSON body for `rows` of `table`.
pub(crate) fn body<'a>(table: &PushTable<'a>, rows: &'a [PushRow]) -> Body<'a> {
    let p_rows = rows
        .iter()
        .map(|r| Item {
            row: &r.row,
            changed: r
                .changed
                .iter()
                .map(|(c, t)| (c.as_str(), t.to_rfc3339_opts(SecondsFormat::Micros, true)))
                .collect(),
        })
        .collect();
    Body {
        p_table: table.table,
        p_keys: table.keys,
        p_shared: table.shared,
        p_rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body is the function's named arguments, each row as the agent has it and each
    /// changed column's time at the microseconds PostgreSQL keeps: what `03_versions.sql`
    /// reads, whatever struct builds it.
    #[test]
    fn the_body_carries_the_named_arguments_and_every_row_as_it_is() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T09:00:00.123456Z")
            .expect("time")
            .with_timezone(&Utc);
        let row = |id: i64| {
            serde_json::json!({"aligner_batch_id": id, "days": 14, "notes": "x"})
                .as_object()
                .cloned()
                .expect("object")
        };
        let rows = vec![
            PushRow {
                row: row(1),
                changed: BTreeMap::from([("days".to_owned(), at)]),
            },
            PushRow {
                row: row(2),
                changed: BTreeMap::new(),
            },
        ];
        let keys = ["aligner_batch_id".to_owned()];
        let shared = ["days".to_owned()];
        let table = PushTable {
            table: "aligner_batches",
            keys: &keys,
            shared: &shared,
        };
        let sent: Value =
            serde_json::from_slice(&serde_json::to_vec(&body(&table, &rows)).expect("encode"))
                .expect("decode");
        assert_eq!(
            sent,
            serde_json::json!({
                "p_table": "aligner_batches",
                "p_keys": ["aligner_batch_id"],
                "p_shared": ["days"],
                "p_rows": [
                    {"row": row(1), "changed": {"days": "2026-01-01T09:00:00.123456Z"}},
                    {"row": row(2), "changed": {}},
                ],
            })
        );
    }
}
