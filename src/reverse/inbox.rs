//! The durable inbox, in the agent's local SQLite database (WAL, `synchronous=FULL`, so a
//! commit is fsync'd): every accepted reverse event until it is applied, the last applied
//! version of each record, and the catch-up watermarks. An event is committed here before the
//! webhook is answered 2xx; applied events are deleted at once.

use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::event::{NewEvent, StoredEvent};
use crate::local_db::{durable, LocalDb, LocalDbError};

/// The inbox's errors are its database's.
pub(crate) type InboxError = LocalDbError;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct InboxStats {
    /// Events accepted but not yet applied (including those waiting for a retry).
    pub(crate) depth: u64,
    /// Events given up on after the maximum attempts; kept for inspection.
    pub(crate) dead: u64,
    pub(crate) oldest_unapplied_age_secs: Option<u64>,
}

/// Where catch-up resumes for a table: the last `(version, key)` it has stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Watermark {
    pub(crate) version: String,
    pub(crate) key: String,
}

/// A dead event and its last error, for troubleshooting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DeadEvent {
    pub(crate) id: i64,
    pub(crate) table: String,
    pub(crate) key: String,
    pub(crate) error: String,
}

#[derive(Clone)]
pub(crate) struct Inbox {
    db: LocalDb,
    /// Webhooks' events go through one writer task that commits them in groups.
    group: Arc<group::GroupWriter>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at INTEGER NOT NULL,
        source TEXT NOT NULL,
        table_name TEXT NOT NULL,
        record_key TEXT NOT NULL,
        op TEXT NOT NULL,
        record TEXT,
        old_record TEXT,
        version INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        dead INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS events_record ON events (table_name, record_key, id);
    CREATE INDEX IF NOT EXISTS events_due ON events (dead, next_attempt_at);
    CREATE TABLE IF NOT EXISTS record_versions (
        table_name TEXT NOT NULL,
        record_key TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (table_name, record_key)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS watermarks (
        table_name TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        record_key TEXT NOT NULL
    );
";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn to_text(map: &Option<serde_json::Map<String, serde_json::Value>>) -> Option<String> {
    map.as_ref().and_then(|m| serde_json::to_string(m).ok())
}

fn from_text(text: Option<String>) -> Option<serde_json::Map<String, serde_json::Value>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Inserts `events` in `tx`, in order; returns their ids.
fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[NewEvent],
) -> Result<Vec<i64>, rusqlite::Error> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (received_at, source, table_name, record_key, op, record, old_record, version, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?1)",
    )?;
    let now = now_ms();
    let mut ids = Vec::with_capacity(events.len());
    for e in events {
        insert.execute(params![
            now,
            e.kind.source(),
            e.table,
            e.record_key,
            e.kind.stored_op(),
            to_text(&e.record),
            to_text(&e.old_record),
            e.version
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}

impl Inbox {
    /// The local database the inbox lives in (shared with its other owners).
    pub(crate) fn local_db(&self) -> LocalDb {
        self.db.clone()
    }

    /// The inbox in `db`, its tables created if needed.
    pub(crate) fn open(db: LocalDb) -> Result<Self, InboxError> {
        db.create(SCHEMA)?;
        Ok(Self {
            db,
            group: Arc::default(),
        })
    }

    /// The local database the inbox lives in (shared with the other owners of the file).
    pub(crate) fn db(&self) -> &LocalDb {
        &self.db
    }

    /// Stores `events` (and the catch-up watermark, in the same transaction), fsync'd before it
    /// returns: this is what lets the webhook answer 2xx only once the event survives a power
    /// cut. Returns their ids.
    pub(crate) async fn append(
        &self,
        events: Vec<NewEvent>,
        watermark: Option<(String, Watermark)>,
    ) -> Result<Vec<i64>, InboxError> {
        self.db.with(move |conn| {
            durable(conn, true)?;
            let tx = conn.transaction()?;
            let ids = insert_events(&tx, &events)?;
            if let Some((table, w)) = watermark {
                tx.execute(
                    "INSERT INTO watermarks (table_name, version, record_key) VALUES (?1, ?2, ?3)
                     ON CONFLICT (table_name) DO UPDATE SET version = excluded.version, record_key = excluded.record_key",
                    params![table, w.version, w.key],
                )?;
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// The last applied version of a record.
    pub(crate) async fn version_of(
        &self,
        table: &str,
        key: &str,
    ) -> Result<Option<i64>, InboxError> {
        let (table, key) = (table.to_owned(), key.to_owned());
        self.db
            .with(move |conn| {
                conn.query_row(
                    "SELECT version FROM record_versions WHERE table_name = ?1 AND record_key = ?2",
                    params![table, key],
                    |r| r.get(0),
                )
                .optional()
            })
            .await
    }

    /// Removes an applied (or superseded) event and records the version it brought.
    pub(crate) async fn complete(&self, event: &StoredEvent) -> Result<(), InboxError> {
        let (id, table, key, version) = (
            event.id,
            event.event.table.clone(),
            event.event.record_key.clone(),
            event.event.version,
        );
        self.db.with(move |conn| {
            durable(conn, false)?;
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM events WHERE id = ?1", params![id])?;
            if let Some(v) = version {
                tx.execute(
                    "INSERT INTO record_versions (table_name, record_key, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (table_name, record_key) DO UPDATE SET version = max(version, excluded.version)",
                    params![table, key, v],
                )?;
            }
            tx.commit()
        })
        .await
    }

    /// Schedules another attempt in `delay_ms`.
    pub(crate) async fn retry(
        &self,
        id: i64,
        delay_ms: i64,
        error: String,
    ) -> Result<(), InboxError> {
        self.db.with(move |conn| {
            conn.execute(
                "UPDATE events SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, now_ms() + delay_ms, error],
            )
            .map(drop)
        })
        .await
    }

    /// Makes an event due again in `delay_ms` without spending an attempt: nothing about the
    /// event itself failed (its write was held back by a newer clinic edit, or SQL Server is
    /// down or misconfigured for every event alike). `error`, when given, is kept as the last.
    pub(crate) async fn postpone(
        &self,
        id: i64,
        delay_ms: i64,
        error: Option<String>,
    ) -> Result<(), InboxError> {
        self.db
            .with(move |conn| {
                conn.execute(
                    "UPDATE events SET next_attempt_at = ?2, last_error = COALESCE(?3, last_error) WHERE id = ?1",
                    params![id, now_ms() + delay_ms, error],
                )
                .map(drop)
            })
            .await
    }

    /// Gives up on an event; it stays (dead) for inspection and no longer blocks its record.
    pub(crate) async fn kill(&self, id: i64, error: String) -> Result<(), InboxError> {
        self.db.with(move |conn| {
            conn.execute(
                "UPDATE events SET attempts = attempts + 1, dead = 1, last_error = ?2 WHERE id = ?1",
                params![id, error],
            )
            .map(drop)
        })
        .await
    }

    /// Milliseconds until the next live event is due, `None` when the inbox is empty.
    pub(crate) async fn next_due_in_ms(&self) -> Result<Option<i64>, InboxError> {
        self.db
            .with(|conn| {
                // Only the head event of each record counts: the ones behind it are not runnable
                // before it, and counting them would wake the applier for nothing.
                conn.query_row(
                    "SELECT min(e.next_attempt_at) FROM events e
                 WHERE e.dead = 0
                   AND NOT EXISTS (SELECT 1 FROM events p
                                   WHERE p.dead = 0 AND p.table_name = e.table_name
                                     AND p.record_key = e.record_key AND p.id < e.id)",
                    [],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map(|at| at.map(|at| (at - now_ms()).max(0)))
            })
            .await
    }

    pub(crate) async fn stats(&self) -> Result<InboxStats, InboxError> {
        self.db
            .with(|conn| {
                conn.query_row(
                    "SELECT count(*) FILTER (WHERE dead = 0), count(*) FILTER (WHERE dead = 1),
                        min(received_at) FILTER (WHERE dead = 0)
                 FROM events",
                    [],
                    |r| {
                        let oldest: Option<i64> = r.get(2)?;
                        Ok(InboxStats {
                            depth: r.get::<_, i64>(0)? as u64,
                            dead: r.get::<_, i64>(1)? as u64,
                            oldest_unapplied_age_secs: oldest
                                .map(|t| ((now_ms() - t).max(0) / 1000) as u64),
                        })
                    },
                )
            })
            .await
    }

    /// Dead events and last errors, newest first, for troubleshooting.
    pub(crate) async fn dead_events(&self, limit: usize) -> Result<Vec<DeadEvent>, InboxError> {
        self.db.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, table_name, record_key, coalesce(last_error, '') FROM events WHERE dead = 1 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |r| {
                Ok(DeadEvent {
                    id: r.get(0)?,
                    table: r.get(1)?,
                    key: r.get(2)?,
                    error: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Gives every dead event another full set of attempts (a manual `postgres-to-sql` trigger
    /// does this: catch-up cannot bring them back, its watermark has moved past them).
    pub(crate) async fn revive_dead(&self) -> Result<usize, InboxError> {
        self.revive(None, None).await
    }

    /// Gives the dead events of `table` (any case; all tables when `None`), or the one with
    /// `id`, another full set of attempts, due now (`syncbridge retry-failed`).
    pub(crate) async fn revive(
        &self,
        table: Option<String>,
        id: Option<i64>,
    ) -> Result<usize, InboxError> {
        self.db
            .with(move |conn| {
                conn.execute(
                    "UPDATE events SET dead = 0, attempts = 0, next_attempt_at = ?1
                     WHERE dead = 1 AND (?2 IS NULL OR table_name = ?2 COLLATE NOCASE)
                       AND (?3 IS NULL OR id = ?3)",
                    params![now_ms(), table, id],
                )
            })
            .await
    }

    /// Deletes dead events older than `days`, so the inbox never grows without bound.
    pub(crate) async fn prune_dead(&self, days: i64) -> Result<usize, InboxError> {
        self.db
            .with(move |conn| {
                conn.execute(
                    "DELETE FROM events WHERE dead = 1 AND received_at < ?1",
                    params![now_ms() - days * 86_400_000],
                )
            })
            .await
    }

    pub(crate) async fn watermarks(&self) -> Result<Vec<(String, Watermark)>, InboxError> {
        self.db
            .with(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT table_name, version, record_key FROM watermarks ORDER BY table_name",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        Watermark {
                            version: r.get(1)?,
                            key: r.get(2)?,
                        },
                    ))
                })?;
                rows.collect()
            })
            .await
    }
}

mod due;
mod group;

#[cfg(test)]
mod tests;
