//! `syncbridge check --self-test` as the clinic runs it, without a SQL Server: the report says
//! that the server cannot be reached, exit code 1, nothing is attempted on scratch objects, no
//! password is printed; a malformed administrator's connection string is a bad setting (78).
//! The checks themselves run against a real SQL Server in tests/mssql_self_test.rs.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_syncbridge");
const PASSWORD: &str = "Sup3r-Secret-Pa55word";

fn check(admin: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--self-test"])
        .current_dir(dir.path())
        .env_clear()
        // Nothing listens on port 1: SQL Server and Supabase are both unreachable.
        .env(
            "MSSQL_CONNECTION_STRING",
            format!("Server=tcp:127.0.0.1,1;Database=Clinic;User Id=agent;Password={PASSWORD};TrustServerCertificate=true"),
        )
        .env("SUPABASE_URL", "http://127.0.0.1:1")
        .env("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_0123456789abcdef0123456789abcdef")
        .env("SUPABASE_WEBHOOK_SECRET", "test-webhook-secret-0123456789abcdef")
        .env("SYNC_ADMIN_TOKEN", "test-admin-token-0123456789abcdef")
        .env("SYNC_DATA_DIR", dir.path().display().to_string());
    if let Some(admin) = admin {
        cmd.env("MSSQL_SELFTEST_CONNECTION_STRING", admin);
    }
    cmd.output().expect("run binary")
}

#[test]
fn an_unreachable_server_fails_the_self_test_with_a_reason_and_exit_code_1() {
    let out = check(None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("syncbridge check --self-test"), "{stdout}");
    assert!(
        stdout.contains("  FAIL  [server] SQL Server reachable, version 2017 (14.x) or later: "),
        "{stdout}"
    );
    assert!(stdout.contains("        what to do: "), "{stdout}");
    assert!(
        !stdout.contains("[scratch]"),
        "nothing is created on a server that cannot be reached: {stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("self-test FAILED: 1 of 1 checks failed, 0 skipped"),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
}

#[test]
fn a_malformed_administrators_connection_string_is_a_bad_setting() {
    let out = check(Some("Server=tcp:127.0.0.1,1;Encrypt=maybe-not;Password=x"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("MSSQL_SELFTEST_CONNECTION_STRING"),
        "{stderr}"
    );
}
