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
pub(crate) mod refusals;
pub(crate) mod serve;
pub(crate) mod signature;
pub(crate) mod webhook;

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::Semaphore;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use self::auth::{Tokens, WebhookAuth};
use self::refusals::{Refusal, RefusalLog};
use crate::agent::AgentHandle;

/// Signed webhook bodies read at once before their signature is checked: a signature can only
/// be checked over the body, so this bounds what strangers sending signature headers can make
/// the agent buffer (this many times `SYNC_MAX_BODY_BYTES`).
const SIGNED_READS: usize = 8;

/// What the handlers share: the secrets requests are checked against, the body limit, the
/// refusal log, and the agent they call.
pub(crate) struct AppState {
    pub(crate) tokens: Tokens,
    pub(crate) max_body_bytes: u64,
    pub(crate) refusals: Arc<RefusalLog>,
    pub(crate) signed_reads: Arc<Semaphore>,
    pub(crate) agent: AgentHandle,
}

impl AppState {
    pub(crate) fn new(tokens: Tokens, max_body_bytes: u64, agent: AgentHandle) -> Self {
        Self {
            tokens,
            max_body_bytes,
            refusals: Arc::default(),
            signed_reads: Arc::new(Semaphore::new(SIGNED_READS)),
            agent,
        }
    }
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

/// The one answer to every failed authentication, whatever was wrong and whichever methods are
/// configured: telling them apart would tell a stranger what to try.
pub(crate) fn unauthenticated_reply() -> Response {
    error_reply(StatusCode::UNAUTHORIZED, "not authenticated")
}

/// Refused on the headers alone: not authenticated, or too many signed bodies in flight.
#[derive(Debug)]
struct HeaderRefusal(Refusal);

impl warp::reject::Reject for HeaderRefusal {}

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Passes only requests whose `Authorization` satisfies `allowed`, on the headers alone.
fn token(
    state: Arc<AppState>,
    allowed: fn(&Tokens, Option<&str>) -> bool,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(with_state(state))
        .and_then(
            move |auth: Option<String>, state: Arc<AppState>| async move {
                if allowed(&state.tokens, auth.as_deref()) {
                    Ok(())
                } else {
                    state.refusals.record(Refusal::AdminUnauthenticated);
                    Err(warp::reject::custom(HeaderRefusal(
                        Refusal::AdminUnauthenticated,
                    )))
                }
            },
        )
        .untuple_one()
}

/// A webhook's authentication from its headers, before its body is read; a signed one also
/// holds one of [`SIGNED_READS`] permits while its body is read and checked.
fn webhook_auth(
    state: Arc<AppState>,
) -> impl Filter<Extract = (WebhookAuth, Option<tokio::sync::OwnedSemaphorePermit>), Error = Rejection>
       + Clone {
    warp::header::headers_cloned()
        .and(with_state(state))
        .and_then(
            |headers: warp::http::HeaderMap, state: Arc<AppState>| async move {
                let refuse = |why: Refusal| {
                    state.agent.webhook_refused();
                    state.refusals.record(why);
                    Err(warp::reject::custom(HeaderRefusal(why)))
                };
                match state.tokens.webhook_headers(&headers) {
                    Ok(WebhookAuth::Secret) => Ok((WebhookAuth::Secret, None)),
                    Ok(WebhookAuth::NeedsSignature) => {
                        match state.signed_reads.clone().try_acquire_owned() {
                            Ok(permit) => Ok((WebhookAuth::NeedsSignature, Some(permit))),
                            Err(_) => refuse(Refusal::SignatureBusy),
                        }
                    }
                    Err(_) => refuse(Refusal::WebhookUnauthenticated),
                }
            },
        )
        .untuple_one()
}

/// Every route of the agent. Each checks its secret on the headers before any body is read,
/// and a declared `Content-Length` over the limit before reading either.
pub(crate) fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let max_body = state.max_body_bytes;
    let admin = |state: &Arc<AppState>| token(state.clone(), Tokens::is_admin);
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, json!({ "status": "ok" })));
    let notify_probe = warp::path!("api" / "sync" / "queue-notify")
        .and(warp::get())
        .map(admin::notify_probe);
    // The notification's body is never read, so it needs no length (curl -X POST sends none).
    let notify = warp::path!("api" / "sync" / "queue-notify")
        .and(warp::post())
        .and(token(state.clone(), Tokens::may_notify))
        .and(with_state(state.clone()))
        .map(admin::queue_notify);
    let trigger = warp::path!("api" / "sync" / "trigger")
        .and(warp::post())
        .and(admin(&state))
        .and(small_body(4096))
        .and(with_state(state.clone()))
        .then(admin::trigger);
    let status = warp::path!("api" / "sync" / "status")
        .and(warp::get())
        .and(admin(&state))
        .and(with_state(state.clone()))
        .then(admin::status);
    let retry = warp::path!("api" / "sync" / "retry-failed")
        .and(warp::post())
        .and(admin(&state))
        .and(small_body(4096))
        .and(with_state(state.clone()))
        .then(admin::retry_failed);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(admin(&state))
        .and(with_state(state.clone()))
        .then(admin::metrics);
    let hook = warp::path!("api" / "sync" / "webhook")
        .and(warp::post())
        .and(webhook_auth(state.clone()))
        .and(warp::body::content_length_limit(max_body))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and(with_state(state.clone()))
        .then(webhook::receive);
    let log = state.refusals.clone();
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
        .recover(move |rejection| recover(rejection, log.clone()))
        .unify()
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

/// warp's rejections (no route, wrong method, body too large, ...) as JSON; each kind's log
/// line rate-limited, since strangers can trigger all of them.
async fn recover(rejection: Rejection, log: Arc<RefusalLog>) -> Result<Response, Infallible> {
    // Logged (and counted) where it was refused.
    if let Some(HeaderRefusal(why)) = rejection.find::<HeaderRefusal>() {
        return Ok(match why {
            Refusal::SignatureBusy => error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests at once; try again",
            ),
            _ => unauthenticated_reply(),
        });
    }
    let (status, reason, refusal) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such endpoint",
            Refusal::NoSuchEndpoint,
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is too large",
            Refusal::BodyTooLarge,
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required",
            Refusal::LengthRequired,
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this endpoint",
            Refusal::MethodNotAllowed,
        )
    } else if rejection.find::<warp::reject::MissingHeader>().is_some()
        || rejection.find::<warp::reject::InvalidHeader>().is_some()
    {
        (
            StatusCode::BAD_REQUEST,
            "a required header is missing or invalid",
            Refusal::BadRequest,
        )
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        (StatusCode::BAD_REQUEST, "bad request", Refusal::BadRequest)
    };
    log.record(refusal);
    Ok(error_reply(status, reason))
}
