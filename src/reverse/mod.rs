//! Reverse sync (Supabase → SQL Server). A webhook's change, authenticated and decoded by
//! `http::webhook`, goes through [`intake`] (accepted, ignored or refused) into the durable
//! [`inbox`] before it is answered; the [`applier`] writes it into SQL Server by [`plan`]'s
//! rules (ownership, versions). [`catchup`] reads what webhooks missed (agent down, pg_net
//! dropped them) through the same intake into the same inbox. [`handle`] is how the rest of
//! the agent talks to it; [`counters`] what it shows on the status endpoint.

pub mod applier;
pub mod catchup;
pub mod counters;
pub mod event;
pub mod handle;
pub mod inbox;
pub mod intake;
pub mod plan;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use counters::ReverseCounters;
pub use handle::{RecoveryReport, ReverseHandle, WebhookAnswer, WebhookError};
pub use inbox::{Inbox, InboxError, InboxStats};
pub use intake::WebhookPayload;

use crate::mapping::ResolvedMap;
use crate::retry::RetryPolicy;
use crate::sqlserver::SqlStore;
use crate::supabase::SupabaseApi;

/// What the reverse side runs with.
pub struct ReverseSync {
    pub store: Arc<dyn SqlStore>,
    pub supabase: Arc<dyn SupabaseApi>,
    pub inbox: Inbox,
    pub map: Arc<ResolvedMap>,
    pub counters: Arc<ReverseCounters>,
    pub retry: RetryPolicy,
}

impl ReverseSync {
    /// Starts the applier and the catch-up task (whose first run starts at once); both stop at
    /// their next safe point once `cancel` fires.
    pub fn start(self, cancel: &CancellationToken) -> (ReverseHandle, [JoinHandle<()>; 2]) {
        let (applier, applier_task) = applier::Applier {
            store: self.store,
            inbox: self.inbox.clone(),
            map: self.map.clone(),
            counters: self.counters.clone(),
            retry: self.retry,
        }
        .spawn(cancel.child_token());
        let (catchup, catchup_task) = catchup::Catchup {
            supabase: self.supabase,
            map: self.map.clone(),
            inbox: self.inbox.clone(),
            counters: self.counters.clone(),
            applier: applier.clone(),
            backoff: self.retry.backoff,
        }
        .spawn(cancel.child_token());
        let handle = ReverseHandle {
            map: self.map,
            inbox: self.inbox,
            applier,
            catchup,
            counters: self.counters,
        };
        (handle, [applier_task, catchup_task])
    }
}
