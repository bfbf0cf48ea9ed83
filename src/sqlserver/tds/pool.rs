//! Connections to SQL Server: opened lazily (the agent starts, and keeps accepting webhooks,
//! while SQL Server is down), marked as the agent's (SESSION_CONTEXT) before first use, bounded
//! in number, and discarded after any failure or cancellation so that no half-read response or
//! open transaction is ever handed to the next caller.
//!
//! A small pool of our own rather than bb8: bb8 swallows connection errors into an error sink
//! and makes `get` wait out its whole timeout, whereas the agent wants "connection refused" or
//! "login failed" back at once, as `StoreError::Unavailable`.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tiberius::{Client, Config, SqlBrowser};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::error::connect_failed;
use crate::sqlserver::StoreError;

pub(super) type TdsClient = Client<Compat<TcpStream>>;

/// Bound on opening one connection: SQL Browser lookup, TCP, TLS, login and session setup. A
/// down server must fail fast, not stall the worker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per round trip once connected (tiberius' command timeout). `wait_for_writers` blocks inside
/// one round trip, so its lock wait is kept below this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for a free connection when all are busy.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections older than this are closed rather than reused: a firewall or NAT may have
/// dropped them silently, and a fresh login costs little.
const MAX_IDLE: Duration = Duration::from_secs(300);

/// Run once on every new connection. The session context is what the change triggers check
/// (read-only, so nothing later on the connection can clear it). The SET options are the ones
/// DML needs on tables with filtered indexes, indexed views or indexed computed columns;
/// tiberius' login already asks for most of them, this makes it explicit.
pub(super) const SESSION_SETUP: &str = "\
EXEC sys.sp_set_session_context @key = N'syncbridge', @value = 1, @read_only = 1;
SET ANSI_NULLS, ANSI_PADDING, ANSI_WARNINGS, ARITHABORT, CONCAT_NULL_YIELDS_NULL, QUOTED_IDENTIFIER ON;
SET NUMERIC_ROUNDABORT OFF;
SET IMPLICIT_TRANSACTIONS OFF;";

pub(super) struct Pool {
    /// Holds the credentials: never logged, never formatted into an error.
    config: Config,
    idle: Mutex<Vec<Idle>>,
    permits: Semaphore,
    size: usize,
}

struct Idle {
    client: TdsClient,
    since: Instant,
}

impl Pool {
    pub(super) fn new(config: Config, size: u32) -> Self {
        let size = usize::try_from(size.max(1)).unwrap_or(1);
        Self {
            config: with_timeouts(config),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size),
            size,
        }
    }

    /// The longest a single statement may wait on a lock without tripping the command timeout.
    pub(super) fn max_lock_wait(&self) -> Duration {
        COMMAND_TIMEOUT.saturating_sub(Duration::from_secs(5))
    }

    /// A connection for one operation: an idle one if any, else a new one.
    pub(super) async fn get(&self) -> Result<Conn<'_>, StoreError> {
        let permit = tokio::time::timeout(CHECKOUT_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| {
                StoreError::Transient(format!(
                    "all {} SQL Server connections stayed busy",
                    self.size
                ))
            })?
            .map_err(|_| StoreError::Unavailable("the connection pool is closed".to_owned()))?;
        let client = match self.take_idle() {
            Some(client) => client,
            None => self.open().await?,
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            reusable: false,
            _permit: permit,
        })
    }

    fn take_idle(&self) -> Option<TdsClient> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|i| i.since.elapsed() < MAX_IDLE);
        idle.pop().map(|i| i.client)
    }

    fn put_back(&self, client: TdsClient) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.size {
            idle.push(Idle {
                client,
                since: Instant::now(),
            });
        }
    }

    async fn open(&self) -> Result<TdsClient, StoreError> {
        connect(&self.config, SESSION_SETUP).await
    }
}

/// `config` with the agent's handshake and per-round-trip timeouts.
pub(super) fn with_timeouts(mut config: Config) -> Config {
    config.handshake_timeout(Some(CONNECT_TIMEOUT));
    config.command_timeout(Some(COMMAND_TIMEOUT));
    config
}

/// A new connection that has run `setup`, bounded by [`CONNECT_TIMEOUT`]. The pool's
/// connections run [`SESSION_SETUP`]; the self-test also opens plain ones (`""`), which act as
/// the clinic's applications do.
pub(super) async fn connect(config: &Config, setup: &str) -> Result<TdsClient, StoreError> {
    let opening = async {
        // Resolves `host\INSTANCE` through SQL Browser (UDP 1434); a plain host connects
        // directly. Sets TCP_NODELAY.
        let tcp = TcpStream::connect_named(config).await?;
        let mut client = Client::connect(config.clone(), tcp.compat_write()).await?;
        if !setup.is_empty() {
            client.simple_query(setup).await?.into_results().await?;
        }
        Ok::<_, tiberius::error::Error>(client)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, opening).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(connect_failed(&e)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A checked-out connection. Returned to the pool only if the operation called [`Conn::done`];
/// dropped after an error or when the future using it was cancelled mid-statement.
pub(super) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<TdsClient>,
    reusable: bool,
    _permit: SemaphorePermit<'a>,
}

impl Conn<'_> {
    pub(super) fn client(&mut self) -> &mut TdsClient {
        // Present from `get` until `drop`.
        self.client
            .as_mut()
            .expect("connection present until dropped")
    }

    /// The operation finished cleanly: the connection is idle and may be reused.
    pub(super) fn done(mut self) {
        self.reusable = true;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let (true, Some(client)) = (self.reusable, self.client.take()) {
            self.pool.put_back(client);
        }
    }
}
