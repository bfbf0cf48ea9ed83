//! Both sides' schemas and the table map resolved against them: SQL Server's catalog (read at
//! start-up, or the cached copy while SQL Server is unreachable) and Supabase's OpenAPI
//! description (read at start-up and again when PostgREST refuses a column, or the cached copy
//! while Supabase is unreachable). Columns on one side only are reported once ([`DriftLog`])
//! and left out of the map, so drift never stops sync.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::schema_cache::SchemaCache;
use crate::forward::Remap;
use crate::mapping::{DriftLog, ResolveError, ResolvedMap, TableMap};
use crate::sqlserver::DescribedTables;
use crate::supabase::{PostgrestError, SupabaseApi, TargetSchema};

/// How long start-up waits for Supabase's schema before using the cached copy: start-up must
/// not hang on an unreachable Supabase (the forward path waits out an outage on its own).
const SCHEMA_WAIT: Duration = Duration::from_secs(5);

/// What the map is resolved from, kept for resolving it again at run time.
pub(crate) struct Schemas {
    pub(crate) map: TableMap,
    /// SQL Server's side as start-up read it (a column added there needs a restart to sync).
    pub(crate) described: DescribedTables,
    pub(crate) supabase: Arc<dyn SupabaseApi>,
    pub(crate) cache: SchemaCache,
    pub(crate) drift: Arc<DriftLog>,
}

impl Schemas {
    /// Resolves the map against SQL Server's description and Supabase's schema as it is now
    /// (or as last cached, or unknown), reporting the drift.
    pub(crate) async fn resolve(&self) -> Result<ResolvedMap, ResolveError> {
        let target = self.supabase_schema().await;
        let resolved = ResolvedMap::resolve_against(&self.map, &self.described, target.as_ref())?;
        self.drift.report(&resolved.drift);
        Ok(resolved)
    }

    /// Supabase's schema now, cached; the cached copy when Supabase cannot be asked.
    async fn supabase_schema(&self) -> Option<TargetSchema> {
        let read = tokio::time::timeout(SCHEMA_WAIT, self.supabase.schema()).await;
        match read {
            Ok(Ok(document)) => {
                let schema = TargetSchema::from_openapi(&document);
                self.cache.store_supabase(&schema).await;
                Some(schema)
            }
            Ok(Err(e)) => self.cached(&e.to_string()).await,
            Err(_) => self.cached("no answer in time").await,
        }
    }

    async fn cached(&self, why: &str) -> Option<TargetSchema> {
        let cached = self.cache.load_supabase().await;
        match &cached {
            Some(_) => tracing::warn!(error = why, "cannot read Supabase's schema; using the cached copy"),
            None => tracing::warn!(error = why, "cannot read Supabase's schema and none is cached; columns are checked when rows are sent"),
        }
        cached
    }
}

#[async_trait]
impl Remap for Schemas {
    async fn remap(&self, current: &ResolvedMap) -> Result<Option<ResolvedMap>, PostgrestError> {
        let schema = TargetSchema::from_openapi(&self.supabase.schema().await?);
        self.cache.store_supabase(&schema).await;
        let Ok(resolved) = ResolvedMap::resolve_against(&self.map, &self.described, Some(&schema))
        else {
            return Ok(None);
        };
        self.drift.report(&resolved.drift);
        Ok((resolved.tables != current.tables).then_some(resolved))
    }
}
