//! The forward write of a table with portal-owned ("shared") columns: one versioned push per
//! request ([`SupabaseApi::push`], `rpc/syncbridge_push`). A shared column counts as changed at
//! the clinic when its value's hash differs from what was last synced ([`SyncState`]); its
//! time is the record's newest queue item's `CreatedAt`. Supabase takes it only when that time
//! is newer than the column's version there; a refused column is Supabase's newer edit, which
//! is written into SQL Server at once (guarded against an even newer clinic edit), so both
//! sides end with the newest edit (README "Who wins").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::batch::Batch;
use crate::mapping::ResolvedTable;
use crate::sqlserver::{RecordKey, ReverseWrite, WriteAction, WriteOutcome};
use crate::supabase::{JsonRow, PostgrestError, PushRow, PushTable, Refused};
use crate::sync_state::{parse_version, value_hash, Entry, RecordState, Synced};

/// Per record, the time of its clinic change: its newest queue item's `CreatedAt`.
pub(super) type ClinicTimes = BTreeMap<RecordKey, DateTime<Utc>>;

/// The time of `key`'s clinic change. Every record of a batch has at least one item, so the
/// fallback (now) is for a caller's slip only.
pub(super) fn clinic_time(times: &ClinicTimes, key: &RecordKey) -> DateTime<Utc> {
    times.get(key).copied().unwrap_or_else(Utc::now)
}

impl Batch<'_> {
    /// Pushes `rows` of `table` in one request; remembers what synced and writes what Supabase
    /// refused into SQL Server. Returns how many shared columns the portal's newer edit kept.
    pub(super) async fn push(
        &self,
        table: &ResolvedTable,
        rows: &[(RecordKey, JsonRow)],
        times: &ClinicTimes,
    ) -> Result<u64, PostgrestError> {
        let keys: Vec<String> = rows
            .iter()
            .map(|(_, row)| table.record_key(row).unwrap_or_default())
            .collect();
        let states = match self.state.of_records(&table.target, keys.clone()).await {
            Ok(states) => states,
            Err(e) => {
                // Without the state every shared column counts as changed: Supabase's versions
                // still decide, so nothing newer is overwritten.
                tracing::warn!(error = %e, "sync state unreadable; comparing versions only");
                Default::default()
            }
        };
        let pushed: Vec<PushRow> = rows
            .iter()
            .zip(&keys)
            .map(|((key, row), record_key)| {
                let at = clinic_time(times, key);
                PushRow {
                    changed: changed_shared(table, row, states.get(record_key), at),
                    row: table.with_row_version(row.clone(), at),
                }
            })
            .collect();
        let shared: Vec<String> = table
            .columns
            .iter()
            .filter(|c| c.portal_owned)
            .map(|c| c.target.clone())
            .collect();
        let on = PushTable {
            table: &table.target,
            keys: &table.on_conflict(),
            shared: &shared,
        };
        let refused = self.supabase.push(&on, &pushed).await?;
        self.remember_sent(table, &keys, &pushed, &refused).await;
        for r in &refused {
            if let (Some(key), Some(row)) = (keys.get(r.index), pushed.get(r.index)) {
                self.take_portal_value(table, key, row, r).await;
            }
        }
        Ok(refused.len() as u64)
    }

    /// Remembers the shared columns Supabase took from the clinic (`record_keys` and `pushed`
    /// in the order they were pushed).
    async fn remember_sent(
        &self,
        table: &ResolvedTable,
        record_keys: &[String],
        pushed: &[PushRow],
        refused: &[Refused],
    ) {
        let entries: Vec<Entry> = record_keys
            .iter()
            .zip(pushed)
            .enumerate()
            .flat_map(|(i, (record_key, p))| {
                p.changed
                    .iter()
                    .filter(move |(c, _)| !refused.iter().any(|r| r.index == i && &r.column == *c))
                    .map(move |(c, at)| Entry {
                        record_key: record_key.clone(),
                        column: c.clone(),
                        synced: Synced {
                            hash: value_hash(p.row.get(c).unwrap_or(&Value::Null)),
                            version: at.timestamp_micros(),
                        },
                    })
            })
            .collect();
        if let Err(e) = self.state.remember(&table.target, entries).await {
            tracing::warn!(error = %e, "sync state not saved; the next push compares versions again");
        }
    }

    /// Writes Supabase's newer value of a refused column into SQL Server, unless a clinic edit
    /// newer than it is queued (that edit is pushed next and wins).
    async fn take_portal_value(
        &self,
        table: &ResolvedTable,
        record_key: &str,
        pushed: &PushRow,
        refused: &Refused,
    ) {
        let Some(version) = parse_version(&refused.version) else {
            return;
        };
        let mut record: Map<String, Value> = table
            .key_columns()
            .filter_map(|k| Some((k.target.clone(), pushed.row.get(&k.target)?.clone())))
            .collect();
        record.insert(refused.column.clone(), refused.value.clone());
        let Ok(decoded) = table.decode_record(&record) else {
            tracing::warn!(table = %table.target, column = %refused.column, "Supabase's newer value does not decode for SQL Server");
            return;
        };
        let (key, update): (Vec<_>, Vec<_>) = decoded.into_iter().partition(|(c, _)| c.key);
        let Some((column, value)) = update.first() else {
            return;
        };
        let write = ReverseWrite {
            table: table.source().to_owned(),
            key: key
                .iter()
                .map(|(c, v)| (c.source.name.clone(), v.clone()))
                .collect(),
            action: WriteAction::UpdateOnly {
                update: vec![(column.source.name.clone(), value.clone())],
            },
            guard: DateTime::from_timestamp_micros(version),
        };
        match self.store.apply(&write).await {
            Ok(WriteOutcome::Guarded) | Ok(WriteOutcome::Missing) => {}
            Ok(outcome) => {
                tracing::info!(table = %table.target, column = %refused.column, ?outcome, "a newer portal edit won over the clinic's; SQL Server updated");
                let entry = Entry {
                    record_key: record_key.to_owned(),
                    column: refused.column.clone(),
                    synced: Synced {
                        hash: value_hash(&crate::mapping::json::to_json(value)),
                        version,
                    },
                };
                if let Err(e) = self.state.remember(&table.target, vec![entry]).await {
                    tracing::warn!(error = %e, "sync state not saved");
                }
            }
            Err(e) => {
                tracing::warn!(table = %table.target, column = %refused.column, error = %e, "a newer portal edit could not be written into SQL Server; the reverse path brings it");
            }
        }
    }
}

/// The shared columns of `row` the clinic changed since they last synced (all of them for a
/// record never synced), each with the clinic's time `at`.
fn changed_shared(
    table: &ResolvedTable,
    row: &JsonRow,
    state: Option<&RecordState>,
    at: DateTime<Utc>,
) -> BTreeMap<String, DateTime<Utc>> {
    table
        .columns
        .iter()
        .filter(|c| c.portal_owned)
        .filter(|c| {
            let hash = value_hash(row.get(&c.target).unwrap_or(&Value::Null));
            state
                .and_then(|s| s.get(&c.target))
                .is_none_or(|synced| synced.hash != hash)
        })
        .map(|c| (c.target.clone(), at))
        .collect()
}
