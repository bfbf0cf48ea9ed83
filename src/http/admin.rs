//! The admin endpoints: `queue-notify` (from `sp_NotifyAppOfSync`), `trigger` (manual drains
//! and recovery), `status`, `retry-failed` and `GET /metrics` (Prometheus). All but the `GET` probe require `Authorization: Bearer
//! <SYNC_ADMIN_TOKEN>` (`queue-notify` also takes `SYNC_NOTIFY_TOKEN`): the tunnel makes this
//! port reachable from the internet. Each handler authenticates, decodes, calls the agent
//! once, and maps its answer to a status; the token is checked by the route's filter
//! (`super::token`) before any body is read.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{error_reply, json_reply, AppState, Refused};
use crate::agent::handle::{Direction, UnknownDirection};
use crate::agent::retry_failed::RetryScope;

/// `GET /api/sync/queue-notify`: answers that the agent is up (the old troubleshooting step).
pub(crate) fn notify_probe() -> Response {
    json_reply(
        StatusCode::OK,
        json!({ "success": true, "message": "syncbridge is running; SQL Server notifies with POST" }),
    )
}

/// `POST /api/sync/queue-notify`: wakes the forward worker and answers at once.
pub(crate) fn queue_notify(state: Arc<AppState>) -> Response {
    state.agent.notify();
    json_reply(
        StatusCode::ACCEPTED,
        json!({ "success": true, "message": "Queue processing triggered" }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default = "default_direction")]
    direction: String,
}

fn default_direction() -> String {
    "sql-to-postgres".to_owned()
}

/// The trigger's direction: an empty body means `sql-to-postgres`.
fn direction(body: &[u8]) -> Result<Direction, Refused> {
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody {
            direction: default_direction(),
        }
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Refused::new(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"direction\": ...}}: {e}"),
            )
        })?
    };
    body.direction
        .parse()
        .map_err(|e: UnknownDirection| Refused::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// `POST /api/sync/trigger`: drains the queue now and/or recovers the reverse side, answering
/// what was done.
pub(crate) async fn trigger(body: Bytes, state: Arc<AppState>) -> Response {
    let direction = match direction(&body) {
        Ok(d) => d,
        Err(refused) => return refused.reply(),
    };
    match state.agent.trigger(direction).await {
        Ok(report) => json_reply(StatusCode::OK, json!({ "success": true, "result": report })),
        Err(not_ready) => error_reply(StatusCode::SERVICE_UNAVAILABLE, not_ready.to_string()),
    }
}

/// `GET /api/sync/status`: queue counts, inbox depth, last successes and errors, faults.
pub(crate) async fn status(state: Arc<AppState>) -> Response {
    json_reply(StatusCode::OK, state.agent.status_report().await)
}

/// `POST /api/sync/retry-failed` (`syncbridge retry-failed`): Failed queue items and dead inbox
/// events back to work, the workers woken; an empty body means everything.
pub(crate) async fn retry_failed(body: Bytes, state: Arc<AppState>) -> Response {
    let scope = if body.iter().all(u8::is_ascii_whitespace) {
        RetryScope::everything()
    } else {
        match serde_json::from_slice(&body) {
            Ok(scope) => scope,
            Err(e) => {
                let reason = format!("body must be {{\"queue\": ..., \"inbox\": ...}}: {e}");
                return error_reply(StatusCode::BAD_REQUEST, reason);
            }
        }
    };
    let report = state.agent.retry_failed(&scope).await;
    json_reply(StatusCode::OK, json!({ "success": true, "result": report }))
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
pub(crate) async fn metrics(state: Arc<AppState>) -> Response {
    match state.agent.metrics().await {
        Ok(text) => warp::http::Response::builder()
            .header(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(text.into())
            .unwrap_or_else(|_| error_reply(StatusCode::INTERNAL_SERVER_ERROR, "metrics")),
        Err(_) => error_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        ),
    }
}
