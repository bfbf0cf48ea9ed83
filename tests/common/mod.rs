//! Shared harness for the end-to-end tests: a real PostgreSQL database (fresh per test), the
//! PostgREST-compatible test server over it, the in-memory SQL Server double, and a real agent
//! started on 127.0.0.1:0, spoken to over HTTP.
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
use tokio_util::sync::CancellationToken;

mod fixtures;
pub mod mssql;
pub mod mssql_e2e;

// Each test binary uses a different part of the fixtures.
#[allow(unused_imports)]
pub use fixtures::*;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const NOTIFY_TOKEN: &str = "test-notify-token-0123456789abcdef";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789abcdef";
/// Generous: CI machines are small and shared; every wait returns as soon as its condition holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    LegacyJwt,
    SecretKey,
}

/// Knobs a test may turn before starting its agent.
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
    /// The SQL Server double to use (default: the sample clinic schema).
    pub store: Option<MemoryStore>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            key_style: KeyStyle::LegacyJwt,
            wrong_key: false,
            backoff_base: "50ms",
            backoff_cap: "400ms",
            batch_size: 50,
            max_attempts: 10,
            timeout: "2s",
            map: TableMap::sample_clinic(),
            signing_secret: None,
            setup_sql: "",
            store: None,
        }
    }
}

pub struct Harness {
    pub db: TestDb,
    pub rest: FakePostgrest,
    pub keys: ApiKeys,
    pub store: MemoryStore,
    pub data_dir: Arc<TempDir>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub options_map: TableMap,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The agent's configuration: `mssql` is its MSSQL_CONNECTION_STRING and `agent_id` its
/// SYNC_AGENT_ID; the rest comes from the test server, the data directory and `o`.
pub fn config(
    mssql: &str,
    agent_id: &str,
    rest_url: &str,
    key: String,
    data_dir: &TempDir,
    o: &Options,
) -> Config {
    let pairs = vec![
        ("MSSQL_CONNECTION_STRING", mssql.to_owned()),
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
        ("SYNC_AGENT_ID", agent_id.to_owned()),
        (
            "SUPABASE_WEBHOOK_SIGNING_SECRET",
            o.signing_secret.unwrap_or("").to_owned(),
        ),
        ("SYNC_MAX_BODY_BYTES", "65536".to_owned()),
    ];
    let lookup = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    Config::from_lookup(&lookup).expect("test configuration is valid")
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(o: Options) -> Self {
        let db = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        let keys = ApiKeys::generate();
        if !o.setup_sql.is_empty() {
            db.client()
                .batch_execute(o.setup_sql)
                .await
                .expect("setup SQL");
        }
        let rest = FakePostgrest::start(db.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let store = o.store.clone().unwrap_or_else(MemoryStore::sample_clinic);
        let data_dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut h = Self {
            db,
            rest,
            keys,
            store,
            data_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::new(),
            options_map: o.map.clone(),
            shutdown: CancellationToken::new(),
            task: None,
        };
        h.launch(&o).await;
        h
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

    /// Starts (or restarts) the agent over the same database, double and data directory.
    pub async fn launch(&mut self, o: &Options) {
        let config = config(
            "Server=127.0.0.1,1;Database=Clinic;User Id=sa;Password=unused-in-tests",
            "memory-agent",
            &self.rest.url(),
            self.key(o),
            &self.data_dir,
            o,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.addr = listener.local_addr().expect("addr");
        self.shutdown = CancellationToken::new();
        let agent = Agent {
            config,
            store: Arc::new(self.store.clone()),
            map: o.map.clone(),
        };
        self.task = Some(tokio::spawn(syncbridge::run(
            agent,
            listener,
            self.shutdown.clone(),
        )));
        let url = self.url("/api/sync/status");
        let http = self.http.clone();
        wait_for("agent ready and caught up", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(url).bearer_auth(ADMIN_TOKEN).send().await;
                match r {
                    // Ready, and the start-up catch-up has run (so its reads do not meet the
                    // faults a test injects next).
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .map(|v| {
                            v["agent"]["ready"] == json!(true)
                                && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
                        })
                        .unwrap_or(false),
                    Err(_) => false,
                }
            }
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
        self.http
            .post(self.url("/api/sync/queue-notify"))
            .bearer_auth(NOTIFY_TOKEN)
            .json(&json!({"source": "sqlserver"}))
            .send()
            .await
            .expect("notify")
            .status()
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

    pub async fn status(&self) -> Value {
        self.http
            .get(self.url("/api/sync/status"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// Posts a webhook body with the shared secret (or `secret` when given).
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

    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        self.db.query_json(sql).await.expect("query")
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

    /// Waits until the SQL Server double satisfies `condition`.
    pub async fn wait_store(&self, what: &str, condition: impl Fn(&MemoryStore) -> bool) {
        let store = self.store.clone();
        let condition = &condition;
        wait_for(what, || {
            let store = store.clone();
            async move { condition(&store) }
        })
        .await;
    }

    /// Waits until the reverse inbox is empty (every accepted event applied or skipped).
    pub async fn wait_inbox_empty(&self) {
        self.wait_status("inbox empty", |s| {
            s["reverse"]["inbox"]["depth"] == json!(0)
        })
        .await;
    }

    /// Waits until the forward queue has no Pending item and the last drain finished.
    pub async fn wait_synced(&self) {
        let store = self.store.clone();
        wait_for("queue drained", || {
            let store = store.clone();
            async move { store.queue().iter().all(|q| q.status != "Pending") }
        })
        .await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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
