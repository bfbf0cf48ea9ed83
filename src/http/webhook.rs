//! `POST /api/sync/webhook`: Supabase Database Webhooks. Authenticated on the headers (the
//! shared secret) before the body is read, or over the raw body (a signature) → decode → hand to the agent (intake → inbox → applier) → map the answer to a status. Anything
//! refused gets a 4xx with a reason and writes nothing.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use tokio::sync::OwnedSemaphorePermit;

use super::auth::{header, WebhookAuth};
use super::refusals::Refusal;
use super::{error_reply, json_reply, unauthenticated_reply, AppState, Refused};
use crate::agent::handle::AgentWebhookError;
use crate::reverse::{WebhookAnswer, WebhookError, WebhookPayload};

/// Handles a webhook whose headers passed [`super::webhook_auth`]; a signed one holds its
/// permit until its signature has been checked.
pub(crate) async fn receive(
    auth: WebhookAuth,
    permit: Option<OwnedSemaphorePermit>,
    headers: HeaderMap,
    body: Bytes,
    state: Arc<AppState>,
) -> Response {
    if auth == WebhookAuth::NeedsSignature {
        let verified = state.tokens.verify_signature(&headers, &body);
        drop(permit);
        if verified.is_err() {
            state.agent.webhook_refused();
            state.refusals.record(Refusal::WebhookUnauthenticated);
            return unauthenticated_reply();
        }
    }
    let payload = match decode(&headers, &body) {
        Ok(payload) => payload,
        Err(refused) => {
            state.agent.webhook_refused();
            return refused.reply();
        }
    };
    tracing::info!(table = %payload.table, kind = %payload.kind, "Received Supabase webhook");
    match state.agent.accept_webhook(payload).await {
        Ok(WebhookAnswer::Accepted { event_id }) => json_reply(
            StatusCode::OK,
            json!({ "success": true, "status": "accepted", "event_id": event_id }),
        ),
        Ok(WebhookAnswer::Ignored { reason }) => json_reply(
            StatusCode::OK,
            json!({ "success": true, "status": "ignored", "reason": reason }),
        ),
        Err(AgentWebhookError::NotReady(e)) => {
            error_reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(AgentWebhookError::Reverse(WebhookError::Refused(refusal))) => {
            error_reply(StatusCode::UNPROCESSABLE_ENTITY, refusal.to_string())
        }
        Err(AgentWebhookError::Reverse(WebhookError::NotStored(_))) => error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event could not be stored; try again",
        ),
    }
}

/// The decoded payload of an authenticated webhook, or the reply refusing it.
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<WebhookPayload, Refused> {
    let json_type = header(headers, "content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        tracing::warn!("webhook refused: not JSON");
        return Err(Refused::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused: malformed payload");
        Refused::new(
            StatusCode::BAD_REQUEST,
            format!("malformed webhook payload: {e}"),
        )
    })
}
