use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::*;

fn jwt(role: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"role":"{role}","iss":"supabase"}}"#));
    format!("{header}.{claims}.c2lnbmF0dXJl")
}

pub(super) fn valid() -> HashMap<&'static str, String> {
    HashMap::from([
        ("MSSQL_CONNECTION_STRING", "Server=localhost\\SQLEXPRESS;Database=Clinic;User Id=sync;Password=Pa55-w0rd!;TrustServerCertificate=true".to_owned()),
        ("SUPABASE_URL", "https://abc.supabase.co".to_owned()),
        ("SUPABASE_SERVICE_ROLE_KEY", jwt("service_role")),
        ("SUPABASE_WEBHOOK_SECRET", "webhook-secret-0123456789abcdef".to_owned()),
        ("SYNC_ADMIN_TOKEN", "admin-token-0123456789abcdef".to_owned()),
    ])
}

fn parse(map: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
    Config::from_lookup(&|k| map.get(k).cloned())
}

fn keys_of(err: &ConfigError) -> Vec<&'static str> {
    err.0.iter().map(|p| p.key).collect()
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(&valid()).expect("valid");
    assert_eq!(c.listen_addr.to_string(), "127.0.0.1:3000");
    assert_eq!(c.batch_size, 1000);
    assert_eq!(c.pipeline_depth, 8);
    assert_eq!(c.max_attempts, 10);
    assert_eq!(c.backoff.base, Duration::from_secs(2));
    assert_eq!(c.backoff.cap, Duration::from_secs(600));
    assert_eq!(c.service_key_kind, KeyKind::LegacyJwt);
    assert_eq!(c.mssql_label, "localhost\\SQLEXPRESS/Clinic");
    assert_eq!(c.data_dir, PathBuf::from("data"));
}

#[test]
fn every_missing_setting_is_named_at_once() {
    let err = parse(&HashMap::new()).expect_err("empty config");
    assert_eq!(
        keys_of(&err),
        [
            "MSSQL_CONNECTION_STRING",
            "SUPABASE_URL",
            "SUPABASE_SERVICE_ROLE_KEY",
            "SUPABASE_WEBHOOK_SECRET",
            "SYNC_ADMIN_TOKEN"
        ]
    );
    assert!(err
        .to_string()
        .contains("SUPABASE_URL: is required but not set"));
}

#[test]
fn wrong_values_are_all_reported() {
    let mut m = valid();
    m.insert("SUPABASE_URL", "ftp://nowhere".into());
    m.insert("SYNC_BATCH_SIZE", "0".into());
    m.insert("SYNC_BACKOFF_BASE", "soon".into());
    m.insert("SYNC_LISTEN_ADDR", "localhost".into());
    m.insert("SUPABASE_WEBHOOK_SIGNING_SECRET", "not-whsec".into());
    m.insert("SYNC_MAX_ATTEMPTS", "-1".into());
    let err = parse(&m).expect_err("bad values");
    let keys = keys_of(&err);
    for key in [
        "SUPABASE_URL",
        "SYNC_BATCH_SIZE",
        "SYNC_BACKOFF_BASE",
        "SYNC_LISTEN_ADDR",
        "SUPABASE_WEBHOOK_SIGNING_SECRET",
        "SYNC_MAX_ATTEMPTS",
    ] {
        assert!(keys.contains(&key), "{key} not reported in {err}");
    }
}

#[test]
fn key_styles() {
    let mut m = valid();
    m.insert("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_abc123".into());
    assert_eq!(
        parse(&m).expect("secret key").service_key_kind,
        KeyKind::Secret
    );
    m.insert("SUPABASE_SERVICE_ROLE_KEY", jwt("anon"));
    let err = parse(&m).expect_err("anon key");
    assert!(err.to_string().contains("role \"anon\""), "{err}");
    m.insert("SUPABASE_SERVICE_ROLE_KEY", "sb_publishable_abc".into());
    assert!(parse(&m).is_err());
    m.insert("SUPABASE_SERVICE_ROLE_KEY", "hunter2".into());
    assert!(parse(&m).is_err());
}

#[test]
fn short_secrets_and_bad_connection_strings_are_refused() {
    let mut m = valid();
    m.insert("SUPABASE_WEBHOOK_SECRET", "short".into());
    m.insert("SYNC_ADMIN_TOKEN", "short".into());
    m.insert("MSSQL_CONNECTION_STRING", "this is not ado".into());
    let err = parse(&m).expect_err("bad");
    assert_eq!(
        keys_of(&err),
        [
            "MSSQL_CONNECTION_STRING",
            "SUPABASE_WEBHOOK_SECRET",
            "SYNC_ADMIN_TOKEN"
        ]
    );
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let m = valid();
    let c = parse(&m).expect("valid");
    let debug = format!("{c:?}");
    for secret in [
        "Pa55-w0rd!",
        "webhook-secret-0123456789abcdef",
        "admin-token-0123456789abcdef",
        &m["SUPABASE_SERVICE_ROLE_KEY"],
    ] {
        assert!(!debug.contains(secret), "Debug output leaks {secret}");
    }
    let mut bad = m.clone();
    bad.insert("MSSQL_CONNECTION_STRING", "Password=Pa55-w0rd!;;;=".into());
    bad.insert("SUPABASE_SERVICE_ROLE_KEY", "leaky-key-value".into());
    let err = parse(&bad).expect_err("bad").to_string();
    assert!(
        !err.contains("Pa55-w0rd!") && !err.contains("leaky-key-value"),
        "{err}"
    );
}

