//! The reverse-sync rules, as a pure function from one event to one SQL Server write:
//! - a row created in the portal is inserted with every mapped column it carries (if the table
//!   allows portal inserts);
//! - afterwards only portal-owned columns are written, and only those that changed
//!   (`record` vs `old_record`), so the clinic keeps what it owns and echoes write nothing;
//! - deletes only where the table map allows them.

use serde_json::{Map, Value};

use super::event::{EventKind, NewEvent};
use super::versions::{column_version, has_versions, is_newer};
use crate::mapping::resolved::{DecodeError, MappedColumn};
use crate::mapping::{ResolvedTable, ReverseSpec};
use crate::sqlserver::{Op, ReverseWrite, SqlValue, WriteAction};
use crate::sync_state::RecordState;

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    Write(ReverseWrite),
    /// Nothing to write, and why (logged and counted, not an error).
    Skip(String),
}

/// Why an event cannot be applied at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{kind} event for {table} has no {field}")]
    Missing {
        kind: EventKind,
        table: String,
        field: &'static str,
    },
}

/// The plan of `event` before knowing what was last synced (intake: can it be applied at all).
pub(crate) fn plan(table: &ResolvedTable, event: &NewEvent) -> Result<Plan, PlanError> {
    plan_with(table, event, None)
}

/// The plan of `event` given the record's portal-owned columns as last synced (`state`).
pub(crate) fn plan_with(
    table: &ResolvedTable,
    event: &NewEvent,
    state: Option<&RecordState>,
) -> Result<Plan, PlanError> {
    let Some(reverse) = table.spec.reverse.as_ref() else {
        return Ok(Plan::Skip(format!(
            "{} is not reverse-synced",
            table.target
        )));
    };
    if event.kind.is_delete() {
        plan_delete(table, reverse, event)
    } else {
        plan_upsert(table, reverse, event, state)
    }
}

fn missing(table: &ResolvedTable, event: &NewEvent, field: &'static str) -> PlanError {
    PlanError::Missing {
        kind: event.kind,
        table: table.target.clone(),
        field,
    }
}

fn plan_delete(
    table: &ResolvedTable,
    reverse: &ReverseSpec,
    event: &NewEvent,
) -> Result<Plan, PlanError> {
    let old = event
        .old_record
        .as_ref()
        .ok_or_else(|| missing(table, event, "old_record"))?;
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
        guard: None,
    }))
}

/// An insert, an update or a current row: written where the map allows it, portal-owned
/// columns only where they changed.
fn plan_upsert(
    table: &ResolvedTable,
    reverse: &ReverseSpec,
    event: &NewEvent,
    state: Option<&RecordState>,
) -> Result<Plan, PlanError> {
    let record = event
        .record
        .as_ref()
        .ok_or_else(|| missing(table, event, "record"))?;
    let decoded = table.decode_record(record)?;
    let (is_insert, is_update) = (
        event.kind == EventKind::Change(Op::Insert),
        event.kind == EventKind::Change(Op::Update),
    );
    if is_insert && !reverse.insert {
        return Ok(Plan::Skip(format!(
            "rows of {} are created by the clinic, not the portal",
            table.target
        )));
    }
    if is_update && !reverse.update {
        return Ok(Plan::Skip(format!(
            "updates of {} are not synced to SQL Server",
            table.target
        )));
    }
    let old = if is_update {
        event.old_record.as_ref()
    } else {
        None
    };
    // With per-column versions each column's own version decides (README "Who wins"); a row
    // without them (versions not installed) falls back to record vs old_record.
    let versioned = has_versions(record);
    let wanted = |c: &MappedColumn| {
        let newer = is_newer(record, &c.target, event.version, state);
        newer && (versioned || changed(record, old, &c.target))
    };
    let written: Vec<&MappedColumn> = decoded
        .iter()
        .filter(|(c, _)| c.portal_owned && wanted(c))
        .map(|(c, _)| *c)
        .collect();
    let update: Vec<(String, SqlValue)> = decoded
        .iter()
        .filter(|(c, _)| written.iter().any(|w| w.target == c.target))
        .map(|(c, v)| (c.source.name.clone(), v.clone()))
        .collect();
    // Not over a clinic edit queued after the oldest portal version written here.
    let guard = written
        .iter()
        .filter_map(|c| column_version(record, &c.target, event.version))
        .min()
        .and_then(chrono::DateTime::from_timestamp_micros);
    if is_update && update.is_empty() {
        return Ok(Plan::Skip("no portal-owned column changed".to_owned()));
    }
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
        key: key_of(&decoded),
        action,
        guard,
    }))
}

fn key_of(decoded: &[(&MappedColumn, SqlValue)]) -> Vec<(String, SqlValue)> {
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
