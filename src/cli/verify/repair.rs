//! `verify --fix`: which way each difference is repaired ([`direction`], the one place that
//! decides it, so it can follow the conflict rules), and queueing the repairs: forward repairs
//! go into `SyncQueue` ([`SqlStore::queue_records`]) for the worker, which sends each record
//! as it is then (upserted, or deleted in Supabase when SQL Server has no such row); reverse
//! repairs are written into SQL Server by the reverse path's own rules (`reverse::intake` and
//! `reverse::plan`, as catch-up writes a row it read), with the row verify just read.

use serde_json::Value;

use super::scan::Difference;
use crate::mapping::ResolvedTable;
use crate::reverse::intake::{self, Intake};
use crate::reverse::plan::{plan, Plan};
use crate::sqlserver::{RecordKey, SqlStore, StoreError};
use crate::supabase::JsonRow;

/// Which way a difference is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// SQL Server's row is sent to Supabase (or its absence: a delete there).
    Forward,
    /// Supabase's row is written into SQL Server.
    Reverse,
    /// Clinic-owned columns forward, portal-owned columns back.
    Both,
    /// Left as it is, and why.
    Leave(&'static str),
}

/// The repair of one difference, by column ownership:
/// - a row SQL Server has and Supabase lacks, or clinic-owned columns that differ: forward;
/// - a row only Supabase has: written into SQL Server where the portal may create rows
///   (`reverse.insert`), otherwise it is not the clinic's and is deleted in Supabase (forward);
/// - portal-owned columns that differ: the portal's value wins (reverse) where the table syncs
///   portal updates back; where it does not, nothing is written (the portal owns them and
///   the forward path never overwrites them).
pub(crate) fn direction(table: &ResolvedTable, diff: &Difference) -> Direction {
    let reverse = table.spec.reverse.as_ref();
    match diff {
        Difference::MissingInSupabase { .. } => Direction::Forward,
        Difference::MissingInSqlServer { .. } if reverse.is_some_and(|r| r.insert) => {
            Direction::Reverse
        }
        Difference::MissingInSqlServer { .. } => Direction::Forward,
        Difference::Differs { columns, .. } => {
            let portal = |c: &String| table.by_target(c).is_some_and(|m| m.portal_owned);
            let clinic = columns.iter().any(|c| !portal(c));
            let portal = columns.iter().any(portal);
            let back = reverse.is_some_and(|r| r.update || r.insert);
            match (clinic, portal && back) {
                (true, true) => Direction::Both,
                (true, false) => Direction::Forward,
                (false, true) => Direction::Reverse,
                (false, false) => {
                    Direction::Leave("portal-owned columns of a table not synced back")
                }
            }
        }
    }
}

/// What `--fix` queued or wrote for one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Records queued for the forward worker.
    pub queued_forward: u64,
    /// Rows written into SQL Server from Supabase.
    pub written_back: u64,
    /// Differences left alone.
    pub left: u64,
}

fn key_and_record(diff: &Difference) -> (&RecordKey, Option<&JsonRow>) {
    match diff {
        Difference::MissingInSupabase { key } => (key, None),
        Difference::MissingInSqlServer { key, record }
        | Difference::Differs { key, record, .. } => (key, Some(record)),
    }
}

/// The Supabase row as the reverse path reads a current row: its mapped columns and the
/// version column.
fn current_row(table: &ResolvedTable, record: &JsonRow) -> JsonRow {
    let version = table
        .spec
        .reverse
        .as_ref()
        .map(|r| r.version_column.as_str());
    record
        .iter()
        .filter(|(c, _)| table.by_target(c).is_some() || Some(c.as_str()) == version)
        .map(|(c, v): (&String, &Value)| (c.clone(), v.clone()))
        .collect()
}

/// Repairs `diffs` of `table`: forward ones queued, reverse ones written.
pub(crate) async fn repair(
    store: &dyn SqlStore,
    table: &ResolvedTable,
    key_columns: &[String],
    diffs: &[Difference],
) -> Result<Repaired, StoreError> {
    let mut done = Repaired::default();
    let mut forward = Vec::new();
    for diff in diffs {
        let (key, record) = key_and_record(diff);
        let way = direction(table, diff);
        if matches!(way, Direction::Forward | Direction::Both) {
            forward.push(key.clone());
        }
        if let (Direction::Reverse | Direction::Both, Some(record)) = (way, record) {
            done.written_back += u64::from(write_back(store, table, record).await?);
        }
        if let Direction::Leave(why) = way {
            tracing::info!(table = %table.target, record = %key, why, "left as it is");
            done.left += 1;
        }
    }
    done.queued_forward = store
        .queue_records(table.source(), key_columns, &forward, None)
        .await?;
    Ok(done)
}

/// Writes one Supabase row into SQL Server as catch-up would; whether it wrote.
async fn write_back(
    store: &dyn SqlStore,
    table: &ResolvedTable,
    record: &JsonRow,
) -> Result<bool, StoreError> {
    let row = current_row(table, record);
    let event = match intake::current_row(table, row) {
        Ok(Intake::Accept(event)) => event,
        Ok(Intake::Ignore(why)) => {
            tracing::info!(table = %table.target, why, "not written back");
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(table = %table.target, error = %e, "cannot write this row back");
            return Ok(false);
        }
    };
    match plan(table, &event) {
        Ok(Plan::Write(write)) => store.apply(&write).await.map(|_| true),
        Ok(Plan::Skip(_)) | Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::ResolvedMap;

    fn differs(columns: &[&str]) -> Difference {
        Difference::Differs {
            key: RecordKey(Default::default()),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            record: JsonRow::new(),
        }
    }

    #[tokio::test]
    async fn ownership_decides_the_direction_of_each_repair() {
        let map = ResolvedMap::sample_clinic().await;
        let table = |name: &str| map.by_source(name).expect("mapped");
        let (patients, batches, notes) = (
            table("tblPatients"),
            table("tblAlignerBatches"),
            table("tblAlignerNotes"),
        );
        let missing = Difference::MissingInSupabase {
            key: RecordKey(Default::default()),
        };
        let extra = Difference::MissingInSqlServer {
            key: RecordKey(Default::default()),
            record: JsonRow::new(),
        };
        assert_eq!(direction(patients, &missing), Direction::Forward);
        assert_eq!(
            direction(patients, &extra),
            Direction::Forward,
            "a clinic table's extra row is deleted in Supabase"
        );
        assert_eq!(direction(batches, &extra), Direction::Forward);
        assert_eq!(
            direction(notes, &extra),
            Direction::Reverse,
            "the portal creates notes"
        );
        assert_eq!(
            direction(patients, &differs(&["phone"])),
            Direction::Forward
        );
        assert_eq!(direction(batches, &differs(&["days"])), Direction::Reverse);
        assert_eq!(
            direction(batches, &differs(&["days", "notes"])),
            Direction::Both
        );
        assert_eq!(direction(notes, &differs(&["is_read"])), Direction::Forward);
        assert_eq!(
            direction(notes, &differs(&["note_text"])),
            Direction::Reverse
        );
    }
}
