//! Per-column versions on the way in (README "Who wins"): a portal-owned column of a webhook or
//! catch-up row is written into SQL Server only when its version (`sync_versions[column]`,
//! stamped by Supabase per column; the row's `updated_at` where a row carries none) is newer
//! than the version last synced either way ([`RecordState`]). So a catch-up row never reverts
//! a clinic edit already sent (6.3), and an event is never dropped because a later event of the
//! same record, touching another column, was applied first (6.4). What to remember once a
//! write landed is [`synced_entries`].

use serde_json::{Map, Value};

use crate::mapping::table_map::SYNC_VERSIONS_COLUMN;
use crate::mapping::ResolvedTable;
use crate::sqlserver::{ReverseWrite, SqlValue, WriteAction, WriteOutcome};
use crate::sync_state::{parse_version, value_hash, Entry, RecordState, Synced};

/// Whether the row carries per-column versions (Supabase has `sql/supabase/03_versions.sql`).
pub(crate) fn has_versions(record: &Map<String, Value>) -> bool {
    record
        .get(SYNC_VERSIONS_COLUMN)
        .is_some_and(Value::is_object)
}

/// The version of `column` in `record`, microseconds since the epoch: its own, or the row's.
pub(crate) fn column_version(
    record: &Map<String, Value>,
    column: &str,
    row_version: Option<i64>,
) -> Option<i64> {
    record
        .get(SYNC_VERSIONS_COLUMN)
        .and_then(|v| v.get(column))
        .and_then(parse_version)
        .or(row_version)
}

/// Whether `record` brings `column` newer than it was last synced (or it never was).
pub(crate) fn is_newer(
    record: &Map<String, Value>,
    column: &str,
    row_version: Option<i64>,
    state: Option<&RecordState>,
) -> bool {
    match (
        column_version(record, column, row_version),
        state.and_then(|s| s.get(column)),
    ) {
        (Some(version), Some(synced)) => version > synced.version,
        _ => true,
    }
}

/// The portal-owned columns a landed write left SQL Server holding, with their versions, to
/// remember; nothing when the write was held back or found no row.
pub(crate) fn synced_entries(
    table: &ResolvedTable,
    record: &Map<String, Value>,
    record_key: &str,
    row_version: Option<i64>,
    write: &ReverseWrite,
    outcome: WriteOutcome,
) -> Vec<Entry> {
    let written: &[(String, SqlValue)] = match (&write.action, outcome) {
        (WriteAction::Upsert { insert, .. }, WriteOutcome::Inserted) => insert,
        (
            WriteAction::Upsert { update, .. } | WriteAction::UpdateOnly { update },
            WriteOutcome::Updated | WriteOutcome::Unchanged,
        ) => update,
        _ => &[],
    };
    written
        .iter()
        .filter_map(|(source, value)| {
            let col = table
                .columns
                .iter()
                .find(|c| c.portal_owned && &c.source.name == source)?;
            Some(Entry {
                record_key: record_key.to_owned(),
                column: col.target.clone(),
                synced: Synced {
                    hash: value_hash(&crate::mapping::json::to_json(value)),
                    version: column_version(record, &col.target, row_version)?,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(column: &str, version: i64) -> RecordState {
        [(
            column.to_owned(),
            Synced {
                hash: String::new(),
                version,
            },
        )]
        .into_iter()
        .collect()
    }

    fn at(text: &str) -> i64 {
        parse_version(&json!(text)).expect("a timestamp")
    }

    #[test]
    fn a_column_applies_only_when_its_own_version_is_newer_than_the_last_sync() {
        let record = json!({"note_text": "x", "is_edited": true,
            "updated_at": "2026-12-01T10:05:00+00:00",
            "sync_versions": {"note_text": "2026-12-01T10:00:00+00:00",
                              "is_edited": "2026-12-01T10:05:00+00:00"}});
        let record = record.as_object().expect("object");
        let row = Some(at("2026-12-01T10:05:00+00:00"));
        // Never synced: newer.
        assert!(is_newer(record, "note_text", row, None));
        // The clinic's edit at 10:01 was sent: the portal's 10:00 text is older (6.3).
        let sent = state("note_text", at("2026-12-01T10:01:00+00:00"));
        assert!(!is_newer(record, "note_text", row, Some(&sent)));
        // Only is_edited was applied since (10:05): the 10:00 text is still newer than what
        // was synced of note_text (6.4).
        let other = state("is_edited", at("2026-12-01T10:05:00+00:00"));
        assert!(is_newer(record, "note_text", row, Some(&other)));
        assert!(!is_newer(record, "is_edited", row, Some(&other)));
        // A tie is not newer: the same version synced already.
        let same = state("note_text", at("2026-12-01T10:00:00+00:00"));
        assert!(!is_newer(record, "note_text", row, Some(&same)));
    }

    #[test]
    fn rows_without_versions_fall_back_to_the_row_version() {
        let record = json!({"days": 3, "updated_at": "2026-12-01T10:00:00+00:00"});
        let record = record.as_object().expect("object");
        assert!(!has_versions(record));
        let row = parse_version(&record["updated_at"]);
        assert_eq!(column_version(record, "days", row), row);
        let newer = state("days", at("2026-12-01T11:00:00+00:00"));
        assert!(!is_newer(record, "days", row, Some(&newer)));
    }
}
