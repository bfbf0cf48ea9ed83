//! What every scenario stands on: a fresh Supabase database behind the PostgREST-compatible
//! test server, optionally behind a latency proxy (the WAN), and the agent over the SQL Server
//! double, started in this process and ready.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use syncbridge::config::KeyKind;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::supabase::PostgrestClient;
use syncbridge::{Agent, Config};
use syncbridge_testkit::{ApiKeys, FakePostgrest, LatencyProxy, TestDb};
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "bench-admin-token-0123456789abcdef";
pub const NOTIFY: &str = "bench-notify-token-0123456789abcdef";
pub const SECRET: &str = "bench-webhook-secret-0123456789abcdef";

/// The Supabase side of one scenario.
pub struct Side {
    pub db: TestDb,
    pub rest: FakePostgrest,
    pub keys: ApiKeys,
    /// Between the agent (or the direct client) and the REST server, when a round trip is set.
    pub wan: Option<LatencyProxy>,
}

impl Side {
    pub async fn start(round_trip: Duration) -> Side {
        let db = TestDb::create()
            .await
            .expect("test database: run `eval \"$(scripts/pg-test-env.sh)\"` first");
        let keys = ApiKeys::generate();
        let rest = FakePostgrest::start(db.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let wan = if round_trip.is_zero() {
            None
        } else {
            Some(
                LatencyProxy::start(rest.addr(), round_trip)
                    .await
                    .expect("latency proxy"),
            )
        };
        Side {
            db,
            rest,
            keys,
            wan,
        }
    }

    /// The URL clients use: through the WAN when there is one.
    pub fn url(&self) -> String {
        match &self.wan {
            Some(wan) => wan.url(),
            None => self.rest.url(),
        }
    }

    /// The agent's own PostgREST client, for the direct (no agent) measurements.
    pub fn client(&self) -> PostgrestClient {
        self.client_at(&self.url())
    }

    /// A client that skips the WAN (for seeding).
    pub fn direct_client(&self) -> PostgrestClient {
        self.client_at(&self.rest.url())
    }

    fn client_at(&self, url: &str) -> PostgrestClient {
        let url = url::Url::parse(url).expect("url");
        let key = SecretString::from(self.keys.service_role_jwt().to_owned());
        PostgrestClient::new(&url, &key, KeyKind::LegacyJwt, Duration::from_secs(60))
            .expect("client")
    }

    pub async fn count(&self, table: &str) -> i64 {
        let rows = self
            .db
            .query_json(&format!("SELECT count(*) AS n FROM {table}"))
            .await
            .expect("count");
        rows[0]["n"].as_i64().unwrap_or(-1)
    }
}

/// The agent's settings as `(name, value)` pairs (also what a child process gets).
pub fn settings(
    side_url: &str,
    key: &str,
    data_dir: &str,
    batch: Option<usize>,
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = [
        (
            "MSSQL_CONNECTION_STRING",
            "Server=127.0.0.1,1;Database=Bench;User Id=sa;Password=unused",
        ),
        ("SUPABASE_URL", side_url),
        ("SUPABASE_SERVICE_ROLE_KEY", key),
        ("SUPABASE_WEBHOOK_SECRET", SECRET),
        ("SYNC_ADMIN_TOKEN", ADMIN),
        ("SYNC_NOTIFY_TOKEN", NOTIFY),
        ("SUPABASE_TIMEOUT", "60s"),
        ("SYNC_DATA_DIR", data_dir),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(batch) = batch {
        pairs.push(("SYNC_BATCH_SIZE".to_owned(), batch.to_string()));
    }
    // For trying another pipeline depth than the default (main.rs).
    if let Ok(depth) = std::env::var("BENCH_PIPELINE_DEPTH") {
        pairs.push(("SYNC_PIPELINE_DEPTH".to_owned(), depth));
    }
    pairs
}

pub fn config(pairs: Vec<(String, String)>) -> Config {
    let lookup = move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Config::from_lookup(&lookup).expect("config")
}

/// A running agent in this process.
pub struct Running {
    pub store: MemoryStore,
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Running {
    /// The agent over `store` and `side`, ready. `batch`: `SYNC_BATCH_SIZE`, default if `None`.
    pub async fn start(
        side: &Side,
        store: MemoryStore,
        map: TableMap,
        batch: Option<usize>,
    ) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().display().to_string();
        let config = config(settings(
            &side.url(),
            side.keys.service_role_jwt(),
            &data,
            batch,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let agent = Agent {
            config,
            store: Arc::new(store.clone()),
            map,
        };
        tokio::spawn(syncbridge::run(agent, listener, shutdown.clone()));
        let running = Running {
            store,
            base,
            http: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        };
        wait_ready(&running.http, &running.base).await;
        running
    }

    /// What `sp_NotifyAppOfSync` does.
    pub async fn notify(&self) {
        notify(&self.http, &self.base).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn notify(http: &reqwest::Client, base: &str) {
    let status = http
        .post(format!("{base}/api/sync/queue-notify"))
        .bearer_auth(NOTIFY)
        .json(&json!({"source": "sqlserver"}))
        .send()
        .await
        .expect("notify")
        .status();
    assert_eq!(status, 202, "queue-notify");
}

/// Waits (60 s at most) until the agent at `base` says it is ready and its start-up
/// catch-up is done: a first start reads the seeded rows of the reverse-synced tables back
/// from Supabase and applies them to SQL Server, once in a clinic's life. Measured runs start
/// after it, so that what they measure is the burst alone.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = http
            .get(format!("{base}/api/sync/status"))
            .bearer_auth(ADMIN)
            .send()
            .await;
        if let Ok(r) = status {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            // A failed catch-up is retried later, perhaps inside the measured run: wait on.
            let reverse = &v["reverse"];
            let caught_up = !reverse["state"]["catchup_last_run_at"].is_null()
                && reverse["state"]["catchup_last_error"].is_null()
                && reverse["inbox"]["depth"] == json!(0);
            if v["agent"]["ready"] == json!(true) && caught_up {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "agent never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
