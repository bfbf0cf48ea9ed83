//! Forward sync (SQL Server → Supabase): the [`worker`] owns when to drain (notifications,
//! retry timers, the shared backoff of an outage: `outage`, shutdown); [`batch`] owns what one
//! claimed batch becomes (load → map → send → settlements), `send` how its rows reach Supabase
//! (order, bisection), and `remap` what happens when Supabase's schema changes underneath.

pub(crate) mod batch;
pub(crate) mod counters;
#[cfg(test)]
mod fixture;
mod outage;
mod pipeline;
mod push;
pub(crate) mod remap;
mod send;
pub(crate) mod worker;

pub(crate) use counters::{DrainReport, ForwardCounters};
pub(crate) use remap::{CurrentMap, Remap};
pub(crate) use worker::{ForwardHandle, ForwardSettings, ForwardWorker};
