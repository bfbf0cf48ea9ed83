//! A reverse-sync event as the inbox stores it: one Supabase row change (webhook) or one row
//! as catch-up read it, with the record key and version used for ordering and staleness.

use std::fmt;

use serde_json::{Map, Value};

use crate::mapping::ResolvedTable;
use crate::sqlserver::Op;
pub(crate) use crate::sync_state::parse_version;

/// What an event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A row change Supabase reported through a Database Webhook.
    Change(Op),
    /// A row as it is now, read by catch-up (no `old_record`). Only catch-up makes these: no
    /// webhook payload becomes one.
    CurrentRow,
}

impl EventKind {
    /// Where events of this kind come from, for logs and the inbox's `source` column.
    pub(crate) fn source(self) -> &'static str {
        match self {
            Self::Change(_) => "webhook",
            Self::CurrentRow => "catchup",
        }
    }

    /// The inbox's `op` column.
    pub(crate) fn stored_op(self) -> &'static str {
        match self {
            Self::Change(op) => op.as_str(),
            Self::CurrentRow => "UPSERT",
        }
    }

    /// Reads the inbox's `source` and `op` columns back; `None` for a pair no version of the
    /// agent writes. A webhook `UPSERT` was accepted (and applied as a current row) before
    /// intake refused it, so such events still in an inbox drain as they would have.
    pub(crate) fn from_stored(source: &str, op: &str) -> Option<Self> {
        if source == "catchup" || op == "UPSERT" {
            return Some(Self::CurrentRow);
        }
        op.parse().ok().map(Self::Change)
    }

    pub(crate) fn is_delete(self) -> bool {
        self == Self::Change(Op::Delete)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Change(op) => write!(f, "{op}"),
            Self::CurrentRow => f.write_str("catch-up"),
        }
    }
}

/// An event before it has an inbox id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    pub(crate) kind: EventKind,
    /// Supabase table.
    pub(crate) table: String,
    /// Canonical JSON of the Supabase key columns, e.g. `{"note_uid":"…"}`.
    pub(crate) record_key: String,
    pub(crate) record: Option<Map<String, Value>>,
    pub(crate) old_record: Option<Map<String, Value>>,
    /// The row's version (`updated_at`) in microseconds since the epoch, when it has one.
    pub(crate) version: Option<i64>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEvent {
    pub(crate) id: i64,
    pub(crate) event: NewEvent,
    pub(crate) attempts: u32,
}

/// The canonical key of `record` for `table` (sorted Supabase key columns), if it has one.
pub(crate) fn record_key(table: &ResolvedTable, record: &Map<String, Value>) -> Option<String> {
    table.record_key(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_read_back_as_they_were_stored() {
        for kind in [
            EventKind::Change(Op::Insert),
            EventKind::Change(Op::Update),
            EventKind::Change(Op::Delete),
            EventKind::CurrentRow,
        ] {
            assert_eq!(
                EventKind::from_stored(kind.source(), kind.stored_op()),
                Some(kind)
            );
        }
        assert_eq!(
            EventKind::from_stored("webhook", "UPSERT"),
            Some(EventKind::CurrentRow)
        );
        assert_eq!(EventKind::from_stored("webhook", "TRUNCATE"), None);
    }

    #[test]
    fn versions_parse_postgres_json_timestamps() {
        let a = parse_version(&json!("2026-11-25T10:00:00.123456+00:00")).expect("parses");
        let b = parse_version(&json!("2026-11-25T13:00:00.123457+03:00")).expect("parses");
        assert_eq!(b - a, 1);
        assert_eq!(
            parse_version(&json!("2026-11-25T10:00:00+00")),
            parse_version(&json!("2026-11-25T10:00:00+00:00"))
        );
        assert_eq!(parse_version(&json!("yesterday")), None);
        assert_eq!(parse_version(&json!(5)), None);
    }
}
