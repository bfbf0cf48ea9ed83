//! One agent, wired: the HTTP server, the forward worker, the reverse applier and catch-up, all
//! under one cancellation token. `run` takes its listener and shutdown from the caller, so a
//! test binds `127.0.0.1:0` and runs its own agent.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::forward::{ForwardSettings, ForwardWorker};
use crate::http::{routes, AppState, Ready};
use crate::mapping::{ResolveError, ResolvedMap, TableMap};
use crate::retry::RetryPolicy;
use crate::reverse::catchup::Catchup;
use crate::reverse::{Applier, Inbox};
use crate::sqlserver::tds::TdsStore;
use crate::sqlserver::{DescribedTables, SqlStore, StoreError};
use crate::status::Status;
use crate::supabase::{PostgrestClient, SupabaseApi};

/// Dead inbox events are kept this long for inspection.
const DEAD_EVENT_DAYS: i64 = 30;
/// Bounds the wait for in-flight work at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What an agent runs with: its configuration, its SQL Server, and its table map.
pub struct Agent {
    pub config: Config,
    pub store: Arc<dyn SqlStore>,
    pub map: TableMap,
}

impl Agent {
    /// The production agent: tiberius against `MSSQL_CONNECTION_STRING`, and the table map from
    /// `SYNC_TABLE_MAP` or the built-in sample clinic map.
    pub fn from_config(config: Config) -> anyhow::Result<Self> {
        let map = match &config.table_map {
            Some(path) => TableMap::load(path)?,
            None => TableMap::sample_clinic(),
        };
        let tds = config.mssql_config()?;
        let store = Arc::new(TdsStore::new(tds, config.agent_id.clone(), 4));
        Ok(Self { config, store, map })
    }
}

/// Reads the mapped tables from SQL Server's catalog.
pub async fn describe_all(
    store: &dyn SqlStore,
    map: &TableMap,
) -> Result<DescribedTables, StoreError> {
    DescribedTables::read(store, map.sources()).await
}

/// Resolves the map from SQL Server, falling back to the schema cached by an earlier run when
/// SQL Server is unreachable, so that webhooks are still accepted during an outage.
async fn resolve(
    store: &dyn SqlStore,
    map: &TableMap,
    inbox: &Inbox,
) -> Result<ResolvedMap, ResolveFailure> {
    match describe_all(store, map).await {
        Ok(described) => {
            let resolved = ResolvedMap::resolve(map, &described).map_err(ResolveFailure::Map)?;
            if let Ok(json) = serde_json::to_string(&described) {
                if let Err(e) = inbox.set_meta("schema", json).await {
                    tracing::warn!(error = %e, "cannot cache the SQL Server schema");
                }
            }
            Ok(resolved)
        }
        Err(e) if e.is_retryable() => {
            let cached = inbox
                .get_meta("schema")
                .await
                .ok()
                .flatten()
                .and_then(|j| serde_json::from_str::<DescribedTables>(&j).ok());
            match cached {
                Some(described) => {
                    tracing::warn!(error = %e, "SQL Server unreachable; starting from the cached schema");
                    ResolvedMap::resolve(map, &described).map_err(ResolveFailure::Map)
                }
                None => Err(ResolveFailure::Unavailable(e.to_string())),
            }
        }
        Err(e) => Err(ResolveFailure::Unavailable(e.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
enum ResolveFailure {
    #[error("the table map does not match SQL Server:\n{0}")]
    Map(ResolveError),
    #[error("SQL Server unavailable and no cached schema: {0}")]
    Unavailable(String),
}

/// Runs the agent until `shutdown` fires; returns an error for a fatal configuration problem.
pub async fn run(
    agent: Agent,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Agent { config, store, map } = agent;
    let status = Arc::new(Status::default());
    let inbox = Inbox::open(&config.data_dir).context("opening the reverse-sync inbox")?;
    if let Ok(n) = inbox.prune_dead(DEAD_EVENT_DAYS).await {
        if n > 0 {
            tracing::info!(events = n, "pruned old dead inbox events");
        }
    }
    let supabase: Arc<dyn SupabaseApi> = Arc::new(
        PostgrestClient::new(
            &config.supabase_url,
            &config.service_key,
            config.service_key_kind,
            config.supabase_timeout,
        )
        .context("building the PostgREST client")?,
    );
    let signing_key = config.webhook_signing_key();
    let ready = Arc::new(OnceLock::new());
    let state = Arc::new(AppState {
        admin_token: config.admin_token.clone(),
        notify_token: config.notify_token.clone(),
        webhook_secret: config.webhook_secret.clone(),
        signing_key,
        max_body_bytes: config.max_body_bytes,
        ready: ready.clone(),
        store: store.clone(),
        inbox: inbox.clone(),
        status: status.clone(),
        started_at: chrono::Utc::now(),
    });
    let addr = listener.local_addr().ok();
    let server = warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(server.run());
    tracing::info!(?addr, sql_server = %config.mssql_label, supabase = %config.supabase_url, "syncbridge listening");

    let mut failures = 0;
    let resolved = loop {
        match resolve(store.as_ref(), &map, &inbox).await {
            Ok(resolved) => break Arc::new(resolved),
            Err(ResolveFailure::Map(problems)) => {
                status.set_startup_problem(Some(problems.to_string()));
                shutdown.cancel();
                let _ = server.await;
                // A configuration problem (exit code 78), unlike an I/O failure of the agent.
                return Err(crate::config::ConfigError(vec![crate::config::Problem {
                    key: "SYNC_TABLE_MAP",
                    message: format!("the table map does not match SQL Server:\n{problems}"),
                }])
                .into());
            }
            Err(e @ ResolveFailure::Unavailable(_)) => {
                failures += 1;
                tracing::warn!(error = %e, "waiting for SQL Server before starting sync");
                status.set_startup_problem(Some(e.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = server.await;
                        return Ok(());
                    }
                    _ = tokio::time::sleep(config.backoff.next(failures, None)) => {}
                }
            }
        }
    };
    status.set_startup_problem(None);

    let (applier, applier_task) = Applier {
        store: store.clone(),
        inbox: inbox.clone(),
        map: resolved.clone(),
        status: status.clone(),
        retry: RetryPolicy {
            max_attempts: config.max_attempts,
            backoff: config.backoff,
        },
    }
    .spawn(shutdown.child_token());
    let (catchup, catchup_task) = Catchup {
        supabase: supabase.clone(),
        map: resolved.clone(),
        inbox: inbox.clone(),
        status: status.clone(),
        applier: applier.clone(),
        backoff: config.backoff,
    }
    .spawn(shutdown.child_token());
    let (forward, forward_task) = ForwardWorker {
        store,
        supabase,
        map: resolved.clone(),
        settings: ForwardSettings {
            batch_size: config.batch_size,
            lease: config.claim_lease,
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            writer_wait: Duration::from_secs(1),
        },
        status,
    }
    .spawn(shutdown.child_token());
    // `set` fails only if already set, which cannot happen: this is the only writer.
    let _ = ready.set(Ready {
        map: resolved,
        forward,
        applier,
        catchup,
    });

    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing in-flight work");
    let all = async {
        let _ = tokio::join!(server, forward_task, applier_task, catchup_task);
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!(
            "in-flight work did not finish within {SHUTDOWN_GRACE:?}; leased items will be retried"
        );
    }
    Ok(())
}
