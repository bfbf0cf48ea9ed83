//! One connection, served by hyper's HTTP/1 (no h2c: nothing here needs HTTP/2, and the tunnel
//! speaks HTTP/1.1 to the agent) under this module's deadlines: headers within the header
//! timeout of their first byte (or of the connection's opening), a body within the request
//! timeout of its headers, and no longer than the idle timeout between requests. hyper's own
//! header timeout is off: it would also count the idle time of a kept-alive connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use warp::http::{header, HeaderValue, Request, StatusCode};
use warp::reply::Response;

use super::conns::{ConnState, Phase};
use crate::config::HttpLimits;
use crate::http::error_reply;
use crate::http::refusals::{Refusal, RefusalLog};

/// The request body handlers see: the client's, failing once the request timeout has passed.
pub(crate) struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

/// The error a too-slow body ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the request timeout")]
struct BodyTooSlow;

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTooSlow.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The routes, told when each request begins and ends, their bodies under the request timeout.
#[derive(Clone)]
struct Guarded<S> {
    routes: S,
    conn: Arc<ConnState>,
    request_timeout: Duration,
    log: Arc<RefusalLog>,
}

impl<S> hyper::service::Service<Request<Incoming>> for Guarded<S>
where
    S: tower_service::Service<Request<TimedBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.conn.begin_request();
        let expired = Arc::new(AtomicBool::new(false));
        let deadline = Box::pin(tokio::time::sleep(self.request_timeout));
        let request = request.map(|inner| TimedBody {
            inner,
            deadline,
            expired: expired.clone(),
        });
        let mut routes = self.routes.clone();
        let (conn, log) = (self.conn.clone(), self.log.clone());
        Box::pin(async move {
            let answer = routes.call(request).await;
            conn.end_request();
            if expired.load(Ordering::Relaxed) {
                log.record(Refusal::BodyTooSlow);
                let mut slow = error_reply(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                );
                slow.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(slow);
            }
            answer
        })
    }
}

/// The socket, noting the first byte of each request (its header deadline starts there).
struct Tracked {
    stream: TcpStream,
    conn: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.saw_bytes();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What a connection is given to serve.
pub(super) struct Serving<S> {
    pub(super) routes: S,
    pub(super) limits: HttpLimits,
    pub(super) log: Arc<RefusalLog>,
    pub(super) shutdown: CancellationToken,
}

/// Serves one connection until it ends, misses a deadline, is shed, or (at shutdown) has
/// finished its request in flight.
pub(super) async fn drive<S>(stream: TcpStream, conn: Arc<ConnState>, serving: Serving<S>)
where
    S: tower_service::Service<Request<TimedBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let Serving {
        routes,
        limits,
        log,
        shutdown,
    } = serving;
    let service = Guarded {
        routes,
        conn: conn.clone(),
        request_timeout: limits.request_timeout,
        log: log.clone(),
    };
    let io = TokioIo::new(Tracked {
        stream,
        conn: conn.clone(),
    });
    let served = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        let due = deadline(conn.phase(), &limits);
        let at = due.map_or_else(|| Instant::now() + Duration::from_secs(86_400), |d| d.0);
        tokio::select! {
            ended = served.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(at), if due.is_some() => {
                // The phase may have moved on since the deadline was taken.
                if let Some((at, why)) = deadline(conn.phase(), &limits) {
                    if at <= Instant::now() {
                        log.record(why);
                        return;
                    }
                }
            }
            () = conn.changed.notified() => {}
            () = conn.shed.cancelled() => {
                log.record(Refusal::ConnectionShed);
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                served.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// When a connection in `phase` must be closed, and why.
fn deadline(phase: Phase, limits: &HttpLimits) -> Option<(Instant, Refusal)> {
    match phase {
        Phase::AwaitingHead {
            first_byte: Some(first),
            ..
        } => Some((first + limits.header_timeout, Refusal::HeadersTooSlow)),
        Phase::AwaitingHead {
            since, fresh: true, ..
        } => Some((since + limits.header_timeout, Refusal::HeadersTooSlow)),
        Phase::AwaitingHead { since, .. } => {
            Some((since + limits.idle_timeout, Refusal::IdleClosed))
        }
        Phase::InRequest => None,
    }
}
