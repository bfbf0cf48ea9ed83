//! The admin endpoints: `queue-notify` (from `sp_NotifyAppOfSync`), `trigger` (manual drains
//! and catch-up) and `status`. All but the `GET` probe require `Authorization: Bearer
//! <SYNC_ADMIN_TOKEN>` (`queue-notify` also takes `SYNC_NOTIFY_TOKEN`): the tunnel makes this
//! port reachable from the internet.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

use super::auth::{bearer, token_matches};
use super::{error_reply, json_reply, AppState, Ready};

fn authorized(header: Option<&str>, state: &AppState) -> bool {
    bearer(header).is_some_and(|t| token_matches(t, &state.admin_token))
}

fn unauthorized(endpoint: &str) -> Response {
    tracing::warn!(endpoint, "admin request without a valid token refused");
    error_reply(
        StatusCode::UNAUTHORIZED,
        "missing or wrong admin token (Authorization: Bearer <SYNC_ADMIN_TOKEN>)",
    )
}

fn not_ready(state: &AppState) -> Response {
    let why = state
        .status
        .startup_problem()
        .unwrap_or_else(|| "starting".to_owned());
    error_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the agent is not ready: {why}"),
    )
}

/// `GET /api/sync/queue-notify`: answers that the agent is up (the old troubleshooting step).
pub fn notify_probe() -> Response {
    json_reply(
        StatusCode::OK,
        json!({ "success": true, "message": "syncbridge is running; SQL Server notifies with POST" }),
    )
}

/// `POST /api/sync/queue-notify`: wakes the forward worker and answers at once.
pub async fn queue_notify(auth: Option<String>, state: Arc<AppState>) -> Response {
    let notify_token = bearer(auth.as_deref())
        .zip(state.notify_token.as_ref())
        .is_some_and(|(t, secret)| token_matches(t, secret));
    if !notify_token && !authorized(auth.as_deref(), &state) {
        return unauthorized("queue-notify");
    }
    state.status.forward().notifications += 1;
    tracing::info!("Received queue notification from SQL Server");
    if let Some(ready) = state.ready.get() {
        ready.forward.notify();
    }
    // Before the map is resolved the start-up drain will pick the items up anyway.
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

/// `POST /api/sync/trigger`: drains the queue now and/or runs a catch-up, answering what was done.
pub async fn trigger(auth: Option<String>, body: Bytes, state: Arc<AppState>) -> Response {
    if !authorized(auth.as_deref(), &state) {
        return unauthorized("trigger");
    }
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody {
            direction: default_direction(),
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error_reply(
                    StatusCode::BAD_REQUEST,
                    format!("body must be {{\"direction\": ...}}: {e}"),
                )
            }
        }
    };
    let (forward, reverse) = match body.direction.as_str() {
        "sql-to-postgres" => (true, false),
        "postgres-to-sql" => (false, true),
        "both" => (true, true),
        other => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown direction {other:?}: use sql-to-postgres, postgres-to-sql or both"
                ),
            )
        }
    };
    let Some(ready) = state.ready.get() else {
        return not_ready(&state);
    };
    tracing::info!(direction = %body.direction, "manual sync trigger");
    let mut result = serde_json::Map::new();
    if forward {
        result.insert(
            "sql_to_postgres".into(),
            json!(ready.forward.drain_now().await),
        );
    }
    if reverse {
        result.insert("postgres_to_sql".into(), catchup_now(&state, ready).await);
    }
    json_reply(StatusCode::OK, json!({ "success": true, "result": result }))
}

async fn catchup_now(state: &AppState, ready: &Ready) -> serde_json::Value {
    let revived = match state.inbox.revive_dead().await {
        Ok(n) => n,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    match ready.catchup.run_now().await {
        Some(Ok(report)) => {
            ready.applier.wake();
            let mut report = json!(report);
            report["dead_events_revived"] = json!(revived);
            report
        }
        Some(Err(e)) => json!({ "error": e }),
        None => json!({ "error": "catch-up task stopped" }),
    }
}

/// `GET /api/sync/status`: queue counts, inbox depth, last successes and errors, faults.
pub async fn status(auth: Option<String>, state: Arc<AppState>) -> Response {
    if !authorized(auth.as_deref(), &state) {
        return unauthorized("status");
    }
    let queue = match state.store.queue_stats().await {
        Ok(q) => json!(q),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let inbox = match state.inbox.stats().await {
        Ok(s) => json!(s),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let watermarks = state.inbox.watermarks().await.unwrap_or_default();
    let dead = state.inbox.dead_events(20).await.unwrap_or_default();
    let forward = state.status.forward().clone();
    let reverse = state.status.reverse().clone();
    json_reply(
        StatusCode::OK,
        json!({
            "agent": {
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": state.started_at,
                "uptime_secs": (Utc::now() - state.started_at).num_seconds(),
                "ready": state.ready.get().is_some(),
                "startup_problem": state.status.startup_problem(),
            },
            "forward": { "queue": queue, "state": forward, "config_fault": forward.config_fault },
            "reverse": {
                "inbox": inbox,
                "state": reverse,
                "catchup_watermarks": watermarks.into_iter().map(|(t, w)| (t, json!(w))).collect::<serde_json::Map<_, _>>(),
                "dead_events": dead.into_iter().map(|(id, table, key, error)| json!({"id": id, "table": table, "key": key, "error": error})).collect::<Vec<_>>(),
            },
        }),
    )
}
