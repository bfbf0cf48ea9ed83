//! Reading the due events: oldest first, one per record, each read back into its
//! [`EventKind`]; an event of a kind no version of the agent stores is given up on instead of
//! blocking its record.

use rusqlite::{params, Connection};

use super::{from_text, now_ms, Inbox, InboxError};
use crate::reverse::event::{EventKind, NewEvent, StoredEvent};

impl Inbox {
    /// Due events, oldest first, at most one per record: an event waits while an earlier live
    /// event of the same record is still in the inbox (order per record).
    pub(crate) async fn due(&self, limit: usize) -> Result<Vec<StoredEvent>, InboxError> {
        self.db
            .with(move |conn| {
                let rows = select_due(conn, limit)?;
                let mut due = Vec::with_capacity(rows.len());
                for row in rows {
                    match EventKind::from_stored(&row.source, &row.op) {
                        Some(kind) => due.push(row.into_event(kind)),
                        None => bury(conn, &row)?,
                    }
                }
                Ok(due)
            })
            .await
    }
}

/// A due event as stored, its kind still in the `source` and `op` columns.
struct DueRow {
    id: i64,
    source: String,
    op: String,
    table: String,
    record_key: String,
    record: Option<String>,
    old_record: Option<String>,
    version: Option<i64>,
    attempts: u32,
}

fn select_due(conn: &Connection, limit: usize) -> Result<Vec<DueRow>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.source, e.op, e.table_name, e.record_key, e.record, e.old_record, e.version, e.attempts
         FROM events e
         WHERE e.dead = 0 AND e.next_attempt_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM events p
                           WHERE p.dead = 0 AND p.table_name = e.table_name
                             AND p.record_key = e.record_key AND p.id < e.id)
         ORDER BY e.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms(), limit as i64], |r| {
        Ok(DueRow {
            id: r.get(0)?,
            source: r.get(1)?,
            op: r.get(2)?,
            table: r.get(3)?,
            record_key: r.get(4)?,
            record: r.get(5)?,
            old_record: r.get(6)?,
            version: r.get(7)?,
            attempts: r.get(8)?,
        })
    })?;
    rows.collect()
}

impl DueRow {
    fn into_event(self, kind: EventKind) -> StoredEvent {
        StoredEvent {
            id: self.id,
            event: NewEvent {
                kind,
                table: self.table,
                record_key: self.record_key,
                record: from_text(self.record),
                old_record: from_text(self.old_record),
                version: self.version,
            },
            attempts: self.attempts,
        }
    }
}

/// Gives up on an event of a kind no version of the agent stores, so it cannot block its
/// record.
fn bury(conn: &Connection, row: &DueRow) -> Result<(), rusqlite::Error> {
    tracing::error!(id = row.id, source = %row.source, op = %row.op, "inbox event of an unknown kind given up on");
    conn.execute(
        "UPDATE events SET dead = 1, last_error = ?2 WHERE id = ?1",
        params![
            row.id,
            format!("unknown event kind {}/{}", row.source, row.op)
        ],
    )
    .map(drop)
}
