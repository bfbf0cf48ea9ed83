//! The real agent with the tiberius store over a bench database, in this process: wired as
//! tests/common (E2e) wires it, with the bench's settings (`env::settings`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::Agent;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::sqldb::SqlDb;
use crate::env::{self, Side, ADMIN};
use crate::workload;

/// `SYNC_AGENT_ID`: what the agent's claims stamp on `SyncQueue.ClaimedBy`.
const AGENT_ID: &str = "mssql-bench-agent";
/// Connections in the store's pool, as `Agent::from_config` opens it.
const POOL_SIZE: u32 = 4;

pub struct TdsAgent {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    /// Stops the agent when a failed assertion unwinds past it.
    _stop_on_drop: DropGuard,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TdsAgent {
    /// The agent over `db` and `side` at `SYNC_BATCH_SIZE` `batch`, ready and past its start-up
    /// catch-up (so that catch-up's reads do not share the measured window).
    pub async fn start(side: &Side, db: &SqlDb, batch: usize) -> TdsAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().display().to_string();
        let mut pairs = env::settings(
            &side.url(),
            side.keys.service_role_jwt(),
            &data,
            Some(batch),
        );
        for (name, value) in &mut pairs {
            if name == "MSSQL_CONNECTION_STRING" {
                value.clone_from(&db.ado);
            }
        }
        pairs.push(("SYNC_AGENT_ID".to_owned(), AGENT_ID.to_owned()));
        let config = env::config(pairs);
        let tds = config
            .mssql_config()
            .expect("the bench database's ADO string parses");
        let store = Arc::new(TdsStore::new(tds, config.agent_id.clone(), POOL_SIZE));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let agent = Agent {
            config,
            store,
            map: workload::bench_map(),
        };
        let task = tokio::spawn(syncbridge::run(agent, listener, shutdown.clone()));
        let running = TdsAgent {
            base,
            http: reqwest::Client::new(),
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            task,
            _dir: dir,
        };
        running.wait_ready().await;
        running
    }

    async fn wait_ready(&self) {
        super::wait_for("agent ready and caught up", || async {
            // A fatal start (the map does not match the database) fails at once, not at the
            // deadline.
            assert!(
                !self.task.is_finished(),
                "the agent stopped during start-up"
            );
            let status = self
                .http
                .get(format!("{}/api/sync/status", self.base))
                .bearer_auth(ADMIN)
                .send()
                .await;
            let Ok(status) = status else { return false };
            let v: serde_json::Value = status.json().await.unwrap_or_default();
            v["agent"]["ready"] == json!(true)
                && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
        })
        .await;
    }

    /// What `sp_NotifyAppOfSync` does (switched off in the bench database).
    pub async fn notify(&self) {
        env::notify(&self.http, &self.base).await;
    }

    /// Stops the agent gracefully and waits for it (its connections close before the
    /// database is dropped).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the agent stops within 60 s")
            .expect("agent task")
            .expect("the agent ran cleanly");
    }
}
