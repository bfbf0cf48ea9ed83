//! An in-memory Supabase double implementing [`SupabaseApi`], for fast unit tests of the rules
//! above the seam (batching, bisection, parent-before-child order, catch-up paging). It keeps
//! what PostgreSQL would decide for those rules: a request is all or nothing, a refused value
//! fails its whole request, foreign keys are checked both ways, pages are keyset-ordered. The
//! HTTP contract itself is tested end to end over real PostgreSQL, not here.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use serde_json::{json, Value};

use super::{
    ErrorBody, JsonRow, KeyFilter, PageRequest, PostgrestError, PushRow, PushTable, Refused,
    SupabaseApi, UpsertMode,
};

mod push;

/// Which request the double received, for assertions on batching and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Upsert,
    Update,
    /// `rpc/syncbridge_push`.
    Push,
    Delete,
    Select,
    Schema,
}

/// One request: its kind, its table, and how many rows (or keys) it carried or returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestKind,
    pub table: String,
    pub rows: usize,
}

/// `child.column` references `parent.parent_column`.
#[derive(Debug, Clone)]
struct ForeignKey {
    child: String,
    column: String,
    parent: String,
    parent_column: String,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, Vec<JsonRow>>,
    foreign_keys: Vec<ForeignKey>,
    /// `(table, column, value)`: a write of this value is refused as a check constraint would.
    refused: Vec<(String, String, Value)>,
    /// Every request answers this status while set (401: wrong key; 503: outage)...
    failing: Option<u16>,
    /// ...once this many more requests have succeeded.
    failing_after: usize,
    /// `Retry-After` sent with a failing 429 or 503.
    retry_after: Option<Duration>,
    /// The next n writes wait this long before they take effect (a slow round trip), so a
    /// test can make a later request overtake an earlier one.
    delayed: (usize, Duration),
    /// Delayed writes under way now, and the most there have been at once.
    in_flight: usize,
    max_in_flight: usize,
    /// `(table, column)`: a write naming this column is refused as PostgREST refuses a column
    /// its schema cache lacks (PGRST204).
    unknown_columns: Vec<(String, String)>,
    schema: Value,
    requests: Vec<Request>,
}

/// The double. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct MemorySupabase {
    state: Arc<Mutex<State>>,
}

fn refusal(status: u16, code: &str, message: String) -> PostgrestError {
    PostgrestError::Status {
        status,
        body: ErrorBody {
            code: Some(code.to_owned()),
            message: Some(message),
            ..ErrorBody::default()
        },
        retry_after: None,
    }
}

fn matches_key(row: &JsonRow, key: &KeyFilter) -> bool {
    key.iter().all(|(c, v)| row.get(c) == Some(v))
}

/// PostgreSQL's ascending order for the values the agent pages by: numbers by value,
/// timestamps by instant, other text by bytes, NULL last.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => {
            match (
                DateTime::parse_from_rfc3339(x),
                DateTime::parse_from_rfc3339(y),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            }
        }
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn column<'a>(row: &'a JsonRow, name: &str) -> &'a Value {
    row.get(name).unwrap_or(&Value::Null)
}

impl MemorySupabase {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test bug; the data is still usable for asserts.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rows as they are in `table`, in insertion order.
    pub fn rows(&self, table: &str) -> Vec<JsonRow> {
        self.lock().tables.get(table).cloned().unwrap_or_default()
    }

    /// Adds rows as the portal would (no request recorded).
    pub fn insert_rows(&self, table: &str, rows: impl IntoIterator<Item = JsonRow>) {
        self.lock()
            .tables
            .entry(table.to_owned())
            .or_default()
            .extend(rows);
    }

    /// `child.column` must name an existing `parent.parent_column` (NULL allowed), and a parent
    /// row cannot be deleted while a child names it.
    pub fn add_foreign_key(&self, child: &str, column: &str, parent: &str, parent_column: &str) {
        self.lock().foreign_keys.push(ForeignKey {
            child: child.to_owned(),
            column: column.to_owned(),
            parent: parent.to_owned(),
            parent_column: parent_column.to_owned(),
        });
    }

    /// Any write of `value` into `table.column` is refused (HTTP 400, a check violation), and
    /// with it the whole request that carries it.
    pub fn refuse_value(&self, table: &str, column: &str, value: Value) {
        self.lock()
            .refused
            .push((table.to_owned(), column.to_owned(), value));
    }

