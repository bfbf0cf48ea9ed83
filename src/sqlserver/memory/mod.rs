//! An in-memory SQL Server double implementing [`SqlStore`], for the test suite and benchmarks.
//! It emulates what the `sql/sqlserver/` scripts do: the change triggers (one queue row per
//! changed row, skipped for the agent's direct writes), clinic triggers that cascade (queued
//! even when the agent's write fired them), uncommitted writer transactions (invisible
//! to `claim`, waited on by `wait_for_writers`), and an outage switch. Its clock is
//! `tokio::time`, so tests can pause time.
//!
//! `sample` builds the sample clinic schema; `store` implements the trait; `triggers` emulates
//! the change trigger and the clinic's own triggers.

mod pages;
mod sample;
mod store;
mod triggers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use self::triggers::Origin;
pub use self::triggers::{ClinicRule, ClinicTrigger};
use super::*;

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
    /// `CreatedAt` (UTC), to the millisecond as `datetime2(3)` keeps it.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, Table>,
    queue: BTreeMap<i64, MemQueueRow>,
    /// Ids of queue rows that may be `Pending` (a superset: `claim` prunes the others), and
    /// queue ids by record `(table, RecordID)`, so a claim costs what it takes, not the
    /// queue's length (benchmarks queue 100,000 rows; SQL Server has indexes for this).
    pending_ids: std::collections::BTreeSet<i64>,
    by_record: BTreeMap<(String, String), std::collections::BTreeSet<i64>>,
    /// Queue ids by record as SQL Server's guard matches it ([`guard_key`]: however the table
    /// and the RecordID are spelled), so that a guarded write seeks instead of reading the
    /// whole queue (as `IX_SyncQueue_Record` lets SQL Server do).
    by_guard_key: BTreeMap<GuardKey, std::collections::BTreeSet<i64>>,
    next_queue_id: i64,
    next_tx: u64,
    /// Per open transaction: the row changes it will make visible on commit.
    pending: BTreeMap<u64, Vec<(String, RecordKey, Option<Row>)>>,
    down: bool,
    /// The next n `apply` calls fail as SQL Server refusing the row (constraint violation).
    reject_applies: u32,
    applies: u64,
    writes: u64,
    /// What `setup_report` answers instead of "all installed", when a test sets it.
    setup: Option<SetupReport>,
    /// Calls per trait method, to prove an idle agent makes none.
    calls: BTreeMap<&'static str, u64>,
    /// The clinic's own triggers a test registered (see `triggers`).
    clinic_triggers: Vec<ClinicTrigger>,
}

/// Now, cut to the millisecond as `SYSUTCDATETIME()` into `datetime2(3)` is.
fn now_ms() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// The double. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    tx_ended: Arc<Notify>,
    agent_id: String,
    /// What a test does as a given claim begins (see [`MemoryStore::on_claim`]).
    claim_hooks: Arc<Mutex<Vec<ClaimHook>>>,
}

/// A test's action at the start of the `nth` claim (1-based).
type ClaimHook = (u64, Box<dyn FnOnce() + Send>);

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
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
            claim_hooks: Arc::default(),
        }
    }

    /// The same double (shared state) as the agent `agent_id` sees it: its claims carry that
    /// name, so two agents on one queue each release only their own.
    pub fn as_agent(&self, agent_id: &str) -> Self {
        Self {
            agent_id: agent_id.to_owned(),
            ..self.clone()
        }
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

    /// Renames a table, as `sp_rename` would: statements naming the old name then fail with
    /// "Invalid object name" (error 208).
    pub fn rename_table(&self, from: &str, to: &str) {
        let mut s = self.lock();
        if let Some(t) = s.tables.remove(from) {
            s.tables.insert(to.to_owned(), t);
        }
    }

    /// Adds a column to `table`, as `ALTER TABLE ... ADD` would: existing rows hold NULL in it.
    pub fn add_column(&self, table: &str, column: SourceColumn) {
        if let Some(t) = self.lock().tables.get_mut(table) {
            t.columns.push(column);
        }
    }

    /// Makes `setup_report` answer `setup` (e.g. OLE Automation off, triggers missing).
    pub fn set_setup(&self, setup: SetupReport) {
        self.lock().setup = Some(setup);
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
        Self::write_row(&mut s, table, key, row, None, Origin::CLINIC);
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
        Self::write_row(&mut s, table, key, Some(row), None, Origin::CLINIC);
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

    /// Deletes every queue row.
    pub fn clear_queue(&self) {
        let mut s = self.lock();
        s.queue.clear();
        s.pending_ids.clear();
        s.by_record.clear();
        s.by_guard_key.clear();
    }

    /// Appends a raw queue row (for malformed or unknown-table items).
    pub fn enqueue_raw(&self, table: &str, record_id: &str, operation: &str) {
        let mut s = self.lock();
        Self::enqueue(&mut s, table, record_id, operation, None);
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
        s.pending_ids.insert(id);
        s.by_record
            .entry((table.to_owned(), record_id.to_owned()))
            .or_default()
            .insert(id);
        if let Some(key) = guard_key(table, record_id) {
            s.by_guard_key.entry(key).or_default().insert(id);
        }
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
                created_at: now_ms(),
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

    /// Runs `action` as the `nth` claim (1-based) begins, before it reads the queue: a clinic
    /// write that lands exactly while the agent claims.
    pub fn on_claim(&self, nth: u64, action: impl FnOnce() + Send + 'static) {
        let mut hooks = self.claim_hooks.lock().unwrap_or_else(|e| e.into_inner());
        hooks.push((nth, Box::new(action)));
    }

    /// Runs the hooks of the claim about to begin.
    pub(super) fn run_claim_hooks(&self) {
        let nth = self.calls("claim") + 1;
        let due: Vec<ClaimHook> = {
            let mut hooks = self.claim_hooks.lock().unwrap_or_else(|e| e.into_inner());
            let (due, later) = hooks.drain(..).partition(|(n, _)| *n == nth);
            *hooks = later;
            due
        };
        for (_, action) in due {
            action();
        }
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
        MemoryStore::write_row(&mut s, table, key, row, Some(self.tx), Origin::CLINIC);
    }

    pub fn commit(self) {
        self.store.end_tx(self.tx, true);
    }

    pub fn rollback(self) {
        self.store.end_tx(self.tx, false);
    }
}

/// A record as the guard compares it: the table however it is spelled (schema and case) and
/// the RecordID's key, case-insensitively. `None` for a name or RecordID that does not parse
/// (the guard never matches those).
fn guard_key(table: &str, record_id: &str) -> Option<GuardKey> {
    let table = TableName::parse(table).ok()?;
    let key = RecordKey::parse(record_id).ok()?;
    Some(guard_key_of(&table, &key))
}

/// Schema, table and RecordID, each lower-cased (apart: `[a.b].[c]` is not `[a].[b.c]`).
type GuardKey = (String, String, String);

fn guard_key_of(table: &TableName, key: &RecordKey) -> GuardKey {
    (
        table.schema.to_lowercase(),
        table.name.to_lowercase(),
        key.to_json().to_lowercase(),
    )
}
