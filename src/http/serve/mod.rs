//! The HTTP server loop: accepts connections itself (rather than `warp::serve`, which has no
//! timeouts and no cap), admits each through the capped [`conns::ConnTable`], and serves it
//! with [`conn::drive`] under the header, request and idle timeouts of
//! [`crate::config::HttpLimits`]. At shutdown it stops accepting, lets requests in flight
//! finish, and closes idle connections.

mod conn;
mod conns;
mod fd_limit;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http::Request;
use warp::reply::Response;

pub(crate) use self::conn::TimedBody;
use self::conn::{drive, Serving};
use self::conns::{Admission, ConnTable};
use super::refusals::{Refusal, RefusalLog};
use crate::config::HttpLimits;

/// Serves `routes` on `listener` until `shutdown` fires, then waits for the connections.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    routes: S,
    limits: HttpLimits,
    log: Arc<RefusalLog>,
    shutdown: CancellationToken,
) where
    S: tower_service::Service<Request<TimedBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let table = ConnTable::new(fd_limit::connection_cap(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors (or a connection reset before it was accepted): wait a
                // moment rather than spin; connections closing will free some.
                log.record(Refusal::AcceptFailed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match table.admit(peer) {
            Admission::Refused => log.record(Refusal::ConnectionRefused),
            Admission::Admitted(state, slot) => {
                let _ = stream.set_nodelay(true);
                let serving = Serving {
                    routes: routes.clone(),
                    limits,
                    log: log.clone(),
                    shutdown: shutdown.clone(),
                };
                tracker.spawn(async move {
                    drive(stream, state, serving).await;
                    drop(slot);
                });
            }
        }
    }
    tracing::info!(
        open = tracker.len(),
        "shutdown signal received: HTTP listener closed, finishing requests in flight"
    );
    drop(listener);
    tracker.close();
    tracker.wait().await;
}