    /// Every request answers `status` (e.g. 401 for a wrong key, 503 for an outage) until
    /// called with `None`.
    pub fn set_failing(&self, status: Option<u16>) {
        self.lock().failing = status;
    }

    /// Like [`MemorySupabase::set_failing`], after `n` more requests have succeeded.
    pub fn set_failing_after(&self, n: usize, status: Option<u16>) {
        let mut s = self.lock();
        s.failing = status;
        s.failing_after = n;
    }

    /// The next `n` writes (upserts, updates, deletes) take effect only `delay` after they
    /// arrive, as over a slow link; the others at once.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        self.lock().delayed = (n, delay);
    }

    /// Waits out a write's delay, if it has one (see [`MemorySupabase::delay_next`]).
    async fn travel(&self) {
        let delay = {
            let mut s = self.lock();
            match s.delayed {
                (0, _) => None,
                (n, delay) => {
                    s.delayed.0 = n - 1;
                    Some(delay)
                }
            }
        };
        if let Some(delay) = delay {
            {
                let mut s = self.lock();
                s.in_flight += 1;
                s.max_in_flight = s.max_in_flight.max(s.in_flight);
            }
            tokio::time::sleep(delay).await;
            self.lock().in_flight -= 1;
        }
    }

    /// The most delayed writes that were under way at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// `Retry-After` for failing 429 and 503 answers (`None`: no header).
    pub fn set_retry_after(&self, retry_after: Option<Duration>) {
        self.lock().retry_after = retry_after;
    }

    /// Writes naming `table.column` are refused with PGRST204, as after the column was dropped
    /// (set the schema without it too: [`MemorySupabase::set_schema`]).
    pub fn drop_column(&self, table: &str, column: &str) {
        self.lock()
            .unknown_columns
            .push((table.to_owned(), column.to_owned()));
    }

    /// What [`SupabaseApi::schema`] answers.
    pub fn set_schema(&self, schema: Value) {
        self.lock().schema = schema;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Records the request; fails it if the double is set failing.
    fn receive(
        &self,
        kind: RequestKind,
        table: &str,
        rows: usize,
    ) -> Result<MutexGuard<'_, State>, PostgrestError> {
        let mut s = self.lock();
        s.requests.push(Request {
            kind,
            table: table.to_owned(),
            rows,
        });
        match s.failing {
            Some(_) if s.failing_after > 0 => {
                s.failing_after -= 1;
                Ok(s)
            }
            Some(status) => {
                let retry_after = s.retry_after.filter(|_| matches!(status, 429 | 503));
                let mut e = refusal(status, "PGRST000", format!("HTTP {status}"));
                if let PostgrestError::Status { retry_after: r, .. } = &mut e {
                    *r = retry_after;
                }
                Err(e)
            }
            None => Ok(s),
        }
    }
}

impl State {
    fn check_columns(&self, table: &str, row: &JsonRow) -> Result<(), PostgrestError> {
        match self
            .unknown_columns
            .iter()
            .find(|(t, c)| t == table && row.contains_key(c))
        {
            Some((_, c)) => Err(refusal(
                400,
                "PGRST204",
                format!("Could not find the '{c}' column of '{table}' in the schema cache"),
            )),
            None => Ok(()),
        }
    }

    fn check_values(&self, table: &str, row: &JsonRow) -> Result<(), PostgrestError> {
        self.check_columns(table, row)?;
        let refused = self
            .refused
            .iter()
            .find(|(t, c, v)| t == table && row.get(c) == Some(v));
        match refused {
            Some((_, c, v)) => Err(refusal(
                400,
                "23514",
                format!("new row for relation \"{table}\" violates check constraint on {c} = {v}"),
            )),
            None => Ok(()),
        }
    }

