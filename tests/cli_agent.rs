//! The real binary as the clinic runs it, with SQL Server unreachable: `status` and
//! `retry-failed` ask the running agent, then read SQL Server and the inbox themselves once it
//! is stopped; `GET /metrics` shows the SQL Server outage; the agent writes a daily log file
//! (`syncbridge.YYYY-MM-DD.log`), keeps only `SYNC_LOG_KEEP_DAYS` of them, one line per event,
//! with no ANSI codes and no secret in it or on its piped stdout; SIGTERM stops it with exit 0.
//! On a first start it makes its log directory; one that cannot be made is a bad setting.
#![cfg(unix)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::*;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_syncbridge");
const PASSWORD: &str = "Sup3r-Secret-Pa55word";
const GUESS: &str = "guess-guess-guess-guess-guess";

/// The settings of this test's `.env`, given as the environment.
fn settings(rest: &str, key: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        (
            "MSSQL_CONNECTION_STRING",
            format!("Server=127.0.0.1,1;Database=Clinic;User Id=sync;Password={PASSWORD}"),
        ),
        ("SUPABASE_URL", rest.to_owned()),
        ("SUPABASE_SERVICE_ROLE_KEY", key.to_owned()),
        ("SUPABASE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("SYNC_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("SYNC_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("SYNC_BACKOFF_BASE", "100ms".to_owned()),
        ("SYNC_LOG_KEEP_DAYS", "3".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ]
}

fn command(dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear();
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

/// The Supabase side: a fresh database behind the PostgREST stand-in, and its keys.
async fn supabase() -> (TestDb, ApiKeys, FakePostgrest) {
    let db = TestDb::create().await.expect("db");
    let keys = ApiKeys::generate();
    let rest = FakePostgrest::start(db.url(), keys.clone())
        .await
        .expect("rest");
    (db, keys, rest)
}

/// `syncbridge run` in `dir`, its stdout and stderr piped.
fn run(dir: &Path, env: &[(&'static str, String)]) -> Child {
    command(dir, env, &["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agent")
}

fn syncbridge(dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> Output {
    command(dir, env, args).output().expect("run binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn terminate(child: &mut Child) -> Option<i32> {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    child.wait().expect("wait").code()
}

async fn post(http: &reqwest::Client, url: String, token: &str) -> u16 {
    let body = hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(NOTE_A, "x", "2026-11-25T10:00:00+00:00")),
        None,
    );
    http.post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_retry_failed_metrics_and_log_files_of_the_real_binary() {
    let (_db, keys, rest) = supabase().await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = settings(&rest.url(), keys.service_role_jwt(), port);
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs dir");
    for day in 1..=5 {
        std::fs::write(logs.join(format!("syncbridge.2020-01-0{day}.log")), "old\n")
            .expect("old log");
    }
    let mut agent = run(dir.path(), &env);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_listening(&http, &base).await;
    assert_eq!(
        post(&http, format!("{base}/api/sync/webhook"), GUESS).await,
        401
    );
    assert_eq!(
        post(&http, format!("{base}/api/sync/webhook"), WEBHOOK_SECRET).await,
        503
    );

    // status asks the agent: running, not ready, and why.
    let out = syncbridge(dir.path(), &env, &["status"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not ready: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("the agent is running, NOT ready"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  start-up        SQL Server unavailable"),
        "{stdout}"
    );
    let out = syncbridge(dir.path(), &env, &["status", "--json"]);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status --json is JSON alone");
    assert_eq!(json["agent"]["running"], serde_json::json!(true));
    assert!(
        json["forward"]["queue"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("SQL Server is unavailable")),
        "{json}"
    );

    let out = syncbridge(dir.path(), &env, &["retry-failed"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the SQL Server part failed: {stdout}"
    );
    assert!(
        stdout.contains("Failed queue items back to Pending: FAILED: SQL Server is unavailable"),
        "{stdout}"
    );
    assert!(stdout.contains("dead inbox events revived: 0"), "{stdout}");
    assert!(
        stdout.contains(&format!("done by the agent on 127.0.0.1:{port}")),
        "{stdout}"
    );

    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "syncbridge_ready 0",
        "syncbridge_outage{side=\"sqlserver\"} 1",
        "syncbridge_inbox_depth 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }

    assert_eq!(terminate(&mut agent), Some(0), "SIGTERM is a clean stop");
    let mut console = String::new();
    agent
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut console)
        .expect("stdout");
    agent
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut console)
        .expect("stderr");

    // Stopped: both commands say so and read SQL Server (unreachable) and the inbox themselves.
    let out = syncbridge(dir.path(), &env, &["status"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(&format!(
            "the agent is NOT running (no agent answers on 127.0.0.1:{port}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("  queue           cannot be read: SQL Server is unavailable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  inbox           0 waiting (oldest -) · 0 dead"),
        "{stdout}"
    );
    let out = syncbridge(
        dir.path(),
        &env,
        &["retry-failed", "--table", "aligner_notes"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("done directly; the agent takes them up when it starts"),
        "{stdout}"
    );

    // The log files: today's (UTC) beside the two newest old ones, every line an event.
    let today = format!("syncbridge.{}.log", chrono::Utc::now().format("%Y-%m-%d"));
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .expect("logs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        3,
        "SYNC_LOG_KEEP_DAYS=3 keeps three files: {names:?}"
    );
    assert!(names.contains(&today), "{names:?}");
    let file = std::fs::read_to_string(logs.join(&today)).expect("today's log");
    for expected in [
        "waiting for SQL Server",
        "webhook refused",
        "retry-failed",
        "shutdown signal received",
    ] {
        assert!(file.contains(expected), "{expected:?} not logged:\n{file}");
    }
    for (name, written) in [("log file", &file), ("console", &console)] {
        assert!(
            !written.contains('\u{1b}'),
            "ANSI codes in the {name}:\n{written}"
        );
        for secret in [
            PASSWORD,
            WEBHOOK_SECRET,
            ADMIN_TOKEN,
            keys.service_role_jwt(),
            GUESS,
        ] {
            assert!(
                !written.contains(secret),
                "a secret reached the {name}: {secret}"
            );
        }
    }
    for line in file.lines() {
        let stamp = line.get(..4).unwrap_or("");
        assert!(
            stamp.bytes().all(|b| b.is_ascii_digit()),
            "not one line per event: {line:?}"
        );
    }
}

/// A clinic's first start: `SYNC_LOG_DIR` (default `logs`, beside the `.env`) does not exist
/// yet. The agent makes it and logs into it, and its console carries nothing but its own
/// lines (tracing-appender, asked to prune a directory that is not there, prints an error of
/// its own to stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_makes_its_log_directory_and_says_nothing_of_it_missing() {
    let (_db, keys, rest) = supabase().await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = settings(&rest.url(), keys.service_role_jwt(), port);
    let logs = dir.path().join("logs");
    assert!(!logs.exists());
    let mut agent = run(dir.path(), &env);
    let http = reqwest::Client::new();
    wait_listening(&http, &format!("http://127.0.0.1:{port}")).await;
    assert_eq!(terminate(&mut agent), Some(0), "SIGTERM is a clean stop");
    let mut stderr = String::new();
    agent
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let today = format!("syncbridge.{}.log", chrono::Utc::now().format("%Y-%m-%d"));
    let file = std::fs::read_to_string(logs.join(&today)).expect("today's log in the new dir");
    assert!(file.contains("shutdown signal received"), "{file}");
    assert!(
        !stderr.contains("Error reading the log directory"),
        "the missing directory was reported: {stderr}"
    );
}

/// A `SYNC_LOG_DIR` that cannot be a directory (a file stands there) is a bad setting, named,
/// exit 78, now that the agent makes the directory itself as well as when the appender did.
#[test]
fn a_log_directory_that_cannot_be_made_is_a_bad_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("taken"), "a file, not a directory\n").expect("file");
    let port = free_port();
    let keys = ApiKeys::generate();
    let mut env = settings("http://127.0.0.1:9", keys.service_role_jwt(), port);
    env.push(("SYNC_LOG_DIR", "taken/logs".to_owned()));
    let out = syncbridge(dir.path(), &env, &["run"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}{}", text(&out.stdout));
    assert!(stderr.contains("SYNC_LOG_DIR"), "{stderr}");
    assert!(stderr.contains("cannot hold the log files"), "{stderr}");
}
