//! The reverse-sync rules, as a pure function from one event to one SQL Server write:
//! - a row created in the portal is inserted with every mapped column it carries (if the table
//!   allows portal inserts);
//! - afterwards only portal-owned columns are written, and only those that changed
//!   (`record` vs `old_record`), so the clinic keeps what it owns and echoes write nothing;
//! - deletes only where the table map allows them.

use serde_json::{Map, Value};

use super::event::NewEvent;
use crate::mapping::resolved::DecodeError;
use crate::mapping::ResolvedTable;
use crate::sqlserver::SqlValue;
use crate::sqlserver::{ReverseWrite, WriteAction};

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Write(ReverseWrite),
    /// Nothing to write, and why (logged and counted, not an error).
    Skip(String),
}

/// Why an event cannot be applied at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{op} event for {table} has no {field}")]
    Missing {
        op: String,
        table: String,
        field: &'static str,
    },
    #[error("unknown event type {0:?} (expected INSERT, UPDATE or DELETE)")]
    UnknownOp(String),
}

pub fn plan(table: &ResolvedTable, event: &NewEvent) -> Result<Plan, PlanError> {
    let Some(reverse) = table.spec.reverse.as_ref() else {
        return Ok(Plan::Skip(format!(
            "{} is not reverse-synced",
            table.target
        )));
    };
    let missing = |field| PlanError::Missing {
        op: event.op.clone(),
        table: table.target.clone(),
        field,
    };
    match event.op.as_str() {
        "DELETE" => {
            let old = event
                .old_record
                .as_ref()
                .ok_or_else(|| missing("old_record"))?;
            let decoded = table.decode_record(old)?;
            if !reverse.delete {
                return Ok(Plan::Skip(format!(
                    "deletes of {} are not synced to SQL Server",
                    table.target
                )));
            }
            Ok(Plan::Write(ReverseWrite {
                table: table.source().to_owned(),
                key: key_of(&decoded),
                action: WriteAction::Delete,
            }))
        }
        "INSERT" | "UPDATE" | "UPSERT" => {
            let record = event.record.as_ref().ok_or_else(|| missing("record"))?;
            let decoded = table.decode_record(record)?;
            if event.op == "INSERT" && !reverse.insert {
                return Ok(Plan::Skip(format!(
                    "rows of {} are created by the clinic, not the portal",
                    table.target
                )));
            }
            if event.op == "UPDATE" && !reverse.update {
                return Ok(Plan::Skip(format!(
                    "updates of {} are not synced to SQL Server",
                    table.target
                )));
            }
            let old = if event.op == "UPDATE" {
                event.old_record.as_ref()
            } else {
                None
            };
            let update: Vec<(String, SqlValue)> = decoded
                .iter()
                .filter(|(c, _)| c.portal_owned && changed(record, old, &c.target))
                .map(|(c, v)| (c.source.name.clone(), v.clone()))
                .collect();
            if event.op == "UPDATE" && update.is_empty() {
                return Ok(Plan::Skip("no portal-owned column changed".to_owned()));
            }
            let key = key_of(&decoded);
            let action = if reverse.insert {
                let insert = decoded
                    .iter()
                    .filter(|(c, _)| !c.source.identity)
                    .map(|(c, v)| (c.source.name.clone(), v.clone()))
                    .collect();
                WriteAction::Upsert { insert, update }
            } else {
                WriteAction::UpdateOnly { update }
            };
            Ok(Plan::Write(ReverseWrite {
                table: table.source().to_owned(),
                key,
                action,
            }))
        }
        other => Err(PlanError::UnknownOp(other.to_owned())),
    }
}

fn key_of(
    decoded: &[(&crate::mapping::resolved::MappedColumn, SqlValue)],
) -> Vec<(String, SqlValue)> {
    decoded
        .iter()
        .filter(|(c, _)| c.key)
        .map(|(c, v)| (c.source.name.clone(), v.clone()))
        .collect()
}

/// A column changed unless `old_record` carries it with the same value. Without an
/// `old_record` (catch-up, or a webhook that omits it) every column counts as changed and SQL
/// Server's own comparison decides.
fn changed(record: &Map<String, Value>, old: Option<&Map<String, Value>>, column: &str) -> bool {
    match old.and_then(|o| o.get(column)) {
        Some(before) => record.get(column) != Some(before),
        None => true,
    }
}

#[cfg(test)]
mod tests;
