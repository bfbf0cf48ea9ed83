//! Test infrastructure for syncbridge's Supabase side, built on a real PostgreSQL server:
//!
//! - [`TestDb`]: a fresh database per test, cloned from a template carrying every
//!   `sql/supabase/*.sql` plus a stand-in for the Supabase platform (API roles,
//!   `supabase_functions.http_request`).
//! - [`FakePostgrest`]: a PostgREST v12 stand-in for `/rest/v1` over that database, sized to
//!   the requests syncbridge sends (upserts, PATCH by key, DELETE by keys, keyset pages, RPC,
//!   the OpenAPI root), behind a stand-in for Supabase's API-key gateway ([`ApiKeys`]), with
//!   switches for injected faults (errors, outages, latency, refused and reset connections).
//! - [`WebhookRelay`]: does pg_net's job for the Database Webhooks the triggers queue, POSTing
//!   them to their URL after commit, and logs every delivery.
//! - [`LatencyProxy`]: a TCP proxy adding a round trip between a client and a server.
//!
//! PostgreSQL comes from `PG_TEST_URL`; `scripts/pg-test-env.sh` starts a throwaway server.
//!
//! ```no_run
//! # async fn demo() -> syncbridge_testkit::Result<()> {
//! use std::time::Duration;
//! use syncbridge_testkit::{ApiKeys, FakePostgrest, LatencyProxy, TestDb, WebhookRelay};
//! let db = TestDb::create().await?;
//! let api = FakePostgrest::start(db.url(), ApiKeys::generate()).await?;
//! let wan = LatencyProxy::start(api.addr(), Duration::from_millis(50)).await?;
//! let relay = WebhookRelay::start(db.url()).await?;
//! db.install_webhooks("http://127.0.0.1:9/api/sync/webhook", "secret").await?;
//! // point the agent at wan.url() (or api.url()) with api.keys().secret_key() ...
//! # drop((api, wan, relay)); Ok(()) }
//! ```

mod db;
mod error;
mod keys;
mod postgrest;
mod proxy;
mod relay;

pub use db::{TestDb, DEFAULT_PG_TEST_URL};
pub use error::{Result, TestkitError};
pub use keys::ApiKeys;
pub use postgrest::{FakePostgrest, LoggedRequest, ResetPoint};
pub use proxy::{LatencyProxy, WINDOW_BYTES};
pub use relay::{Delivery, DeliveryOutcome, WebhookRelay};
