//! syncbridge keeps a clinic's SQL Server and its Supabase project in sync, both ways, pushed by
//! notifications rather than polling.

pub mod agent;
pub mod check;
pub mod config;
pub mod forward;
pub mod http;
pub mod local_db;
pub mod mapping;
pub mod retry;
pub mod reverse;
mod run;
pub mod sqlserver;
pub mod supabase;

pub use agent::Agent;
pub use config::Config;
pub use run::run;
