//! The end-to-end harness, one for either SQL Server side: a real agent started on
//! 127.0.0.1:0 over a fresh PostgreSQL database and the PostgREST-compatible test server, spoken
//! to over HTTP, with the SQL Server side a test chooses ([`SqlServerSide`]): the in-memory
//! double ([`Harness`]) or a test's own database on a real SQL Server ([`E2e`], for
//! tests/mssql_e2e_*.rs). A test written against [`TestAgent`]'s methods runs on both.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::{Agent, Config};
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

mod compare;
mod fixtures;
pub mod mssql;
#[cfg(unix)]
pub mod process;
mod sides;

// Each test binary uses a different part of the fixtures.
#[allow(unused_imports)]
pub use compare::*;
#[allow(unused_imports)]
pub use fixtures::*;

use mssql::SqlDb;
pub use sides::SqlServerSide;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const NOTIFY_TOKEN: &str = "test-notify-token-0123456789abcdef";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789abcdef";
/// Generous: CI machines are small and shared; every wait returns as soon as its condition holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The agent over the in-memory SQL Server double.
pub type Harness = TestAgent<MemoryStore>;
/// The agent with the tiberius store over a test's own SQL Server database.
pub type E2e = TestAgent<SqlDb>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    LegacyJwt,
    SecretKey,
}

/// Knobs a test may turn before starting its agent.
#[derive(Clone)]
pub struct Options {
    pub key_style: KeyStyle,
    /// Overrides the service key sent to PostgREST (to test a wrong key).
    pub wrong_key: bool,
    pub backoff_base: &'static str,
    pub backoff_cap: &'static str,
    pub batch_size: usize,
    pub max_attempts: u32,
    pub timeout: &'static str,
    pub map: TableMap,
    pub signing_secret: Option<&'static str>,
    /// SQL run on the fresh Supabase database before the test server starts.
    pub setup_sql: &'static str,
    /// The SQL Server double [`Harness::start_with`] uses (default: the sample clinic schema).
    pub store: Option<MemoryStore>,
    /// More settings, overriding the ones above (e.g. the `SYNC_HTTP_*` limits).
    pub settings: Vec<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            key_style: KeyStyle::LegacyJwt,
            wrong_key: false,
            // Short, so outage tests recover within the deadline once the other side is back.
            backoff_base: "50ms",
            backoff_cap: "400ms",
            batch_size: 50,
            max_attempts: 10,
            timeout: "2s",
            map: TableMap::sample_clinic(),
            signing_secret: None,
            setup_sql: "",
            store: None,
            settings: Vec::new(),
        }
    }
}

