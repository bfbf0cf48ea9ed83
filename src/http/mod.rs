//! The HTTP surface (warp). Filters here decide routing, methods, size limits and shared state;
//! handlers in [`admin`] and [`webhook`] are plain async functions that authenticate
//! ([`auth`]), decode, call the agent once and map its answer to a status. One `recover` turns
//! warp's own rejections into JSON 4xx answers; nothing internal leaks into a reply.
//!
//! The listener is reachable from the internet through the Cloudflare Tunnel, so every route
//! but `GET /health` and `GET /api/sync/queue-notify` requires a secret: the webhook secret for
//! `/api/sync/webhook`, the admin token for everything else (`GET /metrics` included).

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod signature;
pub(crate) mod webhook;

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use self::auth::Tokens;
use crate::agent::AgentHandle;

/// What the handlers share: the secrets requests are checked against, the body limit, and the
/// agent they call.
pub(crate) struct AppState {
    pub(crate) tokens: Tokens,
    pub(crate) max_body_bytes: u64,
    pub(crate) agent: AgentHandle,
}

/// A request refused before the agent was called: its status and reason.
pub(crate) struct Refused(pub(crate) StatusCode, pub(crate) String);

impl Refused {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self(status, reason.into())
    }

    pub(crate) fn reply(self) -> Response {
        error_reply(self.0, self.1)
    }
}

/// A JSON reply with a status code.
pub(crate) fn json_reply(status: StatusCode, body: serde_json::Value) -> Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// A 4xx/5xx with a short reason, in one shape everywhere.
pub(crate) fn error_reply(status: StatusCode, reason: impl Into<String>) -> Response {
    json_reply(
        status,
        json!({ "error": status.canonical_reason().unwrap_or("error"), "reason": reason.into() }),
    )
}

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Every route of the agent.
pub(crate) fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let max_body = state.max_body_bytes;
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, json!({ "status": "ok" })));
    let notify_probe = warp::path!("api" / "sync" / "queue-notify")
        .and(warp::get())
        .map(admin::notify_probe);
    // The notification's body is never read, so it needs no length (curl -X POST sends none).
    let notify = warp::path!("api" / "sync" / "queue-notify")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state.clone()))
        .then(admin::queue_notify);
    let trigger = warp::path!("api" / "sync" / "trigger")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(small_body(4096))
        .and(with_state(state.clone()))
        .then(admin::trigger);
    let status = warp::path!("api" / "sync" / "status")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state.clone()))
        .then(admin::status);
    let retry = warp::path!("api" / "sync" / "retry-failed")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(small_body(4096))
        .and(with_state(state.clone()))
        .then(admin::retry_failed);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state.clone()))
        .then(admin::metrics);
    let hook = warp::path!("api" / "sync" / "webhook")
        .and(warp::post())
        .and(warp::body::content_length_limit(max_body))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and(with_state(state))
        .then(webhook::receive);
    health
        .or(notify_probe)
        .unify()
        .or(notify)
        .unify()
        .or(trigger)
        .unify()
        .or(status)
        .unify()
        .or(retry)
        .unify()
        .or(metrics)
        .unify()
        .or(hook)
        .unify()
        .recover(recover)
        .unify()
        .with(warp::trace::request())
}

/// A body of at most `limit` bytes. A request without `Content-Length` (no body, or a chunked
/// one) counts as empty and its body is never read, so `curl -X POST` works and nothing
/// unbounded is buffered before the token is checked.
fn small_body(limit: u64) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    let sized = warp::header::<u64>("content-length")
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .map(|_: u64, body: bytes::Bytes| body);
    let no_length = warp::header::optional::<u64>("content-length").and_then(
        |length: Option<u64>| async move {
            match length {
                None => Ok(bytes::Bytes::new()),
                // Not this branch's request; the sized branch's rejection is the one reported.
                Some(_) => Err(warp::reject::not_found()),
            }
        },
    );
    sized.or(no_length).unify()
}

/// warp's rejections (no route, wrong method, body too large, ...) as JSON.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let (status, reason) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such endpoint".to_owned())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is too large".to_owned(),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required".to_owned(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this endpoint".to_owned(),
        )
    } else if rejection.find::<warp::reject::MissingHeader>().is_some()
        || rejection.find::<warp::reject::InvalidHeader>().is_some()
    {
        (
            StatusCode::BAD_REQUEST,
            "a required header is missing or invalid".to_owned(),
        )
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        (StatusCode::BAD_REQUEST, "bad request".to_owned())
    };
    tracing::info!(status = status.as_u16(), reason, "request rejected");
    Ok(error_reply(status, reason))
}
