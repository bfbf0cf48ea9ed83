//! A PostgREST v12 stand-in over a real PostgreSQL database, behind a stand-in for Supabase's
//! API gateway, serving the requests syncbridge sends to `/rest/v1` (see `table`, `rpc`,
//! `openapi`), with switches for injected faults.
//!
//! Request path, top to bottom: `server` (TCP, faults, latency, request log) → `handler` (API
//! keys, routing, per-request transaction) → `table` / `rpc` / `openapi` (with `query` and
//! `filter` for the query string, `schema` for the catalog) → `error` / `reply`
//! (PostgREST-shaped answers). `controls` holds the test switches, `pool` the connections.

mod auth;
mod controls;
mod error;
mod filter;
mod handler;
mod openapi;
mod pool;
mod query;
mod reply;
mod rpc;
mod schema;
mod server;
mod table;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Config;

pub use controls::{LoggedRequest, ResetPoint};

use crate::error::{redact_url, Result, TestkitError};
use crate::keys::ApiKeys;
use controls::Controls;
use pool::Pool;
use server::Server;

pub(crate) struct ServerState {
    keys: ApiKeys,
    pool: Arc<Pool>,
    controls: Controls,
}

/// The running stand-in; it stops, resetting its connections, when this is dropped.
pub struct FakePostgrest {
    state: Arc<ServerState>,
    server: Server,
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
        let state = Arc::new(ServerState {
            keys,
            pool,
            controls: Controls::new(),
        });
        let server = Server::start(addr, Arc::clone(&state))?;
        tracing::debug!(addr = %server.addr, "PostgREST stand-in listening");
        Ok(FakePostgrest { state, server })
    }

    /// The address it listens on (also while unreachable: the port it will listen on again).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`; the API is under `/rest/v1/`, like a project URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
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

    /// From now on every `n`-th request (the n-th, 2n-th, ...) gets `status` and `body` without
    /// reaching the database: `fail_every(2, 500, ..)` fails every other request. `n = 0`
    /// stops it. Requests already answered by `set_down` or `fail_next` are not counted.
    pub fn fail_every(&self, n: usize, status: u16, body: Value) {
        self.state.controls.fail_every(n, status, body);
    }

    /// The next `n` requests wait `delay` before being processed. They are processed even if the
    /// client gave up meanwhile, like a slow PostgREST: a timed-out write may still commit.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        self.state.controls.delay_next(n, delay);
    }

    /// Every request waits `latency` before anything else happens to it, like a slow link or
    /// a distant server (`Duration::ZERO` to stop). For a network round trip per TCP chunk,
    /// put a [`LatencyProxy`](crate::LatencyProxy) in front instead.
    pub fn set_latency(&self, latency: Duration) {
        self.state.controls.set_latency(latency);
    }

    /// The next `n` requests have their connection reset (RST, no answer) at `point`; with
    /// [`ResetPoint::AfterHandling`] the write commits first, so the client cannot know it did.
    /// They are logged with status 0.
    pub fn reset_next(&self, n: usize, point: ResetPoint) {
        self.state.controls.reset_next(n, point);
    }

    /// `Retry-After` (seconds) to send with injected 429 and 503 answers; `None` sends none.
    pub fn set_retry_after(&self, seconds: Option<u32>) {
        self.state.controls.set_retry_after(seconds);
    }

    /// While down, every request gets `503 {"message":"upstream unavailable"}` (plus
    /// `Retry-After` when set), as the gateway answers when PostgREST is unreachable. The TCP
    /// listener stays up; for refused connections use [`FakePostgrest::set_unreachable`].
    pub fn set_down(&self, down: bool) {
        self.state.controls.set_down(down);
    }

    /// While unreachable the port is closed: new connections are refused and open ones are
    /// reset, as when the network or the host is gone. `false` listens on the same port again.
    /// Requests already being processed still finish (and commit) on the server side.
    pub async fn set_unreachable(&self, unreachable: bool) -> Result<()> {
        Ok(self.server.set_unreachable(unreachable).await?)
    }

    /// Turns off every injected fault and the latency (not `set_unreachable`); the request
    /// log stays.
    pub fn clear_faults(&self) {
        self.state.controls.clear_faults();
    }

    /// How many `/rest/v1` requests have arrived so far, still in progress ones included
    /// (inside their latency, say): a test can tell a request is in flight on the server.
    pub fn arrived(&self) -> usize {
        self.state.controls.arrived()
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
