//! Intake: the one place a Supabase row change becomes an event the inbox accepts, or a typed
//! refusal with its reason. Webhooks ([`webhook`]) and catch-up ([`current_row`]) both come
//! through here, so an event is accepted only when the applier could apply it: a reverse-synced
//! table, a known operation, a record that decodes into SQL Server's types, and its key. Columns
//! the map does not know are not a reason to refuse: they are ignored ([`unknown_columns`]).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::event::{parse_version, record_key, EventKind, NewEvent};
use super::plan::{plan, Plan, PlanError};
use crate::mapping::drift::Drift;
use crate::mapping::{ResolvedMap, ResolvedTable};
use crate::sqlserver::Op;

/// The Supabase Database Webhook payload. Unknown fields (e.g. `user_id`) are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct WebhookPayload {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) table: String,
    #[serde(default)]
    pub(crate) schema: Option<String>,
    #[serde(default)]
    pub(crate) record: Option<Map<String, Value>>,
    #[serde(default)]
    pub(crate) old_record: Option<Map<String, Value>>,
}

/// What intake made of a change it does not refuse.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Intake {
    /// Store it: the applier will write it.
    Accept(NewEvent),
    /// Nothing to write, and why (an echo, a direction the map does not sync).
    Ignore(String),
}

/// Why a change is refused: nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("table {0:?} is not reverse-synced")]
    NotReverseSynced(String),
    #[error("unknown event type {0:?} (expected INSERT, UPDATE or DELETE)")]
    UnknownType(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("record lacks its key columns")]
    MissingKey,
}

/// A Database Webhook's change. Its `type` must be `INSERT`, `UPDATE` or `DELETE`: the
/// catch-up kind ([`EventKind::CurrentRow`]) cannot be sent.
pub(crate) fn webhook(map: &ResolvedMap, payload: WebhookPayload) -> Result<Intake, Refusal> {
    let table = match (payload.schema.as_deref(), map.by_target(&payload.table)) {
        (None | Some("public"), Some(t)) if t.spec.reverse.is_some() => t,
        _ => return Err(Refusal::NotReverseSynced(payload.table)),
    };
    let op: Op = payload
        .kind
        .parse()
        .map_err(|_| Refusal::UnknownType(payload.kind.clone()))?;
    change(
        table,
        EventKind::Change(op),
        payload.record,
        payload.old_record,
    )
}

/// The columns of a webhook's records that the map does not know (schema drift): ignored, and
/// reported by the caller.
pub(crate) fn unknown_columns(map: &ResolvedMap, payload: &WebhookPayload) -> Vec<Drift> {
    let Some(table) = map.by_target(&payload.table) else {
        return Vec::new();
    };
    let mut drift: Vec<Drift> = [&payload.record, &payload.old_record]
        .into_iter()
        .flatten()
        .flat_map(|r| table.unknown_columns(r))
        .collect();
    drift.sort();
    drift.dedup();
    drift
}

/// A row of a reverse-synced table as catch-up read it.
pub(crate) fn current_row(
    table: &ResolvedTable,
    row: Map<String, Value>,
) -> Result<Intake, Refusal> {
    change(table, EventKind::CurrentRow, Some(row), None)
}

fn change(
    table: &ResolvedTable,
    kind: EventKind,
    record: Option<Map<String, Value>>,
    old_record: Option<Map<String, Value>>,
) -> Result<Intake, Refusal> {
    // A delete's identity and version are those of the row it removes.
    let carrier = if kind.is_delete() {
        &old_record
    } else {
        &record
    };
    let key = carrier.as_ref().and_then(|r| record_key(table, r));
    let version = table.spec.reverse.as_ref().and_then(|reverse| {
        carrier
            .as_ref()
            .and_then(|r| r.get(&reverse.version_column))
            .and_then(parse_version)
    });
    let event = NewEvent {
        kind,
        table: table.target.clone(),
        record_key: key.clone().unwrap_or_default(),
        version,
        record,
        old_record,
    };
    match plan(table, &event)? {
        Plan::Skip(reason) => Ok(Intake::Ignore(reason)),
        Plan::Write(_) if key.is_none() => Err(Refusal::MissingKey),
        Plan::Write(_) => Ok(Intake::Accept(event)),
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "intake_props.rs"]
mod props;
