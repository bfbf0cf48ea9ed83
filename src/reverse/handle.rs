//! How the rest of the agent talks to the reverse side once it runs: hand it a webhook's change
//! (intake → inbox → wake the applier), or ask it to recover now (revive dead events → catch-up
//! → wake the applier).

use std::sync::Arc;

use serde::Serialize;

use super::applier::ApplierHandle;
use super::catchup::{CatchupError, CatchupHandle, CatchupReport};
use super::counters::{ReverseCounters, WebhookVerdict};
use super::inbox::{Inbox, InboxError};
use super::intake::{self, Intake, Refusal, WebhookPayload};
use crate::mapping::{DriftLog, ResolvedMap};

#[derive(Clone)]
pub(crate) struct ReverseHandle {
    pub(super) map: Arc<ResolvedMap>,
    pub(super) inbox: Inbox,
    pub(super) drift: Arc<DriftLog>,
    pub(super) applier: ApplierHandle,
    pub(super) catchup: CatchupHandle,
    pub(super) counters: Arc<ReverseCounters>,
}

/// What became of a webhook that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WebhookAnswer {
    /// Stored durably; the applier will write it.
    Accepted { event_id: Option<i64> },
    /// Nothing to write, and why.
    Ignored { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the event could not be stored")]
    NotStored(#[source] InboxError),
}

/// What a recovery did: the catch-up's report and how many dead events got another chance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RecoveryReport {
    #[serde(flatten)]
    pub(crate) catchup: CatchupReport,
    pub(crate) dead_events_revived: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecoveryError {
    #[error(transparent)]
    Revive(InboxError),
    #[error(transparent)]
    Catchup(CatchupError),
    #[error("catch-up task stopped")]
    Stopped,
}

impl ReverseHandle {
    /// A webhook's change: refused with a reason, ignored, or stored durably (fsync'd) before
    /// this returns, and the applier woken.
    pub(crate) async fn accept_webhook(
        &self,
        payload: WebhookPayload,
    ) -> Result<WebhookAnswer, WebhookError> {
        let table = payload.table.clone();
        self.drift
            .report(&intake::unknown_columns(&self.map, &payload));
        let event = match intake::webhook(&self.map, payload) {
            Err(refusal) => {
                tracing::warn!(table, reason = %refusal, "webhook refused");
                self.counters.record_webhook(WebhookVerdict::Rejected);
                return Err(refusal.into());
            }
            Ok(Intake::Ignore(reason)) => {
                tracing::info!(table, reason, "webhook needs no write");
                self.counters.record_webhook(WebhookVerdict::Ignored);
                return Ok(WebhookAnswer::Ignored { reason });
            }
            Ok(Intake::Accept(event)) => event,
        };
        match self.inbox.append_webhook(event).await {
            Ok(id) => {
                self.counters.record_webhook(WebhookVerdict::Accepted);
                self.applier.wake();
                Ok(WebhookAnswer::Accepted { event_id: Some(id) })
            }
            Err(e) => {
                tracing::error!(error = %e, "webhook could not be stored");
                self.counters.record_error(&e.to_string());
                Err(WebhookError::NotStored(e))
            }
        }
    }

    /// Wakes the applier (events were revived behind its back, e.g. by `retry-failed`).
    pub(crate) fn wake(&self) {
        self.applier.wake();
    }

    /// Recovers now: every dead event gets another full set of attempts (catch-up cannot bring
    /// them back, its watermark has moved past them), then a catch-up runs, then the applier
    /// is woken.
    pub(crate) async fn recover_now(&self) -> Result<RecoveryReport, RecoveryError> {
        let revived = self
            .inbox
            .revive_dead()
            .await
            .map_err(RecoveryError::Revive)?;
        let catchup = self
            .catchup
            .run_now()
            .await
            .ok_or(RecoveryError::Stopped)?
            .map_err(RecoveryError::Catchup)?;
        self.applier.wake();
        Ok(RecoveryReport {
            catchup,
            dead_events_revived: revived,
        })
    }
}
