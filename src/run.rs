//! One agent, wired and run: the local database, the HTTP server (listening from the first
//! moment, so webhooks are answered while SQL Server is still unreachable), the table map's
//! resolution, then the workers, all under one cancellation token. `run` takes its listener and
//! shutdown from the caller, so a test binds `127.0.0.1:0` and runs its own agent.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::schema_cache::SchemaCache;
use crate::agent::timed;
use crate::agent::workers::{self, Sides};
use crate::agent::{startup, Agent, AgentHandle};
use crate::config::Config;
use crate::http::auth::Tokens;
use crate::http::{routes, serve, AppState};
use crate::local_db::LocalDb;
use crate::reverse::Inbox;
use crate::supabase::{PostgrestClient, SupabaseApi};
use crate::sync_state::SyncState;
use crate::telemetry::Telemetry;

/// Dead inbox events are kept this long for inspection.
const DEAD_EVENT_DAYS: i64 = 30;
/// Bounds the wait for in-flight work at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the agent until `shutdown` fires; returns an error for a fatal problem (a
/// [`crate::config::ConfigError`] when the configuration is at fault).
pub async fn run(
    agent: Agent,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Agent { config, store, map } = agent;
    let (inbox, cache) = open_local_db(&config).await?;
    let supabase: Arc<dyn SupabaseApi> = Arc::new(
        PostgrestClient::new(
            &config.supabase_url,
            &config.service_key,
            config.service_key_kind,
            config.supabase_timeout,
        )
        .context("building the PostgREST client")?,
    );
    let telemetry = Telemetry::default();
    let store = timed::store(store, &telemetry);
    let supabase = timed::supabase(supabase, &telemetry);
    let handle = AgentHandle::new(store.clone(), inbox.clone(), telemetry);
    let server = serve(&config, listener, handle.clone(), &shutdown);

    let backoff = config.backoff;
    let startup_sides = startup::StartupSides {
        supabase: supabase.clone(),
        cache,
        drift: handle.drift_log(),
    };
    let resolved = startup::resolve_map(
        store.as_ref(),
        &map,
        &startup_sides,
        &handle,
        backoff,
        &shutdown,
    );
    let resolved = match resolved.await {
        Ok(Some(resolved)) => resolved,
        Ok(None) => {
            let _ = server.await;
            return Ok(());
        }
        Err(fault) => {
            shutdown.cancel();
            let _ = server.await;
            // A configuration problem (exit code 78), unlike an I/O failure of the agent.
            return Err(fault.into());
        }
    };
    let sides = Sides {
        store,
        supabase,
        state: SyncState::open(inbox.local_db()).context("opening the sync state")?,
        inbox,
    };
    let (ready, tasks) = workers::start(&config, sides, resolved, &handle, &shutdown);
    handle.set_ready(ready);

    shutdown.cancelled().await;
    finish(server, tasks).await;
    Ok(())
}

/// The inbox and the schema cache in the data directory; old dead events pruned.
async fn open_local_db(config: &Config) -> anyhow::Result<(Inbox, SchemaCache)> {
    let db =
        LocalDb::open_for_writing(&config.data_dir).context("opening the reverse-sync inbox")?;
    let inbox = Inbox::open(db.clone()).context("opening the reverse-sync inbox")?;
    let cache = SchemaCache::open(db).context("opening the schema cache")?;
    if let Ok(n) = inbox.prune_dead(DEAD_EVENT_DAYS).await {
        if n > 0 {
            tracing::info!(events = n, "pruned old dead inbox events");
        }
    }
    Ok((inbox, cache))
}

/// Starts the HTTP server on `listener`; it stops accepting when `shutdown` fires.
fn serve(
    config: &Config,
    listener: TcpListener,
    agent: AgentHandle,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let state = Arc::new(AppState::new(
        Tokens::from_config(config),
        config.max_body_bytes,
        agent,
    ));
    let log = state.refusals.clone();
    let routes = warp::service(routes(state));
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, sql_server = %config.mssql_label, supabase = %config.supabase_url, "syncbridge listening");
    let server = serve::serve(listener, routes, config.http_limits, log, shutdown.clone());
    tokio::spawn(server)
}

/// Waits for in-flight work after shutdown, within [`SHUTDOWN_GRACE`].
async fn finish(server: JoinHandle<()>, tasks: Vec<JoinHandle<()>>) {
    tracing::info!("shutting down: finishing in-flight work");
    let all = async {
        let _ = server.await;
        futures_util::future::join_all(tasks).await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!(
            "in-flight work did not finish within {SHUTDOWN_GRACE:?}; leased items will be retried"
        );
    }
}
