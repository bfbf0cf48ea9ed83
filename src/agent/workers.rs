//! The sync workers, started once the table map is resolved: the forward worker and the
//! reverse side (applier and catch-up), each under its own child of the shutdown token.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::handle::{AgentHandle, Ready};
use crate::config::Config;
use crate::forward::{ForwardSettings, ForwardWorker};
use crate::mapping::ResolvedMap;
use crate::retry::RetryPolicy;
use crate::reverse::{Inbox, ReverseSync};
use crate::sqlserver::SqlStore;
use crate::supabase::SupabaseApi;

/// Longest single wait on a writer's open transaction before the worker claims again.
const WRITER_WAIT: Duration = Duration::from_secs(1);

/// What the workers run against.
pub(crate) struct Sides {
    pub(crate) store: Arc<dyn SqlStore>,
    pub(crate) supabase: Arc<dyn SupabaseApi>,
    pub(crate) inbox: Inbox,
}

/// Starts every worker for `map`; returns their handles and tasks.
pub(crate) fn start(
    config: &Config,
    sides: Sides,
    map: Arc<ResolvedMap>,
    agent: &AgentHandle,
    shutdown: &CancellationToken,
) -> (Ready, Vec<JoinHandle<()>>) {
    let retry = RetryPolicy {
        max_attempts: config.max_attempts,
        backoff: config.backoff,
    };
    let (reverse, reverse_tasks) = ReverseSync {
        store: sides.store.clone(),
        supabase: sides.supabase.clone(),
        inbox: sides.inbox,
        map: map.clone(),
        counters: agent.reverse_counters(),
        retry,
    }
    .start(shutdown);
    let (forward, forward_task) = ForwardWorker {
        store: sides.store,
        supabase: sides.supabase,
        map,
        settings: ForwardSettings {
            batch_size: config.batch_size,
            lease: config.claim_lease,
            retry,
            writer_wait: WRITER_WAIT,
        },
        counters: agent.forward_counters(),
    }
    .spawn(shutdown.child_token());
    let mut tasks = Vec::from(reverse_tasks);
    tasks.push(forward_task);
    (Ready { forward, reverse }, tasks)
}
