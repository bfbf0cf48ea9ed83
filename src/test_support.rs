//! Helpers for this crate's integration tests and benchmarks only (the `test-support`
//! feature), beside the in-memory doubles (`sqlserver::memory`, `supabase::memory`): webhook
//! signatures, a row mapper for comparing both sides, and the out-of-process SQL Server double
//! ([`remote`]) the real binary runs against in the fault tests.

pub mod remote;

use crate::mapping::{ResolvedTable, TableMap};
use crate::sqlserver::{DescribedTables, Row, SqlStore};
use crate::supabase::{JsonRow, TargetSchema};

/// A Standard Webhooks signature header value (`v1,<base64>`) over `id.timestamp.body`, as
/// Supabase signs a webhook with `secret` (`whsec_...`); `None` when `secret` is not one.
pub fn sign_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = crate::config::decode_signing_secret(secret)?;
    Some(crate::http::signature::sign(&key, id, timestamp, body))
}

/// Maps rows of one table between SQL Server and PostgREST JSON exactly as the data paths do.
pub struct RowMapper {
    table: ResolvedTable,
}

impl RowMapper {
    /// The mapper for `source` under `map`, resolved against `store`'s catalog.
    pub async fn new(store: &dyn SqlStore, map: &TableMap, source: &str) -> anyhow::Result<Self> {
        Self::resolve(store, map, source, None).await
    }

    /// The mapper for `source` under `map`, resolved against both schemas as the agent resolves
    /// it (`openapi`: PostgREST's description), so only the columns both sides have are mapped.
    pub async fn for_both_sides(
        store: &dyn SqlStore,
        openapi: &serde_json::Value,
        map: &TableMap,
        source: &str,
    ) -> anyhow::Result<Self> {
        let target = TargetSchema::from_openapi(openapi);
        Self::resolve(store, map, source, Some(&target)).await
    }

    async fn resolve(
        store: &dyn SqlStore,
        map: &TableMap,
        source: &str,
        target: Option<&TargetSchema>,
    ) -> anyhow::Result<Self> {
        let described = DescribedTables::read(store, map.sources()).await?;
        let resolved = crate::mapping::ResolvedMap::resolve_against(map, &described, target)?;
        let table = resolved
            .by_source(source)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{source} is not in the map"))?;
        Ok(Self { table })
    }

    /// The Supabase table.
    pub fn target(&self) -> &str {
        &self.table.target
    }

    /// The Supabase key columns, in key order.
    pub fn target_keys(&self) -> Vec<String> {
        self.table.on_conflict()
    }

    pub fn to_json(&self, row: &Row) -> JsonRow {
        self.table.row_to_json(row)
    }

    /// The row as a forward write sends it: with the clinic's time `at` of its change in the
    /// row version column, when Supabase has one.
    pub fn to_json_versioned(&self, row: &Row, at: chrono::DateTime<chrono::Utc>) -> JsonRow {
        self.table.with_row_version(self.table.row_to_json(row), at)
    }

    /// The synced columns of a SQL Server row, as they are.
    pub fn synced(&self, row: &Row) -> Row {
        self.table
            .columns
            .iter()
            .map(|c| {
                let value = row.get(&c.source.name).cloned();
                (
                    c.source.name.clone(),
                    value.unwrap_or(crate::sqlserver::SqlValue::Null),
                )
            })
            .collect()
    }

    /// A Supabase row decoded into typed SQL Server values, as the reverse path decodes it, for
    /// the synced columns only (Supabase-only columns are left out).
    pub fn from_json(&self, record: &JsonRow) -> anyhow::Result<Row> {
        let known: JsonRow = record
            .iter()
            .filter(|(c, _)| self.table.by_target(c).is_some())
            .map(|(c, v)| (c.clone(), v.clone()))
            .collect();
        let decoded = self.table.decode_record(&known)?;
        Ok(decoded
            .into_iter()
            .map(|(c, v)| (c.source.name.clone(), v))
            .collect())
    }
}
