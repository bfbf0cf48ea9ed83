//! Reading the settings: one `Reader` collects every problem while the sections (both sides'
//! connections, secrets, tuning, local paths) are read in a fixed order, plus the parsers that
//! must never echo a secret (the `.env` line, the connection string, the service key).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use url::Url;

use super::{KeyKind, Problem};
use crate::retry::Backoff;

mod http;

pub(super) struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            problems: Vec::new(),
        }
    }

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

/// Both sides' connections; `None` when a required one is missing or wrong.
pub(super) struct Sides {
    pub(super) mssql_connection: SecretString,
    pub(super) mssql_label: String,
    pub(super) supabase_url: Url,
    pub(super) service_key: SecretString,
    pub(super) service_key_kind: KeyKind,
}

pub(super) struct Secrets {
    pub(super) webhook_secret: SecretString,
    pub(super) webhook_signing_secret: Option<SecretString>,
    pub(super) admin_token: SecretString,
    pub(super) notify_token: Option<SecretString>,
}

pub(super) struct Tuning {
    pub(super) listen_addr: SocketAddr,
    pub(super) batch_size: usize,
    pub(super) max_attempts: u32,
    pub(super) backoff: Backoff,
    pub(super) claim_lease: Duration,
    pub(super) pipeline_depth: usize,
    pub(super) supabase_timeout: Duration,
}

pub(super) struct Local {
    pub(super) table_map: Option<PathBuf>,
    pub(super) data_dir: PathBuf,
    pub(super) agent_id: String,
    pub(super) max_body_bytes: u64,
    pub(super) log_dir: PathBuf,
    pub(super) log_keep_days: u32,
}

/// What `.env.example` holds where a real value belongs (`replace-with-...`, `change-me`,
/// `your-project.supabase.co`), compared without regard to case.
const PLACEHOLDERS: &[&str] = &["replace-with-", "change-me", "your-project.supabase.co"];

