//! The double's `rpc/syncbridge_push`, keeping what `sql/supabase/03_versions.sql` decides:
//! missing rows inserted whole with the clinic's times as versions; existing rows get every
//! clinic-owned column, and a portal-owned column the clinic changed only when the clinic's
//! time is strictly newer than its version (ties go to the portal); refused columns whose
//! value differs come back. All or nothing, like one request.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::{column, matches_key, MemorySupabase, RequestKind};
use crate::supabase::{KeyFilter, PostgrestError, PushRow, PushTable, Refused};

const VERSIONS: &str = "sync_versions";

fn stamp(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn version(versions: &Map<String, Value>, column: &str) -> Option<DateTime<Utc>> {
    let text = versions.get(column)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl MemorySupabase {
    pub(super) fn push_rows(
        &self,
        table: &PushTable<'_>,
        rows: &[PushRow],
    ) -> Result<Vec<Refused>, PostgrestError> {
        let mut s = self.receive(RequestKind::Push, table.table, rows.len())?;
        let mut next = s.tables.get(table.table).cloned().unwrap_or_default();
        let mut refused = Vec::new();
        for (index, push) in rows.iter().enumerate() {
            s.check_values(table.table, &push.row)?;
            s.check_parents(table.table, &push.row)?;
            let key: KeyFilter = table
                .keys
                .iter()
                .map(|c| (c.clone(), column(&push.row, c).clone()))
                .collect();
            let Some(existing) = next.iter_mut().find(|r| matches_key(r, &key)) else {
                let mut row = push.row.clone();
                let versions: Map<String, Value> = push
                    .changed
                    .iter()
                    .filter(|(c, _)| table.shared.contains(c))
                    .map(|(c, t)| (c.clone(), stamp(t)))
                    .collect();
                row.insert(VERSIONS.to_owned(), Value::Object(versions));
                next.push(row);
                continue;
            };
            let mut versions = existing
                .get(VERSIONS)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (c, value) in &push.row {
                if table.keys.contains(c) {
                    continue;
                }
                if !table.shared.contains(c) {
                    existing.insert(c.clone(), value.clone());
                    continue;
                }
                let Some(at) = push.changed.get(c) else {
                    continue;
                };
                if version(&versions, c).is_none_or(|current| *at > current) {
                    existing.insert(c.clone(), value.clone());
                    versions.insert(c.clone(), stamp(at));
                } else if existing.get(c) != Some(value) {
                    refused.push(Refused {
                        index,
                        column: c.clone(),
                        value: column(existing, c).clone(),
                        version: versions.get(c).cloned().unwrap_or(Value::Null),
                    });
                }
            }
            existing.insert(VERSIONS.to_owned(), Value::Object(versions));
        }
        s.tables.insert(table.table.to_owned(), next);
        Ok(refused)
    }

    /// A portal edit of one column of the row with `key`, as the portal's UPDATE and the
    /// version trigger make it: the value, and `sync_versions[column]` stamped now.
    pub fn portal_edit(&self, table: &str, key: &KeyFilter, column: &str, value: Value) {
        let mut s = self.lock();
        let Some(row) = s
            .tables
            .get_mut(table)
            .and_then(|rows| rows.iter_mut().find(|r| matches_key(r, key)))
        else {
            return;
        };
        row.insert(column.to_owned(), value);
        let mut versions = row
            .get(VERSIONS)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        versions.insert(column.to_owned(), stamp(&Utc::now()));
        row.insert(VERSIONS.to_owned(), Value::Object(versions));
    }
}