#[test]
fn env_example_documents_exactly_the_config_keys_and_its_placeholders_are_refused_by_name() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example");
    let pairs: Vec<(String, String)> = dotenvy::from_path_iter(path)
        .expect(".env.example exists")
        .collect::<Result<_, _>>()
        .expect(".env.example parses");
    let mut documented: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    documented.sort_unstable();
    let mut expected = KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(documented, expected, ".env.example and config::KEYS differ");
    let text = std::fs::read_to_string(path).expect("readable");
    for key in KEYS {
        let line = text
            .lines()
            .position(|l| l.starts_with(&format!("{key}=")))
            .expect("key line");
        let above = text.lines().nth(line.wrapping_sub(1)).unwrap_or("");
        assert!(
            above.starts_with('#'),
            "{key} in .env.example has no comment above it"
        );
    }
    let mut map: HashMap<String, String> = pairs.into_iter().collect();
    let err = Config::from_lookup(&|k| map.get(k).cloned()).expect_err("placeholders refused");
    assert_eq!(
        keys_of(&err),
        [
            "MSSQL_CONNECTION_STRING",
            "SUPABASE_URL",
            "SUPABASE_SERVICE_ROLE_KEY",
            "SUPABASE_WEBHOOK_SECRET",
            "SYNC_ADMIN_TOKEN",
            "SYNC_NOTIFY_TOKEN",
        ]
    );
    assert!(err
        .0
        .iter()
        .all(|p| p.message.contains("placeholder from .env.example")));
    // Filled in, the rest of the file is valid as it stands.
    for (key, value) in [
        (
            "MSSQL_CONNECTION_STRING",
            valid()["MSSQL_CONNECTION_STRING"].clone(),
        ),
        (
            "SUPABASE_URL",
            "https://abcdefghijklmnopqrst.supabase.co".to_owned(),
        ),
        (
            "SUPABASE_SERVICE_ROLE_KEY",
            "sb_secret_0123456789abcdef".to_owned(),
        ),
        (
            "SUPABASE_WEBHOOK_SECRET",
            "a-real-webhook-secret-0123456789".to_owned(),
        ),
        (
            "SYNC_ADMIN_TOKEN",
            "a-real-admin-token-0123456789ab".to_owned(),
        ),
        (
            "SYNC_NOTIFY_TOKEN",
            "a-real-notify-token-0123456789a".to_owned(),
        ),
    ] {
        map.insert(key.to_owned(), value);
    }
    let config = Config::from_lookup(&|k| map.get(k).cloned()).expect("filled-in example");
    assert_eq!(config.log_dir, PathBuf::from("logs"));
    assert_eq!(config.log_keep_days, 14);
}

#[test]
fn a_placeholder_is_refused_in_any_case_without_echoing_the_value() {
    let mut m = valid();
    m.insert(
        "MSSQL_CONNECTION_STRING",
        "Server=x;Database=Clinic;User Id=sync;Password=Change-Me".into(),
    );
    m.insert(
        "SYNC_NOTIFY_TOKEN",
        "REPLACE-WITH-a-long-random-token".into(),
    );
    let err = parse(&m).expect_err("placeholders");
    assert_eq!(
        keys_of(&err),
        ["MSSQL_CONNECTION_STRING", "SYNC_NOTIFY_TOKEN"]
    );
    let text = err.to_string();
    assert!(
        !text.contains("Change-Me") && !text.contains("REPLACE-WITH"),
        "{text}"
    );
    m.insert("SYNC_LOG_KEEP_DAYS", "-1".into());
    assert!(keys_of(&parse(&m).expect_err("bad")).contains(&"SYNC_LOG_KEEP_DAYS"));
}

#[test]
fn the_test_double_scheme_is_a_test_build_setting_only() {
    let mut map = valid();
    map.insert(
        "MSSQL_CONNECTION_STRING",
        format!("{TEST_DOUBLE_SCHEME}127.0.0.1:4100"),
    );
    let parsed = parse(&map);
    if cfg!(feature = "test-support") {
        let c = parsed.expect("a test build accepts it");
        assert_eq!(c.mssql_label, "test double at 127.0.0.1:4100");
    } else {
        // What a release build says (checked by hand: `cargo run` exits 78 with this).
        assert_eq!(
            keys_of(&parsed.expect_err("refused")),
            ["MSSQL_CONNECTION_STRING"]
        );
    }
    map.insert(
        "MSSQL_CONNECTION_STRING",
        format!("{TEST_DOUBLE_SCHEME}localhost"),
    );
    let err = parse(&map).expect_err("an address and a port are needed");
    assert_eq!(keys_of(&err), ["MSSQL_CONNECTION_STRING"]);
}
