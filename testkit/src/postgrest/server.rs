//! The stand-in's TCP and HTTP side: accepts connections, serves HTTP/1.1 on each with hyper,
//! applies the per-request faults and logs each request. An accept loop of its own (rather
//! than a framework's `serve`) leaves room for faults below HTTP.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::controls::{Fault, LoggedRequest};
use super::handler::{self, ApiRequest};
use super::reply::Reply;
use super::ServerState;

/// Bulk upserts can be large; PostgREST itself sets no limit.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The accept loop; it stops when this is dropped.
pub(crate) struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(addr: SocketAddr, state: Arc<ServerState>) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, state));
        Ok(Server { addr, task })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ServerState>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&state)));
            }
            Err(err) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::debug!(%err, "PostgREST stand-in accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<ServerState>) {
    let service = service_fn(move |request| serve(Arc::clone(&state), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(err) = connection.await {
        tracing::debug!(%err, "PostgREST stand-in connection ended");
    }
}

async fn serve(
    state: Arc<ServerState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if path != "/rest/v1" && !path.starts_with("/rest/v1/") {
        // What Supabase's gateway says for paths it has no route for.
        let body = json!({"message": "no Route matched with those values"}).to_string();
        return Ok(Reply::json(404, body).into_response());
    }
    let Ok(body) = Limited::new(body, MAX_BODY_BYTES).collect().await else {
        let body = json!({"message": "Request body too large or unreadable"}).to_string();
        return Ok(Reply::json(413, body).into_response());
    };
    let request = ApiRequest {
        method: parts.method,
        path,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body: body.to_bytes(),
    };
    // Answer on a task of its own: hyper drops this future when the client disconnects, and a
    // slow PostgREST still finishes (and logs) a request whose client has given up.
    match tokio::spawn(answer(state, request)).await {
        Ok(reply) => Ok(reply.into_response()),
        Err(err) => {
            tracing::error!(%err, "PostgREST stand-in handler failed");
            let body = json!({"message": "PostgREST stand-in handler failed"}).to_string();
            Ok(Reply::json(500, body).into_response())
        }
    }
}

async fn answer(state: Arc<ServerState>, request: ApiRequest) -> Reply {
    let mut logged = log_entry(&request);
    let reply = match state.controls.take_fault() {
        Some(Fault::Down) => {
            let body = json!({"message": "upstream unavailable"}).to_string();
            with_retry_after(&state, Reply::json(503, body))
        }
        Some(Fault::Answer { status, body }) => {
            with_retry_after(&state, Reply::json(status, body.to_string()))
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            handler::respond(&state, &request).await
        }
        None => handler::respond(&state, &request).await,
    };
    logged.status = reply.status;
    tracing::debug!(method = %logged.method, path = %logged.path, status = logged.status, "PostgREST stand-in answered");
    state.controls.record(logged);
    reply
}

fn with_retry_after(state: &ServerState, reply: Reply) -> Reply {
    match state.controls.retry_after() {
        Some(seconds) if matches!(reply.status, 429 | 503) => {
            reply.header(RETRY_AFTER, HeaderValue::from(seconds))
        }
        _ => reply,
    }
}

fn log_entry(request: &ApiRequest) -> LoggedRequest {
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    let body_rows = match &body {
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(_)) => 1,
        _ => 0,
    };
    let prefer: Vec<&str> = request
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    LoggedRequest {
        method: request.method.to_string(),
        path: request.path.clone(),
        query: request.query.clone(),
        prefer: (!prefer.is_empty()).then(|| prefer.join(", ")),
        status: 0,
        body_rows,
        body,
    }
}
