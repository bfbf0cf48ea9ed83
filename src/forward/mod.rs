//! Forward sync (SQL Server → Supabase): the [`worker`] owns when to drain (notifications,
//! retry timers, shutdown); [`batch`] owns what one claimed batch becomes (load → map →
//! send → settlements), and `send` how its rows reach Supabase (order, bisection).

pub mod batch;
pub mod counters;
#[cfg(test)]
mod fixture;
mod send;
pub mod worker;

pub use counters::{DrainReport, ForwardCounters};
pub use worker::{ForwardHandle, ForwardSettings, ForwardWorker};
