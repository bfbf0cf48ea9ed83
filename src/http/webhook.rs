//! `POST /api/sync/webhook`: Supabase Database Webhooks. verify (over the raw body) → decode →
//! map (plan) → store durably in the inbox → 200 → wake the applier. Anything refused gets a
//! 4xx with a reason and writes nothing.

use std::sync::Arc;

use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::auth::{bearer, token_matches};
use super::signature::{verify_signature, SignedHeaders};
use super::{error_reply, json_reply, AppState};
use crate::reverse::apply::{plan, Plan};
use crate::reverse::event::{parse_version, record_key};
use crate::reverse::{EventSource, NewEvent};

/// The Supabase Database Webhook payload. Unknown fields (e.g. `user_id`) are ignored.
#[derive(Debug, Deserialize)]
pub struct WebhookPayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub table: String,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub record: Option<Map<String, Value>>,
    #[serde(default)]
    pub old_record: Option<Map<String, Value>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The shared secret (either header), or a valid Standard Webhooks signature when configured.
fn authenticate(headers: &HeaderMap, body: &[u8], state: &AppState) -> Result<(), &'static str> {
    let presented =
        bearer(header(headers, "authorization")).or_else(|| header(headers, "x-webhook-secret"));
    if let Some(token) = presented {
        return if token_matches(token, &state.webhook_secret) {
            Ok(())
        } else {
            Err("wrong webhook secret")
        };
    }
    let signed = (
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp"),
        header(headers, "webhook-signature"),
    );
    match (&state.signing_key, signed) {
        (Some(key), (Some(id), Some(timestamp), Some(signature))) => {
            let now = chrono::Utc::now().timestamp();
            verify_signature(
                key.expose_secret(),
                SignedHeaders {
                    id,
                    timestamp,
                    signature,
                },
                body,
                now,
            )
            .map_err(|_| "invalid or expired webhook signature")
        }
        _ => Err("missing webhook secret (Authorization: Bearer or X-Webhook-Secret)"),
    }
}

pub async fn receive(headers: HeaderMap, body: Bytes, state: Arc<AppState>) -> Response {
    let reply = handle(&headers, &body, &state).await;
    let status = reply.status();
    if status.is_client_error() {
        state.status.reverse().webhooks_rejected += 1;
    }
    reply
}

async fn handle(headers: &HeaderMap, body: &[u8], state: &AppState) -> Response {
    if let Err(why) = authenticate(headers, body, state) {
        tracing::warn!(reason = why, "webhook refused: not authenticated");
        return error_reply(StatusCode::UNAUTHORIZED, why);
    }
    let json_type = header(headers, "content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        tracing::warn!("webhook refused: not JSON");
        return error_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let payload: WebhookPayload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused: malformed payload");
            return error_reply(
                StatusCode::BAD_REQUEST,
                format!("malformed webhook payload: {e}"),
            );
        }
    };
    tracing::info!(table = %payload.table, kind = %payload.kind, "Received Supabase webhook");
    let Some(ready) = state.ready.get() else {
        let why = state
            .status
            .startup_problem()
            .unwrap_or_else(|| "starting".to_owned());
        return error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the agent is not ready: {why}"),
        );
    };
    let table = match (
        payload.schema.as_deref(),
        ready.map.by_target(&payload.table),
    ) {
        (None | Some("public"), Some(t)) if t.spec.reverse.is_some() => t,
        _ => {
            let reason = format!("table {:?} is not reverse-synced", payload.table);
            tracing::warn!(reason, "webhook refused");
            return error_reply(StatusCode::UNPROCESSABLE_ENTITY, reason);
        }
    };
    let version_column = table
        .spec
        .reverse
        .as_ref()
        .map(|r| r.version_column.clone())
        .unwrap_or_default();
    let carrier = if payload.kind == "DELETE" {
        &payload.old_record
    } else {
        &payload.record
    };
    let key = carrier.as_ref().and_then(|r| record_key(table, r));
    let event = NewEvent {
        source: EventSource::Webhook,
        table: table.target.clone(),
        op: payload.kind.clone(),
        record_key: key.clone().unwrap_or_default(),
        version: carrier
            .as_ref()
            .and_then(|r| r.get(&version_column))
            .and_then(parse_version),
        record: payload.record,
        old_record: payload.old_record,
    };
    match plan(table, &event) {
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused");
            return error_reply(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
        Ok(Plan::Skip(reason)) => {
            tracing::info!(table = %event.table, reason, "webhook needs no write");
            state.status.reverse().webhooks_ignored += 1;
            return json_reply(
                StatusCode::OK,
                json!({ "success": true, "status": "ignored", "reason": reason }),
            );
        }
        Ok(Plan::Write(_)) if key.is_none() => {
            return error_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                "record lacks its key columns",
            );
        }
        Ok(Plan::Write(_)) => {}
    }
    match state.inbox.append(vec![event], None).await {
        Ok(ids) => {
            state.status.reverse().webhooks_accepted += 1;
            ready.applier.wake();
            json_reply(
                StatusCode::OK,
                json!({ "success": true, "status": "accepted", "event_id": ids.first() }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook could not be stored");
            state.status.reverse_error(&e.to_string());
            error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be stored; try again",
            )
        }
    }
}
