//! What the agent last synced of each portal-owned ("shared") column, either way: per
//! (Supabase table, record key, column) a hash of the value both sides were left holding and
//! that value's version (UTC microseconds: the clinic's queue time or the portal's stamp).
//! Forward sync asks it whether the clinic changed a shared column (its value's hash differs);
//! reverse sync whether a portal version is newer than what was last synced. In the agent's
//! local database beside the inbox; knows nothing of the rule itself (README "Who wins").

use std::collections::HashMap;

use rusqlite::params;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::local_db::{durable, LocalDb, LocalDbError};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS shared_columns (
        table_name TEXT NOT NULL,
        record_key TEXT NOT NULL,
        column_name TEXT NOT NULL,
        value_hash TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (table_name, record_key, column_name)
    ) WITHOUT ROWID;
";

/// One shared column as last synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Synced {
    pub(crate) hash: String,
    /// Microseconds since the epoch, UTC.
    pub(crate) version: i64,
}

/// A record's shared columns as last synced, by Supabase column name.
pub(crate) type RecordState = HashMap<String, Synced>;

/// One column to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) record_key: String,
    pub(crate) column: String,
    pub(crate) synced: Synced,
}

#[derive(Clone)]
pub(crate) struct SyncState {
    db: LocalDb,
}

/// Parses a PostgreSQL timestamptz as rendered in JSON into microseconds since the epoch.
pub(crate) fn parse_version(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%#z"))
        .ok()
        .map(|t| t.timestamp_micros())
}

/// The hash of a value as the JSON the agent maps it to (so that the same value read from
/// either side hashes the same).
pub(crate) fn value_hash(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

impl SyncState {
    pub(crate) fn open(db: LocalDb) -> Result<Self, LocalDbError> {
        db.create(SCHEMA)?;
        Ok(Self { db })
    }

    /// The last synced state of each record of `table` in `keys` (records never synced are
    /// absent).
    pub(crate) async fn of_records(
        &self,
        table: &str,
        keys: Vec<String>,
    ) -> Result<HashMap<String, RecordState>, LocalDbError> {
        let table = table.to_owned();
        self.db
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT column_name, value_hash, version FROM shared_columns
                     WHERE table_name = ?1 AND record_key = ?2",
                )?;
                let mut out: HashMap<String, RecordState> = HashMap::new();
                for key in keys {
                    let rows = stmt.query_map(params![table, key], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            Synced {
                                hash: r.get(1)?,
                                version: r.get(2)?,
                            },
                        ))
                    })?;
                    let state: RecordState = rows.collect::<Result<_, _>>()?;
                    if !state.is_empty() {
                        out.insert(key, state);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Remembers `entries` of `table`. Not fsync'd: a state lost in a crash only makes the
    /// next sync of those columns compare versions again, which decides the same way.
    pub(crate) async fn remember(
        &self,
        table: &str,
        entries: Vec<Entry>,
    ) -> Result<(), LocalDbError> {
        if entries.is_empty() {
            return Ok(());
        }
        let table = table.to_owned();
        self.db
            .with(move |conn| {
                durable(conn, false)?;
                let tx = conn.transaction()?;
                {
                    let mut upsert = tx.prepare_cached(
                        "INSERT INTO shared_columns (table_name, record_key, column_name, value_hash, version)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (table_name, record_key, column_name)
                         DO UPDATE SET value_hash = excluded.value_hash, version = excluded.version",
                    )?;
                    for e in &entries {
                        upsert.execute(params![
                            table,
                            e.record_key,
                            e.column,
                            e.synced.hash,
                            e.synced.version
                        ])?;
                    }
                }
                tx.commit()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembered_columns_read_back_per_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SyncState::open(LocalDb::open(dir.path()).expect("db")).expect("state");
        let entry = |key: &str, column: &str, version| Entry {
            record_key: key.to_owned(),
            column: column.to_owned(),
            synced: Synced {
                hash: value_hash(&Value::from(version)),
                version,
            },
        };
        state
            .remember(
                "notes",
                vec![entry("a", "text", 1), entry("a", "edited", 2)],
            )
            .await
            .expect("remember");
        state
            .remember("notes", vec![entry("a", "text", 3)])
            .await
            .expect("overwrite");
        let read = state
            .of_records("notes", vec!["a".into(), "b".into()])
            .await
            .expect("read");
        assert_eq!(read.len(), 1, "b was never synced");
        assert_eq!(read["a"]["text"].version, 3);
        assert_eq!(read["a"]["edited"].version, 2);
        assert_ne!(value_hash(&Value::from(1)), value_hash(&Value::from("1")));
    }
}
