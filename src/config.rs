//! Configuration: read once from `.env` and the environment, validated into typed fields, every
//! problem reported together by setting name. Secrets stay `SecretString`s until the one line
//! that builds a header or a connection.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::retry::Backoff;

/// Every setting syncbridge reads. `.env.example` documents exactly these (a test checks it).
pub const KEYS: &[&str] = &[
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
    "SYNC_TABLE_MAP",
    "SYNC_DATA_DIR",
    "SYNC_AGENT_ID",
    "SYNC_MAX_BODY_BYTES",
];

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
    pub table_map: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub agent_id: String,
    pub max_body_bytes: u64,
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

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn fail(&mut self, key: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            key,
            message: message.into(),
        });
    }

    fn required(&mut self, key: &'static str) -> Option<String> {
        let value = self.raw(key);
        if value.is_none() {
            self.fail(key, "is required but not set");
        }
        value
    }

    fn parsed<T>(
        &mut self,
        key: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(key) {
            None => default,
            Some(v) => parse(&v).unwrap_or_else(|why| {
                self.fail(key, why);
                default
            }),
        }
    }
}

fn duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v)
        .map_err(|_| format!("{v:?} is not a duration (e.g. 500ms, 2s, 10m)"))
}

fn ranged<T: std::str::FromStr + PartialOrd + fmt::Display>(
    lo: T,
    hi: T,
) -> impl Fn(&str) -> Result<T, String> {
    move |v| match v.parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        _ => Err(format!("{v:?} is not a whole number from {lo} to {hi}")),
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
            Err(e) => return Err(ConfigError(vec![env_file_problem(&e)])),
        }
        Self::from_lookup(&|key| std::env::var(key).ok())
    }

    /// Parses and validates every setting through `lookup`, so tests can pass a map.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader {
            lookup,
            problems: Vec::new(),
        };
        let mssql = r.required("MSSQL_CONNECTION_STRING");
        let mssql_label = mssql
            .as_deref()
            .map(|s| mssql_label(&mut r, s))
            .unwrap_or_default();
        let supabase_url = r
            .required("SUPABASE_URL")
            .and_then(|v| match Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
                _ => {
                    r.fail(
                        "SUPABASE_URL",
                        format!("{v:?} is not an http(s) URL such as https://xyz.supabase.co"),
                    );
                    None
                }
            });
        let service_key = r.required("SUPABASE_SERVICE_ROLE_KEY");
        let service_key_kind = service_key.as_deref().and_then(|k| match key_kind(k) {
            Ok(kind) => Some(kind),
            Err(why) => {
                r.fail("SUPABASE_SERVICE_ROLE_KEY", why);
                None
            }
        });
        let webhook_secret = r.required("SUPABASE_WEBHOOK_SECRET");
        if webhook_secret.as_ref().is_some_and(|s| s.len() < 24) {
            r.fail(
                "SUPABASE_WEBHOOK_SECRET",
                "must be at least 24 characters (use a random string)",
            );
        }
        let webhook_signing_secret = r.raw("SUPABASE_WEBHOOK_SIGNING_SECRET");
        if let Some(s) = &webhook_signing_secret {
            if crate::http::signature::decode_signing_secret(s).is_none() {
                r.fail(
                    "SUPABASE_WEBHOOK_SIGNING_SECRET",
                    "must be a Standard Webhooks secret: whsec_ followed by base64",
                );
            }
        }
        let admin_token = r.required("SYNC_ADMIN_TOKEN");
        if admin_token.as_ref().is_some_and(|s| s.len() < 24) {
            r.fail(
                "SYNC_ADMIN_TOKEN",
                "must be at least 24 characters (use a random string)",
            );
        }
        let notify_token = r.raw("SYNC_NOTIFY_TOKEN");
        if notify_token.as_ref().is_some_and(|s| s.len() < 24) {
            r.fail(
                "SYNC_NOTIFY_TOKEN",
                "must be at least 24 characters (use a random string)",
            );
        }
        if notify_token.is_some() && notify_token == admin_token {
            r.fail("SYNC_NOTIFY_TOKEN", "must differ from SYNC_ADMIN_TOKEN");
        }
        let listen_addr = r.parsed(
            "SYNC_LISTEN_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 3000)),
            |v| {
                v.parse()
                    .map_err(|_| format!("{v:?} is not an address like 127.0.0.1:3000"))
            },
        );
        let batch_size = r.parsed("SYNC_BATCH_SIZE", 50, ranged(1usize, 1000));
        let max_attempts = r.parsed("SYNC_MAX_ATTEMPTS", 10, ranged(1u32, 1000));
        let base = r.parsed("SYNC_BACKOFF_BASE", Duration::from_secs(2), duration);
        let cap = r.parsed("SYNC_BACKOFF_CAP", Duration::from_secs(600), duration);
        if base.is_zero() || cap < base {
            r.fail(
                "SYNC_BACKOFF_CAP",
                "SYNC_BACKOFF_BASE must be positive and not above SYNC_BACKOFF_CAP",
            );
        }
        let claim_lease = r.parsed("SYNC_CLAIM_LEASE", Duration::from_secs(120), duration);
        if claim_lease < Duration::from_secs(5) {
            r.fail(
                "SYNC_CLAIM_LEASE",
                "must be at least 5s (a batch must finish within its lease)",
            );
        }
        let supabase_timeout = r.parsed("SUPABASE_TIMEOUT", Duration::from_secs(10), duration);
        if supabase_timeout.is_zero() {
            r.fail("SUPABASE_TIMEOUT", "must be positive");
        }
        let table_map = r.raw("SYNC_TABLE_MAP").map(PathBuf::from);
        if let Some(path) = &table_map {
            if !path.is_file() {
                r.fail(
                    "SYNC_TABLE_MAP",
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        let data_dir = PathBuf::from(r.raw("SYNC_DATA_DIR").unwrap_or_else(|| "data".to_owned()));
        let agent_id = r.raw("SYNC_AGENT_ID").unwrap_or_else(default_agent_id);
        if agent_id.chars().count() > 128 {
            r.fail("SYNC_AGENT_ID", "must be at most 128 characters");
        }
        let max_body_bytes = r.parsed("SYNC_MAX_BODY_BYTES", 1 << 20, ranged(1024u64, 64 << 20));

        match (
            mssql,
            supabase_url,
            service_key,
            service_key_kind,
            webhook_secret,
            admin_token,
        ) {
            (Some(mssql), Some(supabase_url), Some(key), Some(kind), Some(secret), Some(token))
                if r.problems.is_empty() =>
            {
                Ok(Self {
                    mssql_connection: SecretString::from(mssql),
                    mssql_label,
                    supabase_url,
                    service_key: SecretString::from(key),
                    service_key_kind: kind,
                    supabase_timeout,
                    webhook_secret: SecretString::from(secret),
                    webhook_signing_secret: webhook_signing_secret.map(SecretString::from),
                    admin_token: SecretString::from(token),
                    notify_token: notify_token.map(SecretString::from),
                    listen_addr,
                    batch_size,
                    max_attempts,
                    backoff: Backoff { base, cap },
                    claim_lease,
                    table_map,
                    data_dir,
                    agent_id,
                    max_body_bytes,
                })
            }
            _ => Err(ConfigError(r.problems)),
        }
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

/// Describes a `.env` parse error by line number and setting name only: the text dotenvy
/// reports is part of the line, which may hold a secret.
fn env_file_problem(e: &dotenvy::Error) -> Problem {
    let message = match e {
        dotenvy::Error::LineParse(fragment, _) => {
            let text = std::fs::read_to_string(".env").unwrap_or_default();
            match text
                .lines()
                .enumerate()
                .find(|(_, line)| line.contains(fragment.as_str()))
            {
                Some((n, line)) => {
                    let key: String = line
                        .split('=')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .chars()
                        .take(64)
                        .collect();
                    format!("line {} ({key}) cannot be parsed; quote values that contain spaces, # or backslashes", n + 1)
                }
                None => {
                    "a line cannot be parsed; quote values that contain spaces, # or backslashes"
                        .to_owned()
                }
            }
        }
        dotenvy::Error::Io(io) => format!("cannot be read: {io}"),
        _ => "cannot be read".to_owned(),
    };
    Problem {
        key: ".env",
        message,
    }
}

fn mssql_label(r: &mut Reader<'_>, conn: &str) -> String {
    match tiberius::Config::from_ado_string(conn) {
        Ok(_) => {
            // Only the server and database parts are kept for logs; never the credentials.
            let part = |names: &[&str]| {
                conn.split(';')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| names.iter().any(|n| k.trim().eq_ignore_ascii_case(n)))
                    .map(|(_, v)| v.trim().to_owned())
                    .unwrap_or_else(|| "?".to_owned())
            };
            format!(
                "{}/{}",
                part(&["server", "data source", "address", "addr"]),
                part(&["database", "initial catalog"])
            )
        }
        Err(_) => {
            r.fail(
                "MSSQL_CONNECTION_STRING",
                "is not a valid ADO connection string (e.g. Server=localhost\\SQLEXPRESS;Database=Clinic;User Id=sync;Password=...;TrustServerCertificate=true)",
            );
            String::new()
        }
    }
}

fn key_kind(key: &str) -> Result<KeyKind, String> {
    if key.starts_with("sb_secret_") {
        return Ok(KeyKind::Secret);
    }
    if key.starts_with("sb_publishable_") {
        return Err(
            "is a publishable key; use a secret key (sb_secret_...) or the legacy service_role key"
                .to_owned(),
        );
    }
    let claims = key
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    match claims
        .as_ref()
        .and_then(|c| c.get("role"))
        .and_then(|r| r.as_str())
    {
        Some("service_role") => Ok(KeyKind::LegacyJwt),
        Some(role) => Err(format!(
            "is a JWT for role {role:?}; use the service_role key"
        )),
        None => Err("is neither a service_role JWT nor an sb_secret_ key".to_owned()),
    }
}

fn default_agent_id() -> String {
    ["COMPUTERNAME", "HOSTNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "syncbridge".to_owned())
}

#[cfg(test)]
mod tests;
