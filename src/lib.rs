//! syncbridge keeps a clinic's SQL Server and its Supabase project in sync, both ways, pushed by
//! notifications rather than polling.
#![deny(unreachable_pub)]

mod agent;
pub mod check;
pub mod config;
mod forward;
mod http;
mod local_db;
pub mod mapping;
pub mod retry;
mod reverse;
mod run;
pub mod sqlserver;
pub mod supabase;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use agent::{Agent, AgentError};
pub use config::Config;
pub use run::run;
