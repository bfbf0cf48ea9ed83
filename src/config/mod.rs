//! Configuration: read once from `.env` and the environment, validated into typed fields, every
//! problem reported together by setting name. Secrets stay `SecretString`s until the one line
//! that builds a header or a connection.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice, SecretString};
use url::Url;

use crate::retry::Backoff;

mod read;

pub(crate) use read::decode_signing_secret;
use read::Reader;

/// Every setting syncbridge reads. `.env.example` documents exactly these (a test checks it),
/// and none of them may keep a placeholder of `.env.example`.
pub(crate) const KEYS: &[&str] = &[
    "MSSQL_CONNECTION_STRING",
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_WEBHOOK_SECRET",
    "SUPABASE_WEBHOOK_SIGNING_SECRET",
    "SUPABASE_TIMEOUT",
    "SYNC_ADMIN_TOKEN",
    "SYNC_NOTIFY_TOKEN",
    "SYNC_LISTEN_ADDR",
    "SYNC_BATCH_SIZE",
    "SYNC_MAX_ATTEMPTS",
    "SYNC_BACKOFF_BASE",
    "SYNC_BACKOFF_CAP",
    "SYNC_CLAIM_LEASE",
    "SYNC_PIPELINE_DEPTH",
    "SYNC_TABLE_MAP",
    "SYNC_DATA_DIR",
    "SYNC_AGENT_ID",
    "SYNC_MAX_BODY_BYTES",
    "SYNC_LOG_DIR",
    "SYNC_LOG_KEEP_DAYS",
    "SYNC_HTTP_MAX_CONNECTIONS",
    "SYNC_HTTP_HEADER_TIMEOUT",
    "SYNC_HTTP_REQUEST_TIMEOUT",
    "SYNC_HTTP_IDLE_TIMEOUT",
];

/// The scheme of `MSSQL_CONNECTION_STRING` that names the out-of-process SQL Server double
/// (`syncbridge-test-double://127.0.0.1:PORT`), for the fault tests; a configuration error in
/// builds without the `test-support` feature.
pub const TEST_DOUBLE_SCHEME: &str = "syncbridge-test-double://";

/// How the service key travels: legacy JWT keys go in `apikey` and `Authorization: Bearer`;
/// the new `sb_secret_...` keys are not JWTs and go in `apikey` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    LegacyJwt,
    Secret,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// ADO connection string; holds the SQL password.
    pub mssql_connection: SecretString,
    /// `host[\instance]/database`, safe to log.
    pub mssql_label: String,
    pub supabase_url: Url,
    pub service_key: SecretString,
    pub service_key_kind: KeyKind,
    pub supabase_timeout: Duration,
    pub webhook_secret: SecretString,
    pub webhook_signing_secret: Option<SecretString>,
    pub admin_token: SecretString,
    /// Accepted by `queue-notify` only; the token stored in SQL Server's `SyncConfig`, which
    /// database readers can see, so it must not unlock `trigger` or `status`.
    pub notify_token: Option<SecretString>,
    pub listen_addr: SocketAddr,
    pub batch_size: usize,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub claim_lease: Duration,
    /// Forward batches in flight at once (claimed and read while earlier ones are sent).
    pub pipeline_depth: usize,
    pub table_map: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub agent_id: String,
    pub max_body_bytes: u64,
    /// Where `run` writes its daily log files.
    pub log_dir: PathBuf,
    /// Daily log files kept (today's included); 0 writes none.
    pub log_keep_days: u32,
    /// What the HTTP server lets one client hold: connections and how long each may dawdle.
    pub http_limits: HttpLimits,
}

/// The HTTP server's limits. The listener is reachable from the internet through the tunnel,
/// so a stranger must not be able to hold connections, memory or file descriptors for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at most; the last eighth is kept for loopback peers (the clinic's
    /// `queue-notify`), and idle connections are closed to make room.
    pub max_connections: usize,
    /// A request's headers must arrive within this, counted from its first byte (or from the
    /// connection's opening).
    pub header_timeout: Duration,
    /// A request's body must arrive within this, counted from the end of its headers.
    pub request_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// One wrong or missing setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
}

/// All problems found in one pass, so the user fixes the `.env` once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads `.env` (if present) into the environment, then the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal (service managers set the environment themselves); a
        // malformed one is not, and must not be half-read silently.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError(vec![read::env_file_problem(&e)])),
        }
        Self::from_lookup(&|key| std::env::var(key).ok())
    }

    /// Parses and validates every setting through `lookup`, so tests can pass a map. Settings
    /// are read in a fixed order, so problems are reported in that order.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(lookup);
        r.placeholders(KEYS);
        let sides = r.sides();
        let secrets = r.secrets();
        let tuning = r.tuning();
        let local = r.local();
        let http_limits = r.http_limits();
        match (sides, secrets) {
            (Some(sides), Some(secrets)) if r.problems.is_empty() => Ok(Self {
                mssql_connection: sides.mssql_connection,
                mssql_label: sides.mssql_label,
                supabase_url: sides.supabase_url,
                service_key: sides.service_key,
                service_key_kind: sides.service_key_kind,
                supabase_timeout: tuning.supabase_timeout,
                webhook_secret: secrets.webhook_secret,
                webhook_signing_secret: secrets.webhook_signing_secret,
                admin_token: secrets.admin_token,
                notify_token: secrets.notify_token,
                listen_addr: tuning.listen_addr,
                batch_size: tuning.batch_size,
                max_attempts: tuning.max_attempts,
                backoff: tuning.backoff,
                claim_lease: tuning.claim_lease,
                pipeline_depth: tuning.pipeline_depth,
                table_map: local.table_map,
                data_dir: local.data_dir,
                agent_id: local.agent_id,
                max_body_bytes: local.max_body_bytes,
                log_dir: local.log_dir,
                log_keep_days: local.log_keep_days,
                http_limits,
            }),
            _ => Err(ConfigError(r.problems)),
        }
    }

    /// The Standard Webhooks signing key, when `SUPABASE_WEBHOOK_SIGNING_SECRET` is set (it was
    /// validated when the configuration was read).
    pub(crate) fn webhook_signing_key(&self) -> Option<SecretSlice<u8>> {
        self.webhook_signing_secret
            .as_ref()
            .and_then(|s| decode_signing_secret(s.expose_secret()))
            .map(SecretSlice::from)
    }

    /// Where the out-of-process SQL Server double listens, when `MSSQL_CONNECTION_STRING`
    /// names it (only test builds accept that; see [`TEST_DOUBLE_SCHEME`]).
    #[cfg(feature = "test-support")]
    pub fn test_double_addr(&self) -> Option<SocketAddr> {
        self.mssql_connection
            .expose_secret()
            .strip_prefix(TEST_DOUBLE_SCHEME)?
            .parse()
            .ok()
    }

    /// The tiberius configuration. Parsed again from the secret on demand so that no long-lived
    /// value with a `Debug` impl ever holds the password.
    pub fn mssql_config(&self) -> Result<tiberius::Config, ConfigError> {
        tiberius::Config::from_ado_string(self.mssql_connection.expose_secret()).map_err(|_| {
            ConfigError(vec![Problem {
                key: "MSSQL_CONNECTION_STRING",
                message: "is not a valid ADO connection string".to_owned(),
            }])
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
