//! Start-up: the table map resolved against both schemas ([`super::schemas`]) before any sync
//! starts. While SQL Server is unreachable the schema an earlier run cached is used instead (so
//! webhooks are accepted during an outage), or, without one, the agent waits with backoff and
//! says why on the status endpoint. A map that does not match SQL Server is a configuration
//! fault; a column on one side only is drift, reported and not synced.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::handle::AgentHandle;
use super::schema_cache::SchemaCache;
use super::schemas::Schemas;
use crate::config::{ConfigError, Problem};
use crate::mapping::{DriftLog, ResolveError, ResolvedMap, TableMap};
use crate::retry::Backoff;
use crate::sqlserver::{DescribedTables, SqlStore, StoreError};
use crate::supabase::SupabaseApi;

#[derive(Debug, thiserror::Error)]
enum ResolveFailure {
    #[error("the table map does not match SQL Server:\n{0}")]
    Map(ResolveError),
    #[error("SQL Server unavailable and no cached schema: {0}")]
    Unavailable(#[source] StoreError),
}

/// What start-up needs besides SQL Server: Supabase, the schema cache and the drift log.
pub(crate) struct StartupSides {
    pub(crate) supabase: Arc<dyn SupabaseApi>,
    pub(crate) cache: SchemaCache,
    pub(crate) drift: Arc<DriftLog>,
}

/// The table map resolved against both schemas, with what resolves it again at run time.
pub(crate) struct Resolved {
    pub(crate) map: Arc<ResolvedMap>,
    pub(crate) schemas: Arc<Schemas>,
}

/// SQL Server's description of the mapped tables, cached; or the cached copy when SQL Server
/// is unreachable.
async fn describe(
    store: &dyn SqlStore,
    map: &TableMap,
    cache: &SchemaCache,
) -> Result<(DescribedTables, bool), ResolveFailure> {
    match DescribedTables::read(store, map.sources()).await {
        Ok(described) => Ok((described, true)),
        Err(e) if e.is_retryable() => match cache.load().await {
            Some(described) => {
                tracing::warn!(error = %e, "SQL Server unreachable; starting from the cached schema");
                Ok((described, false))
            }
            None => Err(ResolveFailure::Unavailable(e)),
        },
        Err(e) => Err(ResolveFailure::Unavailable(e)),
    }
}

/// Resolves `map` against SQL Server's catalog (cached once it matched) and Supabase's schema.
async fn resolve(
    store: &dyn SqlStore,
    map: &TableMap,
    sides: &StartupSides,
) -> Result<Resolved, ResolveFailure> {
    let (described, fresh) = describe(store, map, &sides.cache).await?;
    let schemas = Schemas {
        map: map.clone(),
        described,
        supabase: sides.supabase.clone(),
        cache: sides.cache.clone(),
        drift: sides.drift.clone(),
    };
    let resolved = schemas.resolve().await.map_err(ResolveFailure::Map)?;
    if fresh {
        sides.cache.store(&schemas.described).await;
    }
    Ok(Resolved {
        map: Arc::new(resolved),
        schemas: Arc::new(schemas),
    })
}

/// Resolves the map, retrying with `backoff` while SQL Server is unavailable. `Ok(None)` when
/// `shutdown` fired first; a [`ConfigError`] (exit code 78) when the map does not match.
pub(crate) async fn resolve_map(
    store: &dyn SqlStore,
    map: &TableMap,
    sides: &StartupSides,
    agent: &AgentHandle,
    backoff: Backoff,
    shutdown: &CancellationToken,
) -> Result<Option<Resolved>, ConfigError> {
    let mut failures = 0;
    loop {
        match resolve(store, map, sides).await {
            Ok(resolved) => {
                agent.set_startup_problem(None);
                return Ok(Some(resolved));
            }
            Err(ResolveFailure::Map(problems)) => {
                agent.set_startup_problem(Some(problems.to_string()));
                return Err(ConfigError(vec![Problem {
                    key: "SYNC_TABLE_MAP",
                    message: format!("the table map does not match SQL Server:\n{problems}"),
                }]));
            }
            Err(e @ ResolveFailure::Unavailable(_)) => {
                failures += 1;
                tracing::warn!(error = %e, "waiting for SQL Server before starting sync");
                agent.set_startup_problem(Some(e.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(backoff.next(failures, None)) => {}
                }
            }
        }
    }
}
