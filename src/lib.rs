//! syncbridge keeps a clinic's SQL Server and its Supabase project in sync, both ways, pushed by
//! notifications rather than polling.
//!
//! Data paths, top to bottom:
//! - forward: `POST /api/sync/queue-notify` ([`http::admin`]) wakes the [`forward::worker`], which
//!   claims `SyncQueue` items ([`sqlserver`]), loads the rows, maps them ([`mapping`]), upserts or
//!   deletes them through PostgREST ([`supabase`]) and settles the items.
//! - reverse: `POST /api/sync/webhook` ([`http::webhook`]) verifies and decodes a Supabase
//!   Database Webhook, stores it durably in the [`reverse::inbox`], and the
//!   [`reverse::applier`] writes it into SQL Server; [`reverse::catchup`] fetches what webhooks
//!   missed.
//!
//! [`app::run`] wires these together for one agent; `main.rs` only parses the command line.

pub mod app;
pub mod check;
pub mod config;
pub mod forward;
pub mod http;
pub mod mapping;
pub mod retry;
pub mod reverse;
pub mod sqlserver;
pub mod status;
pub mod supabase;

pub use app::{run, Agent};
pub use config::Config;
