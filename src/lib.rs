//! syncbridge keeps a clinic's SQL Server and its Supabase project in sync, both ways, pushed by
//! notifications rather than polling.
//!
//! Modules, bottom to top (each imports only those below it):
//! `retry`, `config`, `local_db` (and `checkpoints`, backfill's, in it), `sync_state`, `counters`, `telemetry` → [`sqlserver`] (the `SqlStore` seam, its value model, `tds`,
//! `memory`) and [`supabase`] (the `SupabaseApi` seam, the PostgREST client, `memory`) →
//! [`mapping`] (table map, resolution against both schemas, drift, JSON conversion) →
//! `forward` and `reverse` (the two data paths) → [`check`] and `agent` (start-up, workers, the
//! handle HTTP calls, status, metrics, retrying what failed) → `http` (routes, thin handlers, and the server loop with its limits)
//! → `run` (wires one agent) → [`cli`] (the binary's commands: `run`, `init`, `status`,
//! `retry-failed`, `backfill`, `verify`, `service`, and logging).
//!
//! Forward, SQL Server → Supabase: `POST /api/sync/queue-notify` (`http::admin`) wakes the
//! `forward::worker`, which claims `SyncQueue` items, loads their rows (`forward::batch`), maps
//! them (`mapping`), upserts or deletes them (`forward::send`) and settles the items; while a
//! side is not answering it backs off as a whole (`forward::outage`) without spending attempts.
//!
//! Reverse, Supabase → SQL Server: `POST /api/sync/webhook` (`http::webhook`) authenticates
//! (`http::auth`) and decodes it; `reverse::intake` accepts or refuses it; the
//! `reverse::inbox` stores it durably before the answer; the `reverse::applier` writes it into
//! SQL Server by `reverse::plan`'s rules. `reverse::catchup` reads what webhooks missed through
//! the same intake.
#![deny(unreachable_pub)]

mod agent;
pub mod check;
mod checkpoints;
pub mod cli;
pub mod config;
mod counters;
mod forward;
mod http;
mod local_db;
pub mod mapping;
#[cfg(test)]
mod proptest_cases;
pub mod retry;
mod reverse;
mod run;
pub mod sqlserver;
pub mod supabase;
mod sync_state;
mod telemetry;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use agent::{Agent, AgentError};
pub use config::Config;
pub use run::run;
