//! The Supabase side of syncbridge, behind one narrow trait ([`SupabaseApi`]) as the SQL Server
//! side is behind `SqlStore`: the few PostgREST requests the agent makes (upsert, update,
//! delete, one keyset page, the schema, read into a [`TargetSchema`]). `postgrest` is the real
//! client (the agent's only way into Supabase: never a direct Postgres connection); `memory` is
//! the in-memory double the unit tests drive. Knows nothing of queues or table maps.

mod error;
mod filter;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
mod postgrest;
mod push;
mod schema;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

pub use error::{ErrorBody, PostgrestError};
pub use postgrest::PostgrestClient;
pub use push::{PushRow, PushTable, Refused};
pub use schema::TargetSchema;

/// One row as PostgREST reads and writes it: column → JSON value.
pub type JsonRow = Map<String, Value>;

/// A row's identity in Supabase: `(column, value)` pairs in key order.
pub type KeyFilter = Vec<(String, Value)>;

/// How an upsert treats rows that already exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertMode {
    /// `resolution=merge-duplicates`: insert new rows, overwrite existing ones.
    Merge,
    /// `resolution=ignore-duplicates`: insert new rows, leave existing ones untouched.
    InsertMissing,
}

/// One keyset page of a table: rows ordered by `order` (ascending), strictly after the values
/// `after` holds for those columns (none: from the start), at or after `since`, at most `limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub order: Vec<String>,
    pub after: Vec<(String, Value)>,
    pub since: Option<Since>,
    pub limit: usize,
}

/// `column >= at`, for a timestamp column.
#[derive(Debug, Clone, PartialEq)]
pub struct Since {
    pub column: String,
    pub at: DateTime<FixedOffset>,
}

/// Everything the sync engine needs from Supabase, and nothing more.
///
/// Implementations must mark every write as the agent's (`x-syncbridge-origin`) so that
/// the Supabase webhook triggers skip it: that is what keeps forward-synced rows from echoing
/// back to SQL Server.
#[async_trait]
pub trait SupabaseApi: Send + Sync + 'static {
    /// Upserts `rows` into `table` in one request (`on_conflict` = the key columns). All or
    /// nothing: one refused row fails the request.
    async fn upsert(
        &self,
        table: &str,
        rows: &[JsonRow],
        on_conflict: &[String],
        mode: &UpsertMode,
    ) -> Result<(), PostgrestError>;

    /// Updates one row, identified by its key, with `values`; never inserts. Succeeds when no
    /// row matched, which callers rule out by inserting first.
    async fn update(
        &self,
        table: &str,
        key: &KeyFilter,
        values: &JsonRow,
    ) -> Result<(), PostgrestError>;

    /// The versioned push of one table's rows, in one request (`rpc/syncbridge_push`): missing
    /// rows inserted whole; existing rows get their clinic-owned columns, and each portal-owned
    /// column the clinic changed only when the clinic's time is newer than the column's
    /// version in Supabase. Returns the columns it refused where Supabase holds another value.
    async fn push(
        &self,
        table: &PushTable<'_>,
        rows: &[PushRow],
    ) -> Result<Vec<Refused>, PostgrestError>;

    /// Deletes the rows with these keys, in one request.
    async fn delete(&self, table: &str, keys: &[KeyFilter]) -> Result<(), PostgrestError>;

    /// One keyset page of `table`.
    async fn select_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Vec<JsonRow>, PostgrestError>;

    /// The schema as PostgREST's OpenAPI description has it (`definitions.<table>.properties.
    /// <column>.format`), used by `syncbridge check`.
    async fn schema(&self) -> Result<Value, PostgrestError>;
}
