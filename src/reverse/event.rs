//! A reverse-sync event as the inbox stores it: one Supabase row change (webhook) or one row
//! fetched by catch-up, with the record key and version used for ordering and staleness.

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mapping::ResolvedTable;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Webhook,
    Catchup,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Catchup => "catchup",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "catchup" {
            Self::Catchup
        } else {
            Self::Webhook
        }
    }
}

/// An event before it has an inbox id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub source: EventSource,
    /// Supabase table.
    pub table: String,
    /// `INSERT`, `UPDATE`, `DELETE`, or `UPSERT` (catch-up: the row as it is now).
    pub op: String,
    /// Canonical JSON of the Supabase key columns, e.g. `{"note_uid":"…"}`.
    pub record_key: String,
    pub record: Option<Map<String, Value>>,
    pub old_record: Option<Map<String, Value>>,
    /// The row's version (`updated_at`) in microseconds since the epoch, when it has one.
    pub version: Option<i64>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub event: NewEvent,
    pub attempts: u32,
    pub received_at_ms: i64,
}

/// Parses a PostgreSQL timestamptz as rendered in JSON into microseconds since the epoch.
pub fn parse_version(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%#z"))
        .ok()
        .map(|t| t.timestamp_micros())
}

/// The canonical key of `record` for `table` (sorted Supabase key columns), if it has one.
pub fn record_key(table: &ResolvedTable, record: &Map<String, Value>) -> Option<String> {
    let key: std::collections::BTreeMap<&str, Value> = table
        .key_columns()
        .map(|c| {
            let v = record.get(&c.target)?;
            // Supabase renders uuids in lower case; normalise them so that case never splits a
            // record. Other text keys are kept as they are.
            let v = match v {
                Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => {
                    Value::String(s.to_lowercase())
                }
                Value::Null => return None,
                other => other.clone(),
            };
            Some((c.target.as_str(), v))
        })
        .collect::<Option<_>>()?;
    serde_json::to_string(&key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
