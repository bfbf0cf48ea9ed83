//! The real agent with the tiberius store over a test's own SQL Server database
//! ([`super::mssql::SqlDb`]), a fresh PostgreSQL database and the PostgREST-compatible server,
//! for tests/mssql_e2e_*.rs.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::Agent;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::mssql::SqlDb;
use super::{config, wait_for, Options, ADMIN_TOKEN, WEBHOOK_SECRET};

/// The real agent over `sql`, a fresh PostgreSQL database and the PostgREST-compatible server.
pub struct E2e {
    pub sql: SqlDb,
    pg: TestDb,
    _rest: FakePostgrest,
    _data_dir: TempDir,
    addr: SocketAddr,
    http: reqwest::Client,
    shutdown: CancellationToken,
    /// Stops the agent when a failing test unwinds.
    _stop_on_drop: DropGuard,
    task: JoinHandle<anyhow::Result<()>>,
}

impl E2e {
    /// Starts the agent and waits until it is ready and its start-up catch-up has run.
    pub async fn start(sql: SqlDb) -> Self {
        sql.assert_ado_reaches_it().await;
        let pg = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        let keys = ApiKeys::generate();
        let rest = FakePostgrest::start(pg.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let data_dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            // Short, so the outage test recovers within the deadline once SQL Server is back.
            backoff_base: "50ms",
            backoff_cap: "400ms",
            timeout: "5s",
            ..Options::default()
        };
        let config = config(
            &sql.ado,
            "mssql-e2e-agent",
            &rest.url(),
            keys.service_role_jwt().to_owned(),
            &data_dir,
            &options,
        );
        let tds = TdsStore::new(
            config.mssql_config().expect("ADO string"),
            config.agent_id.clone(),
            4,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let agent = Agent {
            config,
            store: Arc::new(tds),
            map: TableMap::sample_clinic(),
        };
        let task = tokio::spawn(syncbridge::run(agent, listener, shutdown.clone()));
        let e = Self {
            sql,
            pg,
            _rest: rest,
            _data_dir: data_dir,
            addr,
            http: reqwest::Client::new(),
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            task,
        };
        let this = &e;
        wait_for("agent ready and caught up", move || async move {
            let e = this;
            // A fatal start (e.g. the map does not match the schema) should fail at once.
            assert!(!e.task.is_finished(), "the agent stopped during start-up");
            e.get_status().await.is_ok_and(|v| {
                v["agent"]["ready"] == json!(true)
                    && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
            })
        })
        .await;
        e
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What sp_NotifyAppOfSync does.
    pub async fn notify(&self) {
        let r = self
            .http
            .post(self.url("/api/sync/queue-notify"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"source": "sqlserver"}))
            .send()
            .await
            .expect("notify");
        assert_eq!(r.status(), 202, "queue-notify answered {}", r.status());
    }

    /// Posts a webhook with the shared secret, as Supabase's Database Webhooks do.
    pub async fn webhook(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/api/sync/webhook"))
            .bearer_auth(WEBHOOK_SECRET)
            .json(body)
            .send()
            .await
            .expect("webhook");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts a webhook as [`Self::webhook`] does and checks that the agent accepted it.
    pub async fn webhook_accepted(&self, body: &Value) {
        let (status, body) = self.webhook(body).await;
        assert_eq!((status, body["status"].clone()), (200, json!("accepted")));
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

    /// Rows of a query on the Supabase side.
    pub async fn pg_rows(&self, sql: &str) -> Vec<Value> {
        self.pg.query_json(sql).await.expect("PostgreSQL query")
    }

    /// Stops the agent gracefully, then drops the SQL Server database.
    pub async fn finish(self) {
        let E2e {
            sql,
            shutdown,
            task,
            ..
        } = self;
        shutdown.cancel();
        task.await.expect("agent task").expect("agent ran cleanly");
        sql.drop_db().await;
    }
}
