//! The stand-in's TCP and HTTP side: binds and accepts, serves HTTP/1.1 on each connection with
//! hyper, applies the added latency and the per-request faults, logs each request, and carries
//! out the faults below HTTP: refusing connections while unreachable (the port is closed, then
//! listened on again) and resetting a connection (RST) instead of answering.

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
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::controls::{Fault, Logged, ResetPoint};
use super::handler::{self, ApiRequest};
use super::reply::Reply;
use super::ServerState;

/// Bulk upserts can be large; PostgREST itself sets no limit.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The accept loop; it stops, and every connection is reset, when this is dropped.
pub(crate) struct Server {
    pub addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

/// `set_unreachable`, acknowledged once the listener is closed or open again.
struct Command {
    unreachable: bool,
    done: oneshot::Sender<io::Result<()>>,
}

impl Server {
    pub fn start(addr: SocketAddr, state: Arc<ServerState>) -> io::Result<Server> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let (commands, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(accept_loop(listener, addr, state, received));
        Ok(Server {
            addr,
            commands,
            task,
        })
    }

    pub async fn set_unreachable(&self, unreachable: bool) -> io::Result<()> {
        let (done, acknowledged) = oneshot::channel();
        let stopped = || io::Error::other("the PostgREST stand-in has stopped");
        self.commands
            .send(Command { unreachable, done })
            .map_err(|_| stopped())?;
        acknowledged.await.map_err(|_| stopped())?
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// SO_REUSEADDR lets `set_unreachable(false)` listen on the same port again at once.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<ServerState>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut listener = Some(listener);
    // Bumped to reset every open connection; dropped (same effect) when the loop ends.
    let (cut, _) = watch::channel(0_u64);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(Command { unreachable, done }) = command else { return };
                let result = if unreachable {
                    // Closing the listener makes new connections fail with "connection
                    // refused"; open ones are reset, as a lost route would break them.
                    listener = None;
                    cut.send_modify(|generation| *generation += 1);
                    Ok(())
                } else if listener.is_none() {
                    bind(addr).map(|reopened| listener = Some(reopened))
                } else {
                    Ok(())
                };
                let _ = done.send(result);
            }
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(stream) => {
                    tokio::spawn(serve_connection(stream, Arc::clone(&state), cut.subscribe()));
                }
                Err(err) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::debug!(%err, "PostgREST stand-in accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<ServerState>,
    mut cut: watch::Receiver<u64>,
) {
    // A second descriptor of the same socket outlives hyper's, so that a reset can set
    // SO_LINGER to zero on it after hyper let go: closing the last descriptor then sends RST.
    let Ok((stream, twin)) = with_twin(stream) else {
        return;
    };
    let (reset, mut reset_requested) = mpsc::channel::<()>(1);
    let service = service_fn(move |request| serve(Arc::clone(&state), request, reset.clone()));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let reset = tokio::select! {
        result = connection => {
            if let Err(err) = result {
                tracing::debug!(%err, "PostgREST stand-in connection ended");
            }
            false
        }
        Some(()) = reset_requested.recv() => true,
        _ = cut.changed() => true,
    };
    if reset {
        if let Err(err) = socket2::SockRef::from(&twin).set_linger(Some(Duration::ZERO)) {
            tracing::debug!(%err, "cannot reset a PostgREST stand-in connection");
        }
    }
    drop(twin);
}

fn with_twin(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let stream = stream.into_std()?;
    let twin = stream.try_clone()?;
    Ok((TcpStream::from_std(stream)?, twin))
}

async fn serve(
    state: Arc<ServerState>,
    request: Request<Incoming>,
    reset: mpsc::Sender<()>,
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
        Ok(Some(reply)) => Ok(reply.into_response()),
        Ok(None) => {
            let _ = reset.send(()).await;
            // The connection task drops this future while resetting the connection.
            std::future::pending().await
        }
        Err(err) => {
            tracing::error!(%err, "PostgREST stand-in handler failed");
            let body = json!({"message": "PostgREST stand-in handler failed"}).to_string();
            Ok(Reply::json(500, body).into_response())
        }
    }
}

/// The request's answer, or `None` when its connection is to be reset instead.
async fn answer(state: Arc<ServerState>, request: ApiRequest) -> Option<Reply> {
    state.controls.arrive();
    let latency = state.controls.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut logged = log_entry(&request);
    let reply = match state.controls.take_fault() {
        Some(Fault::Down) => {
            let body = json!({"message": "upstream unavailable"}).to_string();
            Some(with_retry_after(&state, Reply::json(503, body)))
        }
        Some(Fault::Answer { status, body }) => Some(with_retry_after(
            &state,
            Reply::json(status, body.to_string()),
        )),
        Some(Fault::Reset(ResetPoint::BeforeHandling)) => None,
        Some(Fault::Reset(ResetPoint::AfterHandling)) => {
            handler::respond(&state, &request).await;
            None
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            Some(handler::respond(&state, &request).await)
        }
        None => Some(handler::respond(&state, &request).await),
    };
    logged.status = reply.as_ref().map_or(0, |reply| reply.status);
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

fn log_entry(request: &ApiRequest) -> Logged {
    let prefer: Vec<&str> = request
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Logged {
        method: request.method.to_string(),
        path: request.path.clone(),
        query: request.query.clone(),
        prefer: (!prefer.is_empty()).then(|| prefer.join(", ")),
        status: 0,
        // Bytes: a reference to the request's body, not a copy.
        body: request.body.clone(),
    }
}
