//! The real binary as a process, over the out-of-process SQL Server double
//! (`syncbridge::test_support::remote::RemoteServer`, hosted here) and the PostgREST test server
//! over a fresh PostgreSQL database: started in its own directory with a `.env`, waited on
//! (`/api/sync/status` says ready and caught up), killed with SIGKILL, stopped with SIGTERM or
//! SIGINT, restarted over the same data directory; its stdout and stderr kept in files.
#![cfg(unix)]

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::test_support::remote::RemoteServer;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tempfile::TempDir;
use tokio::time::Instant;

use super::{free_port, wait_for, BothSides, ADMIN_TOKEN, NOTIFY_TOKEN, WEBHOOK_SECRET};

mod both_sides;

const BIN: &str = env!("CARGO_BIN_EXE_syncbridge");

/// Both sides of a process test: the SQL Server double served to the binaries, and Supabase.
pub struct Sides {
    pub double: RemoteServer,
    pub db: TestDb,
    pub rest: FakePostgrest,
    pub keys: ApiKeys,
    pub http: reqwest::Client,
}

impl BothSides for Sides {
    fn memory(&self) -> &MemoryStore {
        self.double.store()
    }

    fn rest_url(&self) -> String {
        self.rest.url()
    }

    fn service_key(&self) -> String {
        self.keys.service_role_jwt().to_owned()
    }
}

impl Sides {
    /// The sample clinic double, a fresh Supabase database and the test server over it.
    pub async fn start() -> Self {
        let db = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        let keys = ApiKeys::generate();
        let rest = FakePostgrest::start(db.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let double = RemoteServer::start(MemoryStore::sample_clinic())
            .await
            .expect("the SQL Server double");
        Self {
            double,
            db,
            rest,
            keys,
            http: reqwest::Client::new(),
        }
    }

    pub fn sql(&self) -> &MemoryStore {
        self.double.store()
    }

    /// The settings every binary here runs with; `extra` overrides or adds.
    fn settings(&self, agent_id: &str, port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("MSSQL_CONNECTION_STRING", self.double.connection_string()),
            ("SUPABASE_URL", self.rest.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", self.service_key()),
            ("SUPABASE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("SYNC_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("SYNC_NOTIFY_TOKEN", NOTIFY_TOKEN.to_owned()),
            ("SYNC_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("SYNC_AGENT_ID", agent_id.to_owned()),
            // Short, so a fault test recovers within its deadline once the fault ends.
            ("SYNC_BACKOFF_BASE", "50ms".to_owned()),
            ("SYNC_BACKOFF_CAP", "400ms".to_owned()),
            ("SYNC_MAX_ATTEMPTS", "3".to_owned()),
            // The shortest lease the configuration allows.
            ("SYNC_CLAIM_LEASE", "5s".to_owned()),
            ("SUPABASE_TIMEOUT", "2s".to_owned()),
            ("SYNC_LOG_KEEP_DAYS", "0".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    /// A binary named `agent_id` (its `SYNC_AGENT_ID`), started and waited on until ready.
    pub async fn agent(&self, agent_id: &str, extra: &[(&str, &str)]) -> AgentProcess {
        let mut agent = self.spawn(agent_id, extra);
        agent.wait_ready(self).await;
        agent
    }

    /// A binary started but not waited on.
    pub fn spawn(&self, agent_id: &str, extra: &[(&str, &str)]) -> AgentProcess {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let env = self.settings(agent_id, port, extra);
        let dotenv: String = env.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
        std::fs::write(dir.path().join(".env"), dotenv).expect("write .env");
        let mut agent = AgentProcess {
            dir,
            port,
            child: None,
            starts: 0,
        };
        agent.start();
        agent
    }
}

/// One `syncbridge run` process and its directory (`.env`, `data/`, console files).
pub struct AgentProcess {
    pub dir: TempDir,
    pub port: u16,
    child: Option<Child>,
    starts: u32,
}

/// How a stopped binary ended.
#[derive(Debug)]
pub struct Exit {
    pub code: Option<i32>,
    /// From the signal to the process's end.
    pub took: Duration,
}

impl AgentProcess {
    fn console_file(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// Starts (or restarts) the binary in its directory; its output goes to `console.log`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let open = || -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.console_file())
                .expect("console file")
        };
        let child = Command::new(BIN)
            .arg("run")
            .current_dir(self.dir.path())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(open())
            .stderr(open())
            .spawn()
            .expect("start the binary");
        self.child = Some(child);
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Everything the binary wrote to stdout and stderr, over all its runs.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.console_file()).unwrap_or_default()
    }

    /// Asserts the process has not exited (with its console if it has).
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("started");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the binary exited ({status}):\n{}", self.console());
        }
    }

    /// Waits until the binary answers `/health`.
    pub async fn wait_listening(&self, sides: &Sides) {
        let url = self.url("/health");
        wait_for("the binary listening", || {
            self.assert_running_ref();
            let (http, url) = (sides.http.clone(), url.clone());
            async move { http.get(url).send().await.is_ok() }
        })
        .await;
    }

    fn assert_running_ref(&self) {
        // `wait_for`'s condition is `Fn`: the exit is checked through the pid's /proc entry.
        if let Some(child) = &self.child {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()));
            let zombie = stat.is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
            assert!(!zombie, "the binary exited:\n{}", self.console());
        }
    }

