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

/// The RPC's JSON body: its named arguments.
pub(crate) fn body(table: &PushTable<'_>, rows: &[PushRow]) -> Value {
    let items: Vec<Item<'_>> = rows
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
    serde_json::json!({
        "p_table": table.table,
        "p_keys": table.keys,
        "p_shared": table.shared,
        "p_rows": items,
    })
}
