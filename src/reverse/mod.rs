//! Reverse sync (Supabase → SQL Server). A webhook's change, authenticated and decoded by
//! `http::webhook`, goes through [`intake`] (accepted, ignored or refused) into the durable
//! [`inbox`] before it is answered; the [`applier`] writes it into SQL Server by [`plan`]'s
//! rules (ownership, versions), and queues forward a record whose clinic-owned columns the
//! portal changed (`restore`). [`catchup`] reads what webhooks missed (agent down, pg_net
//! dropped them) through the same intake into the same inbox. [`handle`] is how the rest of
//! the agent talks to it; [`counters`] what it shows on the status endpoint.

pub(crate) mod applier;
pub(crate) mod catchup;
pub(crate) mod counters;
pub(crate) mod event;
pub(crate) mod handle;
pub(crate) mod inbox;
pub(crate) mod intake;
pub(crate) mod plan;
mod restore;
pub(crate) mod versions;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use counters::ReverseCounters;
pub(crate) use handle::{RecoveryReport, ReverseHandle, WebhookAnswer, WebhookError};
pub(crate) use inbox::Inbox;
pub(crate) use intake::WebhookPayload;

use crate::mapping::{DriftLog, ResolvedMap};
use crate::retry::RetryPolicy;
use crate::sqlserver::SqlStore;
use crate::supabase::SupabaseApi;
use crate::sync_state::SyncState;

/// Wakes the forward worker (the applier queued a record to restore clinic-owned values). A
/// function rather than the worker's handle, so this side does not depend on that one.
pub(crate) type WakeForward = Arc<dyn Fn() + Send + Sync>;

/// What the reverse side runs with.
pub(crate) struct ReverseSync {
    pub(crate) store: Arc<dyn SqlStore>,
    pub(crate) supabase: Arc<dyn SupabaseApi>,
    pub(crate) inbox: Inbox,
    pub(crate) map: Arc<ResolvedMap>,
    /// Where columns the map does not know are reported (shared with the forward side).
    pub(crate) drift: Arc<DriftLog>,
    pub(crate) counters: Arc<ReverseCounters>,
    pub(crate) retry: RetryPolicy,
    /// What was last synced of the portal-owned columns (shared with the forward side).
    pub(crate) state: SyncState,
    pub(crate) wake_forward: WakeForward,
}

impl ReverseSync {
    /// Starts the applier and the catch-up task (whose first run starts at once); both stop at
    /// their next safe point once `cancel` fires.
    pub(crate) fn start(self, cancel: &CancellationToken) -> (ReverseHandle, [JoinHandle<()>; 2]) {
        let (applier, applier_task) = applier::Applier {
            store: self.store,
            inbox: self.inbox.clone(),
            map: self.map.clone(),
            counters: self.counters.clone(),
            retry: self.retry,
            state: self.state,
            wake_forward: self.wake_forward,
        }
        .spawn(cancel.child_token());
        let (catchup, catchup_task) = catchup::Catchup {
            supabase: self.supabase,
            map: self.map.clone(),
            inbox: self.inbox.clone(),
            drift: self.drift.clone(),
            counters: self.counters.clone(),
            applier: applier.clone(),
            backoff: self.retry.backoff,
        }
        .spawn(cancel.child_token());
        let handle = ReverseHandle {
            map: self.map,
            inbox: self.inbox,
            drift: self.drift,
            applier,
            catchup,
            counters: self.counters,
        };
        (handle, [applier_task, catchup_task])
    }
}