    /// Waits until the binary is ready and its start-up catch-up has run.
    pub async fn wait_ready(&mut self, sides: &Sides) {
        self.assert_running();
        let url = self.url("/api/sync/status");
        wait_for("the binary ready and caught up", || {
            self.assert_running_ref();
            let (http, url) = (sides.http.clone(), url.clone());
            async move {
                let Ok(r) = http.get(url).bearer_auth(ADMIN_TOKEN).send().await else {
                    return false;
                };
                r.json::<Value>().await.is_ok_and(|v| {
                    v["agent"]["ready"] == json!(true)
                        && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
                })
            }
        })
        .await;
    }

    /// SIGKILL: no chance to settle, release or flush anything.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// Sends `signal` (`TERM`, `INT`) and waits up to `bound` for the process to end.
    pub async fn stop_with(&mut self, signal: &str, bound: Duration) -> Exit {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal}");
        let sent_at = Instant::now();
        let mut recheck = tokio::time::interval(Duration::from_millis(10));
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Exit {
                    code: status.code(),
                    took: sent_at.elapsed(),
                };
            }
            if sent_at.elapsed() > bound {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no exit within {bound:?} of SIG{signal}:\n{}",
                    self.console()
                );
            }
            recheck.tick().await;
        }
    }

    /// Waits up to `bound` for the process to end by itself (a start-up it refuses).
    pub async fn wait_exit(&mut self, bound: Duration) -> Exit {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let mut recheck = tokio::time::interval(Duration::from_millis(10));
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Exit {
                    code: status.code(),
                    took: started.elapsed(),
                };
            }
            if started.elapsed() > bound {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit within {bound:?}:\n{}", self.console());
            }
            recheck.tick().await;
        }
    }

    /// What `sp_NotifyAppOfSync` does.
    pub async fn notify(&self, http: &reqwest::Client) {
        let status = http
            .post(self.url("/api/sync/queue-notify"))
            .bearer_auth(NOTIFY_TOKEN)
            .json(&json!({"source": "sqlserver"}))
            .send()
            .await
            .expect("notify")
            .status();
        assert_eq!(status, 202, "queue-notify answered {status}");
    }

    /// Posts a webhook with the shared secret; returns the status.
    pub async fn webhook(&self, http: &reqwest::Client, body: &Value) -> u16 {
        http.post(self.url("/api/sync/webhook"))
            .bearer_auth(WEBHOOK_SECRET)
            .json(body)
            .send()
            .await
            .expect("webhook")
            .status()
            .as_u16()
    }

    pub async fn status(&self, http: &reqwest::Client) -> Value {
        http.get(self.url("/api/sync/status"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// The process's resident memory (`VmRSS`) in KiB, while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Whether a process is running (started and not yet stopped by the test).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
