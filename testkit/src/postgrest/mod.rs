//! A PostgREST-compatible HTTP server over a real PostgreSQL database, behind a stand-in for
//! Supabase's API gateway, for integration tests of code that talks to `/rest/v1`.
//!
//! Request path, top to bottom: `serve` (test faults, request log) → `handler` (API keys, routing,
//! per-request transaction) → `query` (query string) → `read` / `write` → `sql` (statement) →
//! `error` / `reply` (PostgREST-shaped answers). `schema` reads the catalog, `pool` holds
//! connections, `openapi` serves the root document, `controls` holds the test switches.

mod auth;
mod controls;
mod error;
mod handler;
mod openapi;
mod pool;
mod query;
mod read;
mod reply;
mod schema;
mod sql;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_postgres::Config;

pub use controls::LoggedRequest;

use crate::error::{redact_url, Result, TestkitError};
use crate::keys::ApiKeys;
use controls::{Controls, Fault};
use handler::ApiRequest;
use pool::Pool;
use reply::Reply;

/// Bulk upserts can be large; PostgREST itself sets no limit.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub(crate) struct ServerState {
    keys: ApiKeys,
    pool: Arc<Pool>,
    controls: Controls,
}

/// The running fake; the server stops when this is dropped.
pub struct FakePostgrest {
    addr: SocketAddr,
    state: Arc<ServerState>,
    server: JoinHandle<()>,
}

impl FakePostgrest {
    /// Serves the database at `db_url` on `127.0.0.1` (a free port), accepting `keys`.
    pub async fn start(db_url: &str, keys: ApiKeys) -> Result<FakePostgrest> {
        Self::start_on(db_url, keys, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`FakePostgrest::start`], listening on `addr` (for manual runs on a fixed port).
    pub async fn start_on(db_url: &str, keys: ApiKeys, addr: SocketAddr) -> Result<FakePostgrest> {
        let mut config: Config =
            db_url
                .parse()
                .map_err(|err: tokio_postgres::Error| TestkitError::BadUrl {
                    url: redact_url(db_url),
                    reason: err.to_string(),
                })?;
        // Supabase answers in UTC whatever the server's default is.
        config.options("-c TimeZone=UTC");
        let pool = Arc::new(Pool::new(config));
        // Connect once now, so an unreachable database fails the test's setup, not its first request.
        drop(
            pool.get()
                .await
                .map_err(|source| TestkitError::PgUnreachable {
                    url: redact_url(db_url),
                    source,
                })?,
        );

        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ServerState {
            keys,
            pool,
            controls: Controls::new(),
        });
        let app = Router::new().fallback(serve).with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(%err, "fake PostgREST stopped");
            }
        });
        tracing::debug!(%addr, "fake PostgREST listening");
        Ok(FakePostgrest {
            addr,
            state,
            server,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`; the API is under `/rest/v1/`, like a project URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `url()` + `/rest/v1`.
    pub fn rest_url(&self) -> String {
        format!("{}/rest/v1", self.url())
    }

    /// The keys this server accepts.
    pub fn keys(&self) -> &ApiKeys {
        &self.state.keys
    }

    /// The next `n` requests get `status` and `body` without reaching the database.
    pub fn fail_next(&self, n: usize, status: u16, body: Value) {
        self.state.controls.fail_next(n, status, body);
    }

    /// The next `n` requests wait `delay` before being processed. They are processed even if the
    /// client gave up meanwhile, like a slow PostgREST: a timed-out write may still commit.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        self.state.controls.delay_next(n, delay);
    }

    /// `Retry-After` (seconds) to send with injected 429 and 503 answers; `None` sends none.
    pub fn set_retry_after(&self, seconds: Option<u32>) {
        self.state.controls.set_retry_after(seconds);
    }

    /// While down, every request gets `503 {"message":"upstream unavailable"}` (plus
    /// `Retry-After` when set), as the gateway answers when PostgREST is unreachable. The TCP
    /// listener stays up: for a refused connection, point the client at a closed port instead.
    pub fn set_down(&self, down: bool) {
        self.state.controls.set_down(down);
    }

    /// Every `/rest/v1` request answered so far, in the order they finished.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.controls.requests()
    }

    pub fn clear_requests(&self) {
        self.state.controls.clear_requests();
    }

    /// Waits until at least `n` requests have been answered, for at most `within`.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<LoggedRequest>> {
        crate::error::wait_for_count(self.state.controls.subscribe(), n, within, || {
            format!("{n} PostgREST requests")
        })
        .await?;
        Ok(self.requests())
    }
}

impl Drop for FakePostgrest {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if path != "/rest/v1" && !path.starts_with("/rest/v1/") {
        // What Supabase's gateway says for paths it has no route for.
        let body = json!({"message": "no Route matched with those values"}).to_string();
        return Reply::json(404, body).into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        let body = json!({"message": "Request body too large or unreadable"}).to_string();
        return Reply::json(413, body).into_response();
    };
    let request = ApiRequest {
        method: parts.method,
        path,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    };
    // Answer on a task of its own: hyper drops this future when the client disconnects, and a
    // slow PostgREST still finishes (and logs) a request whose client has given up.
    let task = tokio::spawn(answer(state, request));
    match task.await {
        Ok(reply) => reply.into_response(),
        Err(err) => {
            tracing::error!(%err, "fake PostgREST handler failed");
            let body = json!({"message": "fake PostgREST handler failed"}).to_string();
            Reply::json(500, body).into_response()
        }
    }
}

async fn answer(state: Arc<ServerState>, request: ApiRequest) -> Reply {
    let mut logged = log_entry(&request);
    let reply = match state.controls.take_fault() {
        Some(Fault::Down) => {
            let body = json!({"message": "upstream unavailable"}).to_string();
            with_retry_after(&state, Reply::json(503, body))
        }
        Some(Fault::Answer { status, body }) => {
            with_retry_after(&state, Reply::json(status, body.to_string()))
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            handler::respond(&state, &request).await
        }
        None => handler::respond(&state, &request).await,
    };
    logged.status = reply.status;
    tracing::debug!(method = %logged.method, path = %logged.path, status = reply.status, "fake PostgREST answered");
    state.controls.record(logged);
    reply
}

fn with_retry_after(state: &ServerState, reply: Reply) -> Reply {
    match state.controls.retry_after() {
        Some(seconds) if matches!(reply.status, 429 | 503) => {
            reply.header(header::RETRY_AFTER, &seconds.to_string())
        }
        _ => reply,
    }
}

fn log_entry(request: &ApiRequest) -> LoggedRequest {
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    let body_rows = match &body {
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(_)) => 1,
        _ => 0,
    };
    let prefer: Vec<&str> = request
        .headers
        .get_all(HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    LoggedRequest {
        method: request.method.to_string(),
        path: request.path.clone(),
        query: request.query.clone(),
        prefer: (!prefer.is_empty()).then(|| prefer.join(", ")),
        status: 0,
        body_rows,
        body,
    }
}
