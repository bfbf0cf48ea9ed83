//! The real binary: a bad `.env` is named and refused with exit code 78, and a running agent
//! never writes a secret to its logs.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_syncbridge");
const PASSWORD: &str = "Sup3r-Secret-Pa55word";

#[test]
fn a_bad_env_file_names_every_problem_and_exits_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "MSSQL_CONNECTION_STRING='Server=localhost;Password={PASSWORD}'\nSUPABASE_URL=not a url\nSUPABASE_SERVICE_ROLE_KEY=sb_publishable_x\nSYNC_BATCH_SIZE=0\n"
        ),
    )
    .expect("write .env");
    let out = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .expect("run binary");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".env: line 2 (SUPABASE_URL) cannot be parsed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not a url"),
        "values are not echoed: {stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "password leaked: {stderr}");
    // With the line quoted, every remaining problem is named at once.
    let fixed = std::fs::read_to_string(dir.path().join(".env"))
        .expect("read")
        .replace("=not a url", "='not a url'");
    std::fs::write(dir.path().join(".env"), fixed).expect("write");
    let out = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .expect("run binary");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "SUPABASE_WEBHOOK_SECRET",
        "SYNC_ADMIN_TOKEN",
        "SYNC_BATCH_SIZE",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    assert!(!stderr.contains(PASSWORD), "password leaked: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_never_logs_secrets() {
    let db = TestDb::create().await.expect("db");
    let keys = ApiKeys::generate();
    let rest = FakePostgrest::start(db.url(), keys.clone())
        .await
        .expect("rest");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .arg("run")
        .current_dir(data.path())
        .env_clear()
        .env("RUST_LOG", "debug")
        // Nothing listens on port 1: SQL Server stays unreachable, the agent keeps trying.
        .env(
            "MSSQL_CONNECTION_STRING",
            format!("Server=127.0.0.1,1;Database=Clinic;User Id=sync;Password={PASSWORD}"),
        )
        .env("SUPABASE_URL", rest.url())
        .env("SUPABASE_SERVICE_ROLE_KEY", keys.service_role_jwt())
        .env("SUPABASE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("SYNC_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SYNC_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SYNC_BACKOFF_BASE", "100ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agent");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("agent listening", || {
        let (http, url) = (http.clone(), format!("{base}/health"));
        async move { http.get(url).send().await.is_ok() }
    })
    .await;
    let hook = hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(NOTE_A, "x", "2026-11-25T10:00:00+00:00")),
        None,
    );
    let wrong = http
        .post(format!("{base}/api/sync/webhook"))
        .bearer_auth("guess-guess-guess-guess-guess")
        .json(&hook)
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 401);
    let right = http
        .post(format!("{base}/api/sync/webhook"))
        .bearer_auth(WEBHOOK_SECRET)
        .json(&hook)
        .send()
        .await
        .expect("post");
    assert_eq!(
        right.status(),
        503,
        "not ready until SQL Server has been reached once"
    );
    let notify = http
        .post(format!("{base}/api/sync/queue-notify"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("notify");
    assert_eq!(notify.status(), 202);
    // The first attempt to reach SQL Server may still be under way: wait for its verdict.
    wait_for("the start-up problem named", || {
        let (http, url) = (http.clone(), format!("{base}/api/sync/status"));
        async move {
            let Ok(r) = http.get(url).bearer_auth(ADMIN_TOKEN).send().await else {
                return false;
            };
            let status: serde_json::Value = r.json().await.unwrap_or_default();
            status["agent"]["startup_problem"]
                .as_str()
                .unwrap_or("")
                .contains("SQL Server")
        }
    })
    .await;
    child.kill().expect("stop agent");
    let _ = child.wait();
    let mut logs = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut logs)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("read stderr");
    assert!(logs.contains("waiting for SQL Server"), "{logs}");
    assert!(logs.contains("webhook refused"), "{logs}");
    for secret in [
        PASSWORD,
        WEBHOOK_SECRET,
        ADMIN_TOKEN,
        keys.service_role_jwt(),
        "guess-guess-guess-guess-guess",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}