/// A running agent and everything around it.
pub struct TestAgent<S: SqlServerSide> {
    /// The SQL Server side.
    pub sql: S,
    /// The Supabase side's database.
    pub db: TestDb,
    pub rest: FakePostgrest,
    pub keys: ApiKeys,
    pub data_dir: Arc<TempDir>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    /// Stops the agent when a failing test unwinds.
    _stop_on_drop: DropGuard,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The agent's configuration: the SQL Server side's connection and agent id; the rest comes
/// from the test server, the data directory and `o`.
pub fn config(
    sql: &dyn SqlServerSide,
    rest_url: &str,
    key: String,
    data_dir: &TempDir,
    o: &Options,
) -> Config {
    let pairs = vec![
        ("MSSQL_CONNECTION_STRING", sql.connection_string()),
        ("SUPABASE_URL", rest_url.to_owned()),
        ("SUPABASE_SERVICE_ROLE_KEY", key),
        ("SUPABASE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("SYNC_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("SYNC_NOTIFY_TOKEN", NOTIFY_TOKEN.to_owned()),
        ("SYNC_BATCH_SIZE", o.batch_size.to_string()),
        ("SYNC_MAX_ATTEMPTS", o.max_attempts.to_string()),
        ("SYNC_BACKOFF_BASE", o.backoff_base.to_owned()),
        ("SYNC_BACKOFF_CAP", o.backoff_cap.to_owned()),
        ("SUPABASE_TIMEOUT", o.timeout.to_owned()),
        ("SYNC_DATA_DIR", data_dir.path().display().to_string()),
        ("SYNC_AGENT_ID", sql.agent_id().to_owned()),
        (
            "SUPABASE_WEBHOOK_SIGNING_SECRET",
            o.signing_secret.unwrap_or("").to_owned(),
        ),
        ("SYNC_MAX_BODY_BYTES", "65536".to_owned()),
    ];
    let extra: Vec<(&str, String)> = o
        .settings
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    // Later pairs win: a test's own settings override the defaults above.
    let pairs: Vec<(&str, String)> = extra.into_iter().chain(pairs).collect();
    let lookup = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    Config::from_lookup(&lookup).expect("test configuration is valid")
}

impl Harness {
    /// The agent over the sample clinic double, with default options.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// The agent over `o.store` (or the sample clinic double).
    pub async fn start_with(o: Options) -> Self {
        let store = o.store.clone().unwrap_or_else(MemoryStore::sample_clinic);
        Self::start_on(store, o).await
    }

    /// Waits until the SQL Server double satisfies `condition`.
    pub async fn wait_store(&self, what: &str, condition: impl Fn(&MemoryStore) -> bool) {
        let store = self.sql.clone();
        let condition = &condition;
        wait_for(what, || {
            let store = store.clone();
            async move { condition(&store) }
        })
        .await;
    }

    /// Waits until the forward queue has no Pending item.
    pub async fn wait_synced(&self) {
        self.wait_store("queue drained", |store| {
            store.queue().iter().all(|q| q.status != "Pending")
        })
        .await;
    }
}

impl E2e {
    /// The agent over `sql` (whose ADO string must reach it), with the options the SQL Server
    /// tests share.
    pub async fn start(sql: SqlDb) -> Self {
        sql.assert_ado_reaches_it().await;
        let options = Options {
            timeout: "5s",
            ..Options::default()
        };
        Self::start_on(sql, options).await
    }

    /// Stops the agent gracefully, then drops the SQL Server database.
    pub async fn finish(mut self) {
        self.stop().await;
        let TestAgent { sql, .. } = self;
        sql.drop_db().await;
    }
}

impl<S: SqlServerSide> TestAgent<S> {
    /// A fresh Supabase database (with `o.setup_sql`), the test server over it, and the agent
    /// over `sql`, started and ready.
    pub async fn start_on(sql: S, o: Options) -> Self {
        let db = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        if !o.setup_sql.is_empty() {
            db.client()
                .batch_execute(o.setup_sql)
                .await
                .expect("setup SQL");
        }
        let keys = ApiKeys::generate();
        let rest = FakePostgrest::start(db.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let shutdown = CancellationToken::new();
        let mut agent = Self {
            sql,
            db,
            rest,
            keys,
            data_dir: Arc::new(tempfile::tempdir().expect("tempdir")),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::new(),
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            task: None,
        };
        agent.launch(&o).await;
        agent
    }

    fn key(&self, o: &Options) -> String {
        if o.wrong_key {
            return ApiKeys::generate().service_role_jwt().to_owned();
        }
        match o.key_style {
            KeyStyle::LegacyJwt => self.keys.service_role_jwt().to_owned(),
            KeyStyle::SecretKey => self.keys.secret_key().to_owned(),
        }
    }

    /// Starts (or restarts) the agent over the same databases and data directory, and waits
    /// until it is ready and its start-up catch-up has run (so its reads do not meet the
    /// faults a test injects next).
    pub async fn launch(&mut self, o: &Options) {
        let config = config(&self.sql, &self.rest.url(), self.key(o), &self.data_dir, o);
        let store = self.sql.store(&config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.addr = listener.local_addr().expect("addr");
        self.shutdown = CancellationToken::new();
        self._stop_on_drop = self.shutdown.clone().drop_guard();
        let agent = Agent {
            config,
            store,
            map: o.map.clone(),
        };
        let task = tokio::spawn(syncbridge::run(agent, listener, self.shutdown.clone()));
        self.task = Some(task);
        let this = &*self;
        wait_for("agent ready and caught up", move || async move {
            // A fatal start (e.g. the map does not match the schema) should fail at once.
            let stopped = this.task.as_ref().is_none_or(JoinHandle::is_finished);
            assert!(!stopped, "the agent stopped during start-up");
            this.get_status().await.is_ok_and(|v| {
                v["agent"]["ready"] == json!(true)
                    && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
            })
        })
        .await;
    }

    /// Stops the agent gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("agent task").expect("agent ran cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What sp_NotifyAppOfSync does.
    pub async fn notify(&self) -> reqwest::StatusCode {
        let status = self
            .http
            .post(self.url("/api/sync/queue-notify"))
            .bearer_auth(NOTIFY_TOKEN)
            .json(&json!({"source": "sqlserver"}))
            .send()
            .await
            .expect("notify")
            .status();
        assert_eq!(status, 202, "queue-notify answered {status}");
        status
    }

    pub async fn trigger(&self, direction: &str) -> Value {
        let r = self
            .http
            .post(self.url("/api/sync/trigger"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "direction": direction }))
            .send()
            .await
            .expect("trigger");
        assert_eq!(r.status(), 200, "trigger answered {}", r.status());
        r.json().await.expect("trigger json")
    }

    /// `GET /api/sync/status`, or the error while the agent does not answer.
    async fn get_status(&self) -> reqwest::Result<Value> {
        self.http
            .get(self.url("/api/sync/status"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await
    }

    pub async fn status(&self) -> Value {
        self.get_status().await.expect("status")
    }

    /// Posts a webhook body with the shared secret (or `secret` when given), as Supabase's
    /// Database Webhooks do.
    pub async fn webhook(
        &self,
        body: &Value,
        secret: Option<&str>,
    ) -> (reqwest::StatusCode, Value) {
        let r = self
            .http
            .post(self.url("/api/sync/webhook"))
            .bearer_auth(secret.unwrap_or(WEBHOOK_SECRET))
            .json(body)
            .send()
            .await
            .expect("webhook");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts a webhook as [`Self::webhook`] does and checks that the agent accepted it.
    pub async fn webhook_accepted(&self, body: &Value) {
        let (status, body) = self.webhook(body, None).await;
        assert_eq!(
            (status.as_u16(), body["status"].clone()),
            (200, json!("accepted"))
        );
    }

    /// Rows of a query on the Supabase side.
    pub async fn pg_rows(&self, sql: &str) -> Vec<Value> {
        self.db.query_json(sql).await.expect("PostgreSQL query")
    }

    /// Waits until `GET /api/sync/status` satisfies `condition`; returns that status.
    pub async fn wait_status(&self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut recheck = tokio::time::interval(Duration::from_millis(10));
        loop {
            let status = self.status().await;
            if condition(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}; last status {status}"
            );
            recheck.tick().await;
        }
    }

    /// Waits until the reverse inbox is empty (every accepted event applied or skipped).
    pub async fn wait_inbox_empty(&self) {
        self.wait_status("inbox empty", |s| {
            s["reverse"]["inbox"]["depth"] == json!(0)
        })
        .await;
    }
}

/// A port nothing listens on now, for a binary to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until an agent answers `GET {base}/health` (a binary that has just been started).
pub async fn wait_listening(http: &reqwest::Client, base: &str) {
    wait_for("agent listening", || {
        let (http, url) = (http.clone(), format!("{base}/health"));
        async move { http.get(url).send().await.is_ok() }
    })
    .await;
}

/// Polls `condition` until it holds or [`DEADLINE`] passes (then panics naming `what`).
/// This is the tests' only way to wait: on a condition, with a deadline.
pub async fn wait_for<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut recheck = tokio::time::interval(Duration::from_millis(10));
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        recheck.tick().await;
    }
}
