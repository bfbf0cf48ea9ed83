//! Backfill's per-table checkpoints, in the agent's local SQLite file (`local_db`): the last key
//! queued (its RecordID JSON, parsed by the command), how many rows were queued of how many the
//! table had, and whether the table is done. `syncbridge backfill` writes them durably after
//! every page, so an interrupted backfill resumes after the last page it queued and a finished
//! table is not queued again unless asked (`--restart`); the agent's `/metrics` reads them
//! (the backfill progress gauges), since the command runs beside the agent, not in it.

use rusqlite::OptionalExtension;

use crate::local_db::{durable, LocalDb, LocalDbError};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS backfill_checkpoint (
    table_name TEXT PRIMARY KEY NOT NULL,
    last_key   TEXT,
    enqueued   INTEGER NOT NULL DEFAULT 0,
    rows       INTEGER NOT NULL DEFAULT 0,
    done       INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);";

/// Where one table's backfill stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The last key queued (RecordID JSON); the next page starts after it.
    pub(crate) last: Option<String>,
    /// Items queued so far, over every run since the last restart.
    pub(crate) enqueued: u64,
    /// Rows the table had when the latest run started.
    pub(crate) rows: u64,
    pub(crate) done: bool,
}

#[derive(Clone)]
pub(crate) struct Checkpoints {
    db: LocalDb,
}

fn count(value: i64) -> u64 {
    value.try_into().unwrap_or(0)
}

fn read(r: &rusqlite::Row<'_>) -> Result<Checkpoint, rusqlite::Error> {
    Ok(Checkpoint {
        last: r.get(0)?,
        enqueued: count(r.get(1)?),
        rows: count(r.get(2)?),
        done: r.get::<_, i64>(3)? != 0,
    })
}

impl Checkpoints {
    pub(crate) fn open(db: LocalDb) -> Result<Self, LocalDbError> {
        db.create(SCHEMA)?;
        Ok(Self { db })
    }

    pub(crate) async fn get(&self, table: &str) -> Result<Checkpoint, LocalDbError> {
        let table = table.to_owned();
        self.db
            .with(move |c| {
                c.query_row(
                    "SELECT last_key, enqueued, rows, done FROM backfill_checkpoint WHERE table_name = ?1",
                    [&table],
                    read,
                )
                .optional()
                .map(Option::unwrap_or_default)
            })
            .await
    }

    /// Every table's checkpoint, by table name.
    pub(crate) async fn all(&self) -> Result<Vec<(String, Checkpoint)>, LocalDbError> {
        self.db
            .with(|c| {
                let mut statement = c.prepare(
                    "SELECT last_key, enqueued, rows, done, table_name FROM backfill_checkpoint ORDER BY table_name",
                )?;
                let rows = statement.query_map([], |r| Ok((r.get(4)?, read(r)?)))?;
                rows.collect()
            })
            .await
    }

    /// Records `point` for `table`, fsync'd before it returns: the page it follows is in
    /// SQL Server already, and a crash must not make the next run skip it.
    pub(crate) async fn put(&self, table: &str, point: &Checkpoint) -> Result<(), LocalDbError> {
        let table = table.to_owned();
        let last = point.last.clone();
        let enqueued = i64::try_from(point.enqueued).unwrap_or(i64::MAX);
        let rows = i64::try_from(point.rows).unwrap_or(i64::MAX);
        let done = i64::from(point.done);
        self.db
            .with(move |c| {
                durable(c, true)?;
                c.execute(
                    "INSERT INTO backfill_checkpoint (table_name, last_key, enqueued, rows, done, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                     ON CONFLICT (table_name) DO UPDATE SET last_key = excluded.last_key,
                        enqueued = excluded.enqueued, rows = excluded.rows, done = excluded.done,
                        updated_at = excluded.updated_at",
                    rusqlite::params![table, last, enqueued, rows, done],
                )?;
                durable(c, false)
            })
            .await
    }

    /// Forgets `table`'s checkpoint: the next backfill queues it from the start.
    pub(crate) async fn clear(&self, table: &str) -> Result<(), LocalDbError> {
        let table = table.to_owned();
        self.db
            .with(move |c| {
                c.execute(
                    "DELETE FROM backfill_checkpoint WHERE table_name = ?1",
                    [&table],
                )
                .map(drop)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_checkpoint_survives_reopening_and_a_restart_forgets_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let point = Checkpoint {
            last: Some(r#"{"PersonID":1000}"#.to_owned()),
            enqueued: 1000,
            rows: 5000,
            done: false,
        };
        {
            let store = Checkpoints::open(LocalDb::open(dir.path()).expect("db")).expect("open");
            assert_eq!(
                store.get("tblPatients").await.expect("get"),
                Checkpoint::default()
            );
            store.put("tblPatients", &point).await.expect("put");
        }
        let store = Checkpoints::open(LocalDb::open(dir.path()).expect("db")).expect("reopen");
        assert_eq!(store.get("tblPatients").await.expect("get"), point);
        assert_eq!(
            store.all().await.expect("all"),
            [("tblPatients".to_owned(), point.clone())]
        );
        store.clear("tblPatients").await.expect("clear");
        assert_eq!(
            store.get("tblPatients").await.expect("get"),
            Checkpoint::default()
        );
    }
}
