//! The sync workers, started once the table map is resolved: the forward worker and the
//! reverse side (applier and catch-up), each under its own child of the shutdown token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::handle::{AgentHandle, Ready};
use super::startup::Resolved;
use crate::config::Config;
use crate::forward::{CurrentMap, ForwardSettings, ForwardWorker};
use crate::retry::RetryPolicy;
use crate::reverse::{Inbox, ReverseSync};
use crate::sqlserver::SqlStore;
use crate::supabase::SupabaseApi;
use crate::sync_state::SyncState;

/// Longest single wait on a writer's open transaction before the worker claims again.
const WRITER_WAIT: Duration = Duration::from_secs(1);

/// What the workers run against.
pub(crate) struct Sides {
    pub(crate) store: Arc<dyn SqlStore>,
    pub(crate) supabase: Arc<dyn SupabaseApi>,
    pub(crate) inbox: Inbox,
    /// What was last synced of the portal-owned columns, shared by both directions.
    pub(crate) state: SyncState,
}

/// Starts every worker for the resolved map; returns their handles and tasks.
pub(crate) fn start(
    config: &Config,
    sides: Sides,
    resolved: Resolved,
    agent: &AgentHandle,
    shutdown: &CancellationToken,
) -> (Ready, Vec<JoinHandle<()>>) {
    let Resolved { map, schemas } = resolved;
    let retry = RetryPolicy {
        max_attempts: config.max_attempts,
        backoff: config.backoff,
    };
    // Forward first: the reverse side wakes it when it queues a record (README "Who wins").
    let (forward, forward_task) = ForwardWorker {
        store: sides.store.clone(),
        supabase: sides.supabase.clone(),
        map: CurrentMap::new(map.clone()),
        remap: schemas,
        settings: ForwardSettings {
            batch_size: config.batch_size,
            lease: config.claim_lease,
            pipeline_depth: config.pipeline_depth,
            retry,
            writer_wait: WRITER_WAIT,
        },
        counters: agent.forward_counters(),
        outage: Mutex::default(),
        state: sides.state.clone(),
    }
    .spawn(shutdown.child_token());
    let (reverse, reverse_tasks) = ReverseSync {
        store: sides.store,
        supabase: sides.supabase,
        inbox: sides.inbox,
        map,
        drift: agent.drift_log(),
        counters: agent.reverse_counters(),
        retry,
        state: sides.state,
        wake_forward: {
            let forward = forward.clone();
            Arc::new(move || forward.notify())
        },
    }
    .start(shutdown);
    let mut tasks = Vec::from(reverse_tasks);
    tasks.push(forward_task);
    (Ready { forward, reverse }, tasks)
}
