//! Start-up: the table map resolved against SQL Server's catalog before any sync starts. While
//! SQL Server is unreachable the schema an earlier run cached is used instead (so webhooks are
//! accepted during an outage), or, without one, the agent waits with backoff and says why on
//! the status endpoint. A map that does not match SQL Server is a configuration fault.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::handle::AgentHandle;
use super::schema_cache::SchemaCache;
use crate::config::{ConfigError, Problem};
use crate::mapping::{ResolveError, ResolvedMap, TableMap};
use crate::retry::Backoff;
use crate::sqlserver::{DescribedTables, SqlStore, StoreError};

#[derive(Debug, thiserror::Error)]
enum ResolveFailure {
    #[error("the table map does not match SQL Server:\n{0}")]
    Map(ResolveError),
    #[error("SQL Server unavailable and no cached schema: {0}")]
    Unavailable(#[source] StoreError),
}

/// Resolves `map` from SQL Server, caching what it read, or from the cache when SQL Server is
/// unreachable.
async fn resolve(
    store: &dyn SqlStore,
    map: &TableMap,
    cache: &SchemaCache,
) -> Result<ResolvedMap, ResolveFailure> {
    match DescribedTables::read(store, map.sources()).await {
        Ok(described) => {
            let resolved = ResolvedMap::resolve(map, &described).map_err(ResolveFailure::Map)?;
            cache.store(&described).await;
            Ok(resolved)
        }
        Err(e) if e.is_retryable() => match cache.load().await {
            Some(described) => {
                tracing::warn!(error = %e, "SQL Server unreachable; starting from the cached schema");
                ResolvedMap::resolve(map, &described).map_err(ResolveFailure::Map)
            }
            None => Err(ResolveFailure::Unavailable(e)),
        },
        Err(e) => Err(ResolveFailure::Unavailable(e)),
    }
}

/// Resolves the map, retrying with `backoff` while SQL Server is unavailable. `Ok(None)` when
/// `shutdown` fired first; a [`ConfigError`] (exit code 78) when the map does not match.
pub(crate) async fn resolve_map(
    store: &dyn SqlStore,
    map: &TableMap,
    cache: &SchemaCache,
    agent: &AgentHandle,
    backoff: Backoff,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<ResolvedMap>>, ConfigError> {
    let mut failures = 0;
    loop {
        match resolve(store, map, cache).await {
            Ok(resolved) => {
                agent.set_startup_problem(None);
                return Ok(Some(Arc::new(resolved)));
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
