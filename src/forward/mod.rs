//! Forward sync (SQL Server → Supabase): the [`worker`] owns when to drain (notifications,
//! retry timers, shutdown); [`batch`] owns what one claimed batch becomes (load → map →
//! send → settlements), and `send` how its rows reach Supabase (order, bisection).

pub(crate) mod batch;
pub(crate) mod counters;
#[cfg(test)]
mod fixture;
mod send;
pub(crate) mod worker;

pub(crate) use counters::{DrainReport, ForwardCounters};
pub(crate) use worker::{ForwardHandle, ForwardSettings, ForwardWorker};
