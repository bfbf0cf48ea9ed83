//! Backfill's per-table checkpoints, in the agent's local SQLite file (`local_db`): the last key
//! queued and whether the table is done, written durably after every page, so an interrupted
//! backfill resumes after the last page it queued and a finished table is not queued again
//! unless asked (`--restart`).

use rusqlite::OptionalExtension;

use crate::local_db::{durable, LocalDb, LocalDbError};
use crate::sqlserver::RecordKey;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS backfill_checkpoint (
    table_name TEXT PRIMARY KEY NOT NULL,
    last_key   TEXT,
    enqueued   INTEGER NOT NULL DEFAULT 0,
    done       INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);";

/// Where one table's backfill stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The last key queued; the next page starts after it.
    pub(crate) last: Option<RecordKey>,
    /// Items queued so far, over every run since the last restart.
    pub(crate) enqueued: u64,
    pub(crate) done: bool,
}

#[derive(Clone)]
pub(crate) struct Checkpoints {
    db: LocalDb,
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
                    "SELECT last_key, enqueued, done FROM backfill_checkpoint WHERE table_name = ?1",
                    [&table],
                    |r| {
                        let last: Option<String> = r.get(0)?;
                        Ok(Checkpoint {
                            // A key this version cannot read back restarts the table: queueing
                            // rows twice is harmless, skipping them is not.
                            last: last.and_then(|k| RecordKey::parse(&k).ok()),
                            enqueued: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                            done: r.get::<_, i64>(2)? != 0,
                        })
                    },
                )
                .optional()
                .map(Option::unwrap_or_default)
            })
            .await
    }

    /// Records `point` for `table`, fsync'd before it returns: the page it follows is in
    /// SQL Server already, and a crash must not make the next run skip it.
    pub(crate) async fn put(&self, table: &str, point: &Checkpoint) -> Result<(), LocalDbError> {
        let table = table.to_owned();
        let last = point.last.as_ref().map(RecordKey::to_json);
        let enqueued = i64::try_from(point.enqueued).unwrap_or(i64::MAX);
        let done = i64::from(point.done);
        self.db
            .with(move |c| {
                durable(c, true)?;
                c.execute(
                    "INSERT INTO backfill_checkpoint (table_name, last_key, enqueued, done, updated_at)
                     VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                     ON CONFLICT (table_name) DO UPDATE SET last_key = excluded.last_key,
                        enqueued = excluded.enqueued, done = excluded.done,
                        updated_at = excluded.updated_at",
                    rusqlite::params![table, last, enqueued, done],
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
    use crate::sqlserver::KeyPart;

    #[tokio::test]
    async fn a_checkpoint_survives_reopening_and_a_restart_forgets_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let point = Checkpoint {
            last: Some(RecordKey(
                [("PersonID".to_owned(), KeyPart::Int(1000))]
                    .into_iter()
                    .collect(),
            )),
            enqueued: 1000,
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
        store.clear("tblPatients").await.expect("clear");
        assert_eq!(
            store.get("tblPatients").await.expect("get"),
            Checkpoint::default()
        );
    }
}