impl Reader<'_> {
    /// Names every setting that still holds a placeholder of `.env.example`: copied but not
    /// filled in, it would otherwise pass as a (wrong) password, key or secret. The value is
    /// not echoed: it is probably part of a secret.
    pub(super) fn placeholders(&mut self, keys: &[&'static str]) {
        for &key in keys {
            let Some(value) = self.raw(key) else {
                continue;
            };
            let value = value.to_ascii_lowercase();
            if PLACEHOLDERS.iter().any(|p| value.contains(p)) {
                self.fail(
                    key,
                    "still holds the placeholder from .env.example: put the real value here (or run `syncbridge init`)",
                );
            }
        }
    }

    pub(super) fn sides(&mut self) -> Option<Sides> {
        let mssql = self.required("MSSQL_CONNECTION_STRING");
        let mssql_label = mssql
            .as_deref()
            .map(|s| mssql_label(self, s))
            .unwrap_or_default();
        let supabase_url = self
            .required("SUPABASE_URL")
            .and_then(|v| match Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
                _ => {
                    self.fail(
                        "SUPABASE_URL",
                        format!("{v:?} is not an http(s) URL such as https://xyz.supabase.co"),
                    );
                    None
                }
            });
        let service_key = self.required("SUPABASE_SERVICE_ROLE_KEY");
        let service_key_kind = service_key.as_deref().and_then(|k| match key_kind(k) {
            Ok(kind) => Some(kind),
            Err(why) => {
                self.fail("SUPABASE_SERVICE_ROLE_KEY", why);
                None
            }
        });
        Some(Sides {
            mssql_connection: SecretString::from(mssql?),
            mssql_label,
            supabase_url: supabase_url?,
            service_key: SecretString::from(service_key?),
            service_key_kind: service_key_kind?,
        })
    }

    /// A random-string secret of at least 24 characters.
    fn long_secret(&mut self, key: &'static str, value: &Option<String>) {
        if value.as_ref().is_some_and(|s| s.len() < 24) {
            self.fail(key, "must be at least 24 characters (use a random string)");
        }
    }

    pub(super) fn secrets(&mut self) -> Option<Secrets> {
        let webhook_secret = self.required("SUPABASE_WEBHOOK_SECRET");
        self.long_secret("SUPABASE_WEBHOOK_SECRET", &webhook_secret);
        let webhook_signing_secret = self.raw("SUPABASE_WEBHOOK_SIGNING_SECRET");
        if let Some(s) = &webhook_signing_secret {
            if decode_signing_secret(s).is_none() {
                self.fail(
                    "SUPABASE_WEBHOOK_SIGNING_SECRET",
                    "must be a Standard Webhooks secret: whsec_ followed by base64",
                );
            }
        }
        let admin_token = self.required("SYNC_ADMIN_TOKEN");
        self.long_secret("SYNC_ADMIN_TOKEN", &admin_token);
        let notify_token = self.raw("SYNC_NOTIFY_TOKEN");
        self.long_secret("SYNC_NOTIFY_TOKEN", &notify_token);
        if notify_token.is_some() && notify_token == admin_token {
            self.fail("SYNC_NOTIFY_TOKEN", "must differ from SYNC_ADMIN_TOKEN");
        }
        Some(Secrets {
            webhook_secret: SecretString::from(webhook_secret?),
            webhook_signing_secret: webhook_signing_secret.map(SecretString::from),
            admin_token: SecretString::from(admin_token?),
            notify_token: notify_token.map(SecretString::from),
        })
    }

    pub(super) fn tuning(&mut self) -> Tuning {
        let listen_addr = self.parsed(
            "SYNC_LISTEN_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 3000)),
            |v| {
                v.parse()
                    .map_err(|_| format!("{v:?} is not an address like 127.0.0.1:3000"))
            },
        );
        let batch_size = self.parsed("SYNC_BATCH_SIZE", 1000, ranged(1usize, 1000));
        let max_attempts = self.parsed("SYNC_MAX_ATTEMPTS", 10, ranged(1u32, 1000));
        let base = self.parsed("SYNC_BACKOFF_BASE", Duration::from_secs(2), duration);
        let cap = self.parsed("SYNC_BACKOFF_CAP", Duration::from_secs(600), duration);
        if base.is_zero() || cap < base {
            self.fail(
                "SYNC_BACKOFF_CAP",
                "SYNC_BACKOFF_BASE must be positive and not above SYNC_BACKOFF_CAP",
            );
        }
        let claim_lease = self.parsed("SYNC_CLAIM_LEASE", Duration::from_secs(120), duration);
        if claim_lease < Duration::from_secs(5) {
            self.fail(
                "SYNC_CLAIM_LEASE",
                "must be at least 5s (a batch must finish within its lease)",
            );
        }
        let pipeline_depth = self.parsed("SYNC_PIPELINE_DEPTH", 8, ranged(1usize, 16));
        let supabase_timeout = self.parsed("SUPABASE_TIMEOUT", Duration::from_secs(10), duration);
        if supabase_timeout.is_zero() {
            self.fail("SUPABASE_TIMEOUT", "must be positive");
        }
        Tuning {
            listen_addr,
            batch_size,
            max_attempts,
            backoff: Backoff { base, cap },
            claim_lease,
            pipeline_depth,
            supabase_timeout,
        }
    }

    pub(super) fn local(&mut self) -> Local {
        let table_map = self.raw("SYNC_TABLE_MAP").map(PathBuf::from);
        if let Some(path) = &table_map {
            if !path.is_file() {
                self.fail(
                    "SYNC_TABLE_MAP",
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        let data_dir = PathBuf::from(
            self.raw("SYNC_DATA_DIR")
                .unwrap_or_else(|| "data".to_owned()),
        );
        let agent_id = self.raw("SYNC_AGENT_ID").unwrap_or_else(default_agent_id);
        if agent_id.chars().count() > 128 {
            self.fail("SYNC_AGENT_ID", "must be at most 128 characters");
        }
        let max_body_bytes = self.parsed("SYNC_MAX_BODY_BYTES", 1 << 20, ranged(1024u64, 64 << 20));
        let log_dir = PathBuf::from(
            self.raw("SYNC_LOG_DIR")
                .unwrap_or_else(|| "logs".to_owned()),
        );
        let log_keep_days = self.parsed("SYNC_LOG_KEEP_DAYS", 14, ranged(0u32, 3650));
        Local {
            table_map,
            data_dir,
            agent_id,
            max_body_bytes,
            log_dir,
            log_keep_days,
        }
    }
}

/// Describes a `.env` parse error by line number and setting name only: the text dotenvy
/// reports is part of the line, which may hold a secret.
pub(super) fn env_file_problem(e: &dotenvy::Error) -> Problem {
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
                    format!("line {} ({key}) cannot be parsed; quote values that contain spaces, # or backslashes (and end none with a backslash)", n + 1)
                }
                None => {
                    "a line cannot be parsed; quote values that contain spaces, # or backslashes (and end none with a backslash)"
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
    if let Some(rest) = conn.strip_prefix(super::TEST_DOUBLE_SCHEME) {
        return test_double_label(r, rest);
    }
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

/// The out-of-process SQL Server double of the fault tests (`syncbridge-test-double://HOST:PORT`):
/// accepted only by builds with the `test-support` feature, so a release build never talks to
/// anything but a SQL Server.
fn test_double_label(r: &mut Reader<'_>, address: &str) -> String {
    if !cfg!(feature = "test-support") {
        r.fail(
            "MSSQL_CONNECTION_STRING",
            "names the test double, which only test builds accept; use an ADO connection string",
        );
        return String::new();
    }
    match address.parse::<SocketAddr>() {
        Ok(addr) => format!("test double at {addr}"),
        Err(_) => {
            r.fail(
                "MSSQL_CONNECTION_STRING",
                format!(
                    "{}HOST:PORT needs an IP address and a port",
                    super::TEST_DOUBLE_SCHEME
                ),
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

/// The key bytes of a Standard Webhooks secret (`whsec_<base64>`).
pub(crate) fn decode_signing_secret(secret: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_")?)
        .ok()
        .filter(|k| !k.is_empty())
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
