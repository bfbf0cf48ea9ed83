//! `POST /api/sync/webhook`: Supabase Database Webhooks. Authenticate (over the raw body) →
//! decode → hand to the agent (intake → inbox → applier) → map the answer to a status. Anything
//! refused gets a 4xx with a reason and writes nothing.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::auth::header;
use super::{error_reply, json_reply, AppState, Refused};
use crate::agent::handle::AgentWebhookError;
use crate::reverse::{WebhookAnswer, WebhookError, WebhookPayload};

pub(crate) async fn receive(headers: HeaderMap, body: Bytes, state: Arc<AppState>) -> Response {
    let payload = match decode(&headers, &body, &state) {
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

/// The authenticated, decoded payload, or the reply refusing it.
fn decode(headers: &HeaderMap, body: &[u8], state: &AppState) -> Result<WebhookPayload, Refused> {
    if let Err(why) = state.tokens.authenticate_webhook(headers, body) {
        tracing::warn!(reason = why, "webhook refused: not authenticated");
        return Err(Refused::new(StatusCode::UNAUTHORIZED, why));
    }
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