    fn check_parents(&self, table: &str, row: &JsonRow) -> Result<(), PostgrestError> {
        for fk in self.foreign_keys.iter().filter(|fk| fk.child == table) {
            let value = column(row, &fk.column);
            let present = value.is_null()
                || self
                    .tables
                    .get(&fk.parent)
                    .is_some_and(|rows| rows.iter().any(|p| column(p, &fk.parent_column) == value));
            if !present {
                return Err(refusal(
                    409,
                    "23503",
                    format!(
                        "insert or update on table \"{table}\" violates foreign key constraint"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_children(&self, table: &str, row: &JsonRow) -> Result<(), PostgrestError> {
        for fk in self.foreign_keys.iter().filter(|fk| fk.parent == table) {
            let value = column(row, &fk.parent_column);
            let referenced = self
                .tables
                .get(&fk.child)
                .is_some_and(|rows| rows.iter().any(|c| column(c, &fk.column) == value));
            if referenced {
                return Err(refusal(
                    409,
                    "23503",
                    format!(
                        "update or delete on table \"{table}\" violates foreign key constraint"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Applies one upserted row to `rows` (a working copy), as `mode` says.
    fn upsert_row(rows: &mut Vec<JsonRow>, row: &JsonRow, key: &KeyFilter, mode: &UpsertMode) {
        match (rows.iter_mut().find(|r| matches_key(r, key)), mode) {
            (Some(existing), UpsertMode::Merge) => {
                existing.extend(row.iter().map(|(c, v)| (c.clone(), v.clone())));
            }
            (Some(_), UpsertMode::InsertMissing) => {}
            (None, _) => rows.push(row.clone()),
        }
    }
}

#[async_trait]
impl SupabaseApi for MemorySupabase {
    async fn upsert(
        &self,
        table: &str,
        rows: &[JsonRow],
        on_conflict: &[String],
        mode: &UpsertMode,
    ) -> Result<(), PostgrestError> {
        self.travel().await;
        let mut s = self.receive(RequestKind::Upsert, table, rows.len())?;
        let mut next = s.tables.get(table).cloned().unwrap_or_default();
        for row in rows {
            s.check_values(table, row)?;
            s.check_parents(table, row)?;
            let key: KeyFilter = on_conflict
                .iter()
                .map(|c| (c.clone(), column(row, c).clone()))
                .collect();
            State::upsert_row(&mut next, row, &key, mode);
        }
        s.tables.insert(table.to_owned(), next);
        Ok(())
    }

    async fn update(
        &self,
        table: &str,
        key: &KeyFilter,
        values: &JsonRow,
    ) -> Result<(), PostgrestError> {
        self.travel().await;
        let mut s = self.receive(RequestKind::Update, table, 1)?;
        s.check_values(table, values)?;
        s.check_parents(table, values)?;
        if let Some(row) = s
            .tables
            .get_mut(table)
            .and_then(|rows| rows.iter_mut().find(|r| matches_key(r, key)))
        {
            row.extend(values.iter().map(|(c, v)| (c.clone(), v.clone())));
        }
        Ok(())
    }

    async fn push(
        &self,
        table: &PushTable<'_>,
        rows: &[PushRow],
    ) -> Result<Vec<Refused>, PostgrestError> {
        self.push_rows(table, rows)
    }

    async fn delete(&self, table: &str, keys: &[KeyFilter]) -> Result<(), PostgrestError> {
        self.travel().await;
        let mut s = self.receive(RequestKind::Delete, table, keys.len())?;
        let rows = s.tables.get(table).cloned().unwrap_or_default();
        let (gone, kept): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| keys.iter().any(|k| matches_key(r, k)));
        for row in &gone {
            s.check_children(table, row)?;
        }
        s.tables.insert(table.to_owned(), kept);
        Ok(())
    }

    async fn select_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Vec<JsonRow>, PostgrestError> {
        let mut s = self.receive(RequestKind::Select, table, 0)?;
        let by_order = |a: &JsonRow, b: &JsonRow| {
            page.order
                .iter()
                .map(|c| compare(column(a, c), column(b, c)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        };
        let after: JsonRow = page.after.iter().cloned().collect();
        let since = page
            .since
            .as_ref()
            .map(|s| (s.column.clone(), json!(s.at.to_rfc3339())));
        let mut rows: Vec<JsonRow> = s
            .tables
            .get(table)
            .into_iter()
            .flatten()
            .filter(|r| {
                since
                    .as_ref()
                    .is_none_or(|(c, at)| compare(column(r, c), at).is_ge())
            })
            .filter(|r| page.after.is_empty() || by_order(r, &after).is_gt())
            .cloned()
            .collect();
        rows.sort_by(by_order);
        rows.truncate(page.limit);
        if let Some(request) = s.requests.last_mut() {
            request.rows = rows.len();
        }
        Ok(rows)
    }

    async fn schema(&self) -> Result<Value, PostgrestError> {
        let s = self.receive(RequestKind::Schema, "", 0)?;
        Ok(s.schema.clone())
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
