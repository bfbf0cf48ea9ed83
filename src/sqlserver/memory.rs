//! An in-memory SQL Server double implementing [`SqlStore`], for the test suite and benchmarks.
//! It emulates what the `sql/sqlserver/` scripts do: the change triggers (one queue row per
//! changed row, skipped for the agent's own writes), uncommitted writer transactions (invisible
//! to `claim`, waited on by `wait_for_writers`), and an outage switch. Its clock is
//! `tokio::time`, so tests can pause time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::mapping::value::SqlType;

#[derive(Debug, Clone)]
struct Table {
    columns: Vec<SourceColumn>,
    rows: BTreeMap<RecordKey, Row>,
}

/// A `SyncQueue` row as the double keeps it; public for test assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct MemQueueRow {
    pub id: i64,
    pub table: String,
    pub record_id: String,
    pub operation: String,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Instant,
    pub claim: Option<Uuid>,
    pub claimed_by: Option<String>,
    /// `Some(tx)` while the writer's transaction is open.
    pub open_tx: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, Table>,
    queue: BTreeMap<i64, MemQueueRow>,
    next_queue_id: i64,
    next_tx: u64,
    /// Per open transaction: the row changes it will make visible on commit.
    pending: BTreeMap<u64, Vec<(String, RecordKey, Option<Row>)>>,
    down: bool,
    /// The next n `apply` calls fail as SQL Server refusing the row (constraint violation).
    reject_applies: u32,
    applies: u64,
    writes: u64,
    /// Calls per trait method, to prove an idle agent makes none.
    calls: BTreeMap<&'static str, u64>,
}

