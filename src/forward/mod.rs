//! Forward sync (SQL Server → Supabase): the [`worker`] owns when to drain (notifications,
//! retry timers, shutdown); [`batch`] owns what one claimed batch becomes (load → map → upsert
//! or delete → settlements).

pub mod batch;
pub mod worker;

pub use worker::{DrainReport, ForwardHandle, ForwardSettings, ForwardWorker};
