//! The real binary's `init`: a `.env` with fresh secrets that `check` accepts apart from the
//! unreachable servers, the SQL Server and Supabase lines carrying those secrets, never an
//! overwrite without `--force`, nothing written for a missing or wrong answer; and `check` and
//! `run` refusing `.env.example`'s placeholders by setting name with exit code 78.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_syncbridge");
const PASSWORD: &str = "Sup3r-Secret-Pa55word";
const SERVICE_KEY: &str = "sb_secret_0123456789abcdef0123456789abcdef";

fn syncbridge(dir: &Path, args: &[&str]) -> Output {
    // No terminal on stdin (output() gives none): init must not prompt.
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .expect("run binary")
}

fn init(dir: &Path, extra: &[&str]) -> Output {
    init_with_key(dir, SERVICE_KEY, extra)
}

fn init_with_key(dir: &Path, service_key: &str, extra: &[&str]) -> Output {
    let mssql = format!(
        "Server=tcp:127.0.0.1,1;Database=Clinic;User Id=agent;Password={PASSWORD};TrustServerCertificate=true"
    );
    let dir_arg = dir.display().to_string();
    let mut args = vec![
        "init",
        "--dir",
        &dir_arg,
        "--mssql",
        &mssql,
        "--supabase-url",
        "http://127.0.0.1:1",
        "--service-key",
        service_key,
        "--webhook-url",
        "https://local.clinic.example",
    ];
    args.extend_from_slice(extra);
    // Run from elsewhere: --dir decides where .env goes.
    syncbridge(&std::env::temp_dir(), &args)
}

fn setting(env: &str, key: &str) -> String {
    let line = env
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in .env:\n{env}"));
    line.trim_matches('\'').to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn init_writes_an_env_that_check_accepts_and_prints_the_lines_that_carry_its_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = init(dir.path(), &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let env = std::fs::read_to_string(dir.path().join(".env")).expect(".env written");
    let secrets: Vec<String> = [
        "SUPABASE_WEBHOOK_SECRET",
        "SYNC_ADMIN_TOKEN",
        "SYNC_NOTIFY_TOKEN",
    ]
    .iter()
    .map(|k| setting(&env, k))
    .collect();
    for s in &secrets {
        assert_eq!(s.len(), 43, "32 random bytes, URL-safe base64: {s}");
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    assert!(secrets[0] != secrets[1] && secrets[1] != secrets[2] && secrets[0] != secrets[2]);
    assert_eq!(setting(&env, "SUPABASE_SERVICE_ROLE_KEY"), SERVICE_KEY);
    for line in [
        format!("UPDATE dbo.SyncConfig SET Value = N'{}' WHERE Name = N'NotifyToken';", secrets[2]),
        "UPDATE dbo.SyncConfig SET Value = N'http://127.0.0.1:3000/api/sync/queue-notify' WHERE Name = N'NotifyUrl';".to_owned(),
        format!("select public.syncbridge_install_webhooks('https://local.clinic.example/api/sync/webhook', '{}');", secrets[0]),
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line:?} in\n{stdout}");
    }
    assert!(
        !stdout.contains(&secrets[1]),
        "the admin token stays in .env"
    );
    assert!(!stdout.contains(PASSWORD), "the password stays in .env");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(".env"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner may read .env");
    }

    // check reads it as it is: every setting valid, only the two servers unreachable.
    let out = syncbridge(dir.path(), &["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("FAIL  SQL Server: SQL Server is unavailable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  Supabase: cannot reach PostgREST"),
        "{stdout}"
    );
    assert!(stdout.contains("2 problem(s) found"), "{stdout}");
}

#[test]
fn init_never_overwrites_without_force_and_force_replaces_the_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(init(dir.path(), &[]).status.code(), Some(0));
    let first = std::fs::read_to_string(dir.path().join(".env")).expect(".env");
    let out = init(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already exists; nothing was changed. Use --force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".env")).expect(".env"),
        first
    );
    let out = init(dir.path(), &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let second = std::fs::read_to_string(dir.path().join(".env")).expect(".env");
    assert_ne!(
        setting(&first, "SYNC_ADMIN_TOKEN"),
        setting(&second, "SYNC_ADMIN_TOKEN")
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert_eq!(leftovers.len(), 1, "only .env: {leftovers:?}");
}

#[test]
fn init_names_what_is_missing_or_wrong_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir.path().display().to_string();
    let out = syncbridge(dir.path(), &["init", "--dir", &dir_arg]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    for named in [
        "MSSQL_CONNECTION_STRING (--mssql)",
        "SUPABASE_URL (--supabase-url)",
        "SUPABASE_SERVICE_ROLE_KEY (--service-key)",
    ] {
        assert!(stderr.contains(named), "{named} not named: {stderr}");
    }
    let anon = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2ln";
    let out = init_with_key(dir.path(), anon, &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("SUPABASE_SERVICE_ROLE_KEY: is a JWT for role \"anon\""),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(!dir.path().join(".env").exists());
}

#[test]
fn check_and_run_refuse_the_placeholders_of_env_example_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example");
    std::fs::copy(example, dir.path().join(".env")).expect("copy");
    for command in ["check", "run"] {
        let out = syncbridge(dir.path(), &[command]);
        assert_eq!(out.status.code(), Some(78), "{command}");
        let stderr = text(&out.stderr);
        for key in [
            "MSSQL_CONNECTION_STRING",
            "SUPABASE_URL",
            "SUPABASE_SERVICE_ROLE_KEY",
            "SUPABASE_WEBHOOK_SECRET",
            "SYNC_ADMIN_TOKEN",
            "SYNC_NOTIFY_TOKEN",
        ] {
            assert!(
                stderr.contains(&format!(
                    "{key}: still holds the placeholder from .env.example"
                )),
                "{command}: {key} not named in {stderr}"
            );
        }
        assert!(
            !stderr.contains("change-me") && !stderr.contains("replace-with"),
            "{stderr}"
        );
    }
}