/// The double. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    tx_ended: Arc<Notify>,
    agent_id: String,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn col(name: &str, sql_type: SqlType, nullable: bool) -> SourceColumn {
    SourceColumn {
        name: name.to_owned(),
        sql_type,
        nullable,
        identity: false,
        computed: false,
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                next_queue_id: 1,
                next_tx: 1,
                ..State::default()
            })),
            tx_ended: Arc::new(Notify::new()),
            agent_id: "memory-agent".to_owned(),
        }
    }

    /// The five tables of `sql/sqlserver/01_sample_schema.sql`.
    pub fn sample_clinic() -> Self {
        use SqlType::*;
        let int = Int { bits: 32 };
        let text = |n| Text {
            unicode: true,
            max_chars: n,
        };
        let store = Self::new();
        store.create_table(
            "tblPatients",
            vec![
                col("PersonID", int.clone(), false),
                col("PatientName", text(Some(200)), false),
                col("Phone", text(Some(50)), true),
                col("DateOfBirth", Date, true),
                col("IsActive", Bit, false),
                col("PatientGUID", Guid, false),
                col("Notes", text(None), true),
                col("DateAdded", DateTime, false),
            ],
        );
        store.create_table(
            "tblWork",
            vec![
                col("WorkID", int.clone(), false),
                col("PersonID", int.clone(), false),
                col("TypeOfWork", text(Some(100)), false),
                col("TotalRequired", Money, true),
                col(
                    "Currency",
                    Text {
                        unicode: false,
                        max_chars: Some(3),
                    },
                    false,
                ),
                col("StartDate", Date, true),
                col("Finished", Bit, false),
                col("AdditionTime", DateTime2 { scale: 3 }, false),
            ],
        );
        store.create_table(
            "tblAlignerSets",
            vec![
                col("AlignerSetID", int.clone(), false),
                col("WorkID", int.clone(), false),
                col("SetSequence", int.clone(), false),
                col("UpperAlignersCount", int.clone(), false),
                col("LowerAlignersCount", int.clone(), false),
                col(
                    "SetCost",
                    Decimal {
                        precision: 12,
                        scale: 2,
                    },
                    true,
                ),
                col("IsActive", Bit, false),
                col("CreationDate", DateTimeOffset { scale: 3 }, false),
            ],
        );
        store.create_table(
            "tblAlignerBatches",
            vec![
                col("AlignerBatchID", int.clone(), false),
                col("AlignerSetID", int.clone(), false),
                col("BatchSequence", int.clone(), false),
                col("UpperAlignerCount", int.clone(), false),
                col("LowerAlignerCount", int.clone(), false),
                col("Days", int.clone(), true),
                col("ManufactureDate", Date, true),
                col("DeliveredToPatientDate", Date, true),
                col("Notes", text(Some(500)), true),
                col(
                    "LabelCode",
                    Binary {
                        max_bytes: Some(64),
                    },
                    true,
                ),
            ],
        );
        let mut note_id = col("NoteID", int.clone(), false);
        note_id.identity = true;
        store.create_table(
            "tblAlignerNotes",
            vec![
                note_id,
                col("NoteUID", Guid, false),
                col("AlignerSetID", int, false),
                col("NoteType", text(Some(20)), false),
                col("NoteText", text(None), false),
                col("CreatedAt", DateTime2 { scale: 3 }, false),
                col("IsEdited", Bit, false),
                col("EditedAt", DateTime2 { scale: 3 }, true),
                col("IsRead", Bit, false),
            ],
        );
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test bug; the data is still usable for asserts.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a table; its key is whatever `RecordKey`s the test writes rows under.
    pub fn create_table(&self, name: &str, columns: Vec<SourceColumn>) {
        self.lock().tables.insert(
            name.to_owned(),
            Table {
                columns,
                rows: BTreeMap::new(),
            },
        );
    }

    /// Simulates SQL Server being unreachable (every call fails with `Unavailable`).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The next `n` reverse writes are refused as a constraint violation would be.
    pub fn reject_next_applies(&self, n: u32) {
        self.lock().reject_applies = n;
    }

    /// Reverse writes attempted, and those that changed a row.
    pub fn apply_counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.applies, s.writes)
    }

    pub fn row(&self, table: &str, key: &RecordKey) -> Option<Row> {
        self.lock().tables.get(table)?.rows.get(key).cloned()
    }

    pub fn rows(&self, table: &str) -> Vec<Row> {
        self.lock()
            .tables
            .get(table)
            .map(|t| t.rows.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn queue(&self) -> Vec<MemQueueRow> {
        self.lock().queue.values().cloned().collect()
    }

    /// A clinic write (as the clinic's application makes it), committed at once; the trigger
    /// emulation queues one item per changed row. `None` deletes.
    pub fn clinic_write(&self, table: &str, key: &RecordKey, row: Option<Row>) {
        let mut s = self.lock();
        Self::write_row(&mut s, table, key, row, None);
    }

    /// Applies `changes` to an existing row as a clinic UPDATE would.
    pub fn clinic_update(&self, table: &str, key: &RecordKey, changes: &[(&str, SqlValue)]) {
        let mut s = self.lock();
        let Some(mut row) = s.tables.get(table).and_then(|t| t.rows.get(key).cloned()) else {
            return;
        };
        for (c, v) in changes {
            row.insert((*c).to_owned(), v.clone());
        }
        Self::write_row(&mut s, table, key, Some(row), None);
    }

    /// Opens a writer transaction: its queue rows exist but stay locked until `commit`.
    pub fn begin(&self) -> MemTx {
        let mut s = self.lock();
        let tx = s.next_tx;
        s.next_tx += 1;
        s.pending.insert(tx, Vec::new());
        MemTx {
            store: self.clone(),
            tx,
        }
    }

    /// Appends a raw queue row (for malformed or unknown-table items).
    pub fn enqueue_raw(&self, table: &str, record_id: &str, operation: &str) {
        let mut s = self.lock();
        Self::enqueue(&mut s, table, record_id, operation, None);
    }

    fn write_row(s: &mut State, table: &str, key: &RecordKey, row: Option<Row>, tx: Option<u64>) {
        let Some(t) = s.tables.get(table) else {
            return;
        };
        let existed = t.rows.contains_key(key);
        let operation = match (&row, existed) {
            (None, _) => "DELETE",
            (Some(_), true) => "UPDATE",
            (Some(_), false) => "INSERT",
        };
        match tx {
            Some(tx) => s
                .pending
                .entry(tx)
                .or_default()
                .push((table.to_owned(), key.clone(), row)),
            None => Self::put(s, table, key, row),
        }
        Self::enqueue(s, table, &key.to_json(), operation, tx);
    }

    fn put(s: &mut State, table: &str, key: &RecordKey, row: Option<Row>) {
        if let Some(t) = s.tables.get_mut(table) {
            match row {
                Some(r) => t.rows.insert(key.clone(), r),
                None => t.rows.remove(key),
            };
        }
    }

    fn enqueue(s: &mut State, table: &str, record_id: &str, operation: &str, tx: Option<u64>) {
        let id = s.next_queue_id;
        s.next_queue_id += 1;
        s.queue.insert(
            id,
            MemQueueRow {
                id,
                table: table.to_owned(),
                record_id: record_id.to_owned(),
                operation: operation.to_owned(),
                status: "Pending".to_owned(),
                attempts: 0,
                last_error: None,
                next_attempt_at: Instant::now(),
                claim: None,
                claimed_by: None,
                open_tx: tx,
            },
        );
    }

    fn end_tx(&self, tx: u64, commit: bool) {
        let mut s = self.lock();
        let changes = s.pending.remove(&tx).unwrap_or_default();
        if commit {
            for (table, key, row) in changes {
                Self::put(&mut s, &table, &key, row);
            }
            s.queue
                .values_mut()
                .filter(|q| q.open_tx == Some(tx))
                .for_each(|q| q.open_tx = None);
        } else {
            s.queue.retain(|_, q| q.open_tx != Some(tx));
        }
        drop(s);
        self.tx_ended.notify_waiters();
    }

    /// How many times the agent called `method` (e.g. "claim", "wait_for_writers").
    pub fn calls(&self, method: &str) -> u64 {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    fn guard(&self, method: &'static str) -> Result<MutexGuard<'_, State>, StoreError> {
        let mut s = self.lock();
        *s.calls.entry(method).or_default() += 1;
        if s.down {
            return Err(StoreError::Unavailable(
                "connection refused (memory double is down)".to_owned(),
            ));
        }
        Ok(s)
    }
}

/// An open writer transaction on the double.
pub struct MemTx {
    store: MemoryStore,
    tx: u64,
}

impl MemTx {
    pub fn write(&self, table: &str, key: &RecordKey, row: Option<Row>) {
        let mut s = self.store.lock();
        MemoryStore::write_row(&mut s, table, key, row, Some(self.tx));
    }

    pub fn commit(self) {
        self.store.end_tx(self.tx, true);
    }

    pub fn rollback(self) {
        self.store.end_tx(self.tx, false);
    }
}

fn due(q: &MemQueueRow, now: Instant) -> bool {
    q.status == "Pending" && q.open_tx.is_none() && q.next_attempt_at <= now
}

fn differs(row: &Row, values: &[(String, SqlValue)]) -> bool {
    values
        .iter()
        .any(|(c, v)| row.get(c).unwrap_or(&SqlValue::Null) != v)
}

#[async_trait]
impl SqlStore for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.guard("ping").map(drop)
    }

    async fn describe_table(&self, table: &str) -> Result<Option<Vec<SourceColumn>>, StoreError> {
        let s = self.guard("describe_table")?;
        let name = table.strip_prefix("dbo.").unwrap_or(table);
        Ok(s.tables
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, t)| t.columns.clone()))
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<QueueItem>, StoreError> {
        let mut s = self.guard("claim")?;
        let now = Instant::now();
        let token = Uuid::new_v4();
        let first: Vec<i64> = s
            .queue
            .values()
            .filter(|q| due(q, now))
            .take(limit)
            .map(|q| q.id)
            .collect();
        let records: BTreeSet<(String, String)> = first
            .iter()
            .filter_map(|id| s.queue.get(id))
            .map(|q| (q.table.clone(), q.record_id.clone()))
            .collect();
        let agent = self.agent_id.clone();
        let mut items = Vec::new();
        for q in s.queue.values_mut() {
            let same_record = records.contains(&(q.table.clone(), q.record_id.clone()));
            if due(q, now) && (first.contains(&q.id) || same_record) {
                q.claim = Some(token);
                q.claimed_by = Some(agent.clone());
                q.next_attempt_at = now + lease;
                items.push(QueueItem {
                    id: QueueId(q.id),
                    table: q.table.clone(),
                    record_id: q.record_id.clone(),
                    operation: q.operation.clone(),
                    attempts: q.attempts,
                    claim: ClaimToken(token),
                });
            }
        }
        Ok(items)
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<(), StoreError> {
        let mut s = self.guard("settle")?;
        let now = Instant::now();
        for item in items {
            let Some(q) = s.queue.get_mut(&item.id.0) else {
                continue;
            };
            if q.claim != Some(item.claim.0) {
                continue;
            }
            q.claim = None;
            match &item.outcome {
                Settlement::Synced => {
                    q.status = "Synced".to_owned();
                    q.last_error = None;
                }
                Settlement::Retry { delay, error } => {
                    q.attempts += 1;
                    q.last_error = Some(error.clone());
                    q.next_attempt_at = now + *delay;
                }
                Settlement::Failed { error } => {
                    q.attempts += 1;
                    q.status = "Failed".to_owned();
                    q.last_error = Some(error.clone());
                }
                Settlement::Release { delay, error } => {
                    q.next_attempt_at = now + *delay;
                    if let Some(e) = error {
                        q.last_error = Some(e.clone());
                    }
                }
            }
        }
        Ok(())
    }

    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        let s = self.guard("next_due_in")?;
        let now = Instant::now();
        Ok(s.queue
            .values()
            .filter(|q| q.status == "Pending" && q.open_tx.is_none())
            .map(|q| q.next_attempt_at.saturating_duration_since(now))
            .min())
    }

    async fn wait_for_writers(&self, max_wait: Duration) -> Result<WriterWait, StoreError> {
        let waiting = {
            let s = self.guard("wait_for_writers")?;
            let now = Instant::now();
            let locked = s
                .queue
                .values()
                .any(|q| q.status == "Pending" && q.open_tx.is_some() && q.next_attempt_at <= now);
            // Register interest before releasing the lock so a commit in between is not missed.
            locked.then(|| self.tx_ended.notified())
        };
        match waiting {
            None => Ok(WriterWait::Idle),
            Some(ended) => {
                let _ = tokio::time::timeout(max_wait, ended).await;
                Ok(WriterWait::Waited)
            }
        }
    }

    async fn release_own_claims(&self) -> Result<u64, StoreError> {
        let mut s = self.guard("release_own_claims")?;
        let now = Instant::now();
        let agent = self.agent_id.clone();
        let mut n = 0;
        for q in s.queue.values_mut() {
            if q.status == "Pending" && q.claim.is_some() && q.claimed_by.as_deref() == Some(&agent)
            {
                q.claim = None;
                q.next_attempt_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let s = self.guard("queue_stats")?;
        let count = |status: &str| {
            s.queue
                .values()
                .filter(|q| q.status == status && q.open_tx.is_none())
                .count() as u64
        };
        Ok(QueueStats {
            pending: count("Pending"),
            synced: count("Synced"),
            failed: count("Failed"),
            oldest_pending_age_secs: s
                .queue
                .values()
                .find(|q| q.status == "Pending" && q.open_tx.is_none())
                .map(|_| 0),
        })
    }

    async fn load_rows(
        &self,
        table: &str,
        columns: &[SourceColumn],
        keys: &[RecordKey],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.guard("load_rows")?;
        let t = s
            .tables
            .get(table)
            .ok_or_else(|| StoreError::Invalid(format!("Invalid object name '{table}'.")))?;
        Ok(keys
            .iter()
            .filter_map(|k| t.rows.get(k))
            .map(|row| {
                columns
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            row.get(&c.name).cloned().unwrap_or(SqlValue::Null),
                        )
                    })
                    .collect()
            })
            .collect())
    }

    async fn apply(&self, write: &ReverseWrite) -> Result<WriteOutcome, StoreError> {
        let mut s = self.guard("apply")?;
        s.applies += 1;
        if s.reject_applies > 0 {
            s.reject_applies -= 1;
            return Err(StoreError::Rejected(
                "The INSERT statement conflicted with a constraint (memory double).".to_owned(),
            ));
        }
        let table = s.tables.get_mut(&write.table).ok_or_else(|| {
            StoreError::Invalid(format!("Invalid object name '{}'.", write.table))
        })?;
        let key = RecordKey(
            write
                .key
                .iter()
                .map(|(c, v)| {
                    let part = match v {
                        SqlValue::Int(i) => KeyPart::Int(*i),
                        SqlValue::Guid(g) => {
                            KeyPart::Text(g.hyphenated().to_string().to_uppercase())
                        }
                        SqlValue::Text(t) => KeyPart::Text(t.clone()),
                        other => KeyPart::Text(format!("{other:?}")),
                    };
                    (c.clone(), part)
                })
                .collect(),
        );
        // The agent's session is marked with SESSION_CONTEXT, so the trigger emulation is
        // skipped here: nothing is queued for these writes.
        let outcome = match (&write.action, table.rows.get_mut(&key)) {
            (WriteAction::Delete, Some(_)) => {
                table.rows.remove(&key);
                WriteOutcome::Deleted
            }
            (WriteAction::Delete, None) => WriteOutcome::Missing,
            (
                WriteAction::Upsert { update, .. } | WriteAction::UpdateOnly { update },
                Some(row),
            ) => {
                if differs(row, update) {
                    for (c, v) in update {
                        row.insert(c.clone(), v.clone());
                    }
                    WriteOutcome::Updated
                } else {
                    WriteOutcome::Unchanged
                }
            }
            (WriteAction::UpdateOnly { .. }, None) => WriteOutcome::Missing,
            (WriteAction::Upsert { insert, .. }, None) => {
                let mut row: Row = table
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), SqlValue::Null))
                    .collect();
                row.extend(insert.iter().cloned());
                table.rows.insert(key, row);
                WriteOutcome::Inserted
            }
        };
        if !matches!(outcome, WriteOutcome::Unchanged | WriteOutcome::Missing) {
            s.writes += 1;
        }
        Ok(outcome)
    }
}
