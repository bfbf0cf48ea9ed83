//! Helpers for this crate's integration tests and benchmarks only (the `test-support`
//! feature), beside the in-memory doubles (`sqlserver::memory`, `supabase::memory`).

use crate::mapping::{ResolvedTable, TableMap};
use crate::sqlserver::{DescribedTables, Row, SqlStore};
use crate::supabase::JsonRow;

/// A Standard Webhooks signature header value (`v1,<base64>`) over `id.timestamp.body`, as
/// Supabase signs a webhook with `secret` (`whsec_...`); `None` when `secret` is not one.
pub fn sign_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = crate::config::decode_signing_secret(secret)?;
    Some(crate::http::signature::sign(&key, id, timestamp, body))
}

/// Maps rows of one table to PostgREST JSON exactly as the forward path does.
pub struct RowMapper {
    table: ResolvedTable,
}

impl RowMapper {
    /// The mapper for `source` under `map`, resolved against `store`'s catalog.
    pub async fn new(store: &dyn SqlStore, map: &TableMap, source: &str) -> anyhow::Result<Self> {
        let described = DescribedTables::read(store, map.sources()).await?;
        let resolved = crate::mapping::ResolvedMap::resolve(map, &described)?;
        let table = resolved
            .by_source(source)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{source} is not in the map"))?;
        Ok(Self { table })
    }

    pub fn to_json(&self, row: &Row) -> JsonRow {
        self.table.row_to_json(row)
    }
}
