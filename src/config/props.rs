//! Properties of the configuration loader: any values are read or reported by setting name,
//! never echoing a secret; in-range numbers and durations are read exactly; and any value the
//! `.env` rules allow (single-quoted, no quote or newline inside, not ending in a backslash) is
//! read back from a `.env` file exactly, while one ending in a backslash is refused, not misread.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::tests::valid;
use super::*;

/// Settings whose values are secrets (the connection string holds the SQL password).
const SECRET_KEYS: &[&str] = &[
    "MSSQL_CONNECTION_STRING",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_WEBHOOK_SECRET",
    "SUPABASE_WEBHOOK_SIGNING_SECRET",
    "SYNC_ADMIN_TOKEN",
    "SYNC_NOTIFY_TOKEN",
];

/// A distinctive value: long enough that finding it in a message is no coincidence.
fn marked() -> impl Strategy<Value = String> {
    "[A-Za-z0-9=;,./\\\\ _-]{0,12}".prop_map(|s| format!("Qx7{s}Zk9Secret"))
}

fn parse(map: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
    Config::from_lookup(&|k| map.get(k).cloned())
}

proptest! {
    #![proptest_config(crate::proptest_cases::bounded())]

    #[test]
    fn any_values_are_read_or_reported_by_name_and_no_secret_is_echoed(
        overrides in proptest::collection::btree_map(0..KEYS.len(), marked(), 0..8),
    ) {
        let mut map = valid();
        // Each value is told apart by its setting's index, so one found in a message was
        // echoed under that setting.
        let given: Vec<(&str, String)> = overrides
            .iter()
            .map(|(i, v)| (KEYS[*i], format!("{v}{i:02}x")))
            .collect();
        for (key, value) in &given {
            let value = if *key == "MSSQL_CONNECTION_STRING" {
                format!("Server=localhost;Database=Clinic;User Id=sync;Password={value};x={value}")
            } else {
                value.clone()
            };
            map.insert(key, value);
        }
        let shown = match parse(&map) {
            Ok(config) => format!("{config:?}"),
            Err(e) => {
                for p in &e.0 {
                    prop_assert!(KEYS.contains(&p.key), "{}", p.key);
                }
                format!("{e}{e:?}")
            }
        };
        for (key, value) in &given {
            if SECRET_KEYS.contains(key) {
                prop_assert!(!shown.contains(value.as_str()), "{} echoed: {}", key, shown);
            }
        }
    }

    #[test]
    fn in_range_numbers_and_durations_are_read_exactly(
        batch in 1usize..=1000,
        connections in 16usize..=65_536,
        header_ms in 100u64..=3_600_000,
        idle_s in 1u64..=3600,
    ) {
        let mut map = valid();
        map.insert("SYNC_BATCH_SIZE", batch.to_string());
        map.insert("SYNC_HTTP_MAX_CONNECTIONS", connections.to_string());
        map.insert("SYNC_HTTP_HEADER_TIMEOUT", format!("{header_ms}ms"));
        map.insert("SYNC_HTTP_IDLE_TIMEOUT", format!("{idle_s}s"));
        let c = parse(&map).expect("in range");
        prop_assert_eq!(c.batch_size, batch);
        prop_assert_eq!(c.http_limits.max_connections, connections);
        prop_assert_eq!(c.http_limits.header_timeout, Duration::from_millis(header_ms));
        prop_assert_eq!(c.http_limits.idle_timeout, Duration::from_secs(idle_s));
    }

    #[test]
    fn out_of_range_values_are_named(
        batch in prop_oneof![Just(0usize), 1001usize..100_000],
        connections in prop_oneof![0usize..16, 65_537usize..1_000_000],
        request_ms in prop_oneof![0u64..100, 3_600_001u64..10_000_000],
    ) {
        let mut map = valid();
        map.insert("SYNC_BATCH_SIZE", batch.to_string());
        map.insert("SYNC_HTTP_MAX_CONNECTIONS", connections.to_string());
        map.insert("SYNC_HTTP_REQUEST_TIMEOUT", format!("{request_ms}ms"));
        let keys: Vec<&str> = parse(&map).expect_err("out of range").0.iter().map(|p| p.key).collect();
        prop_assert_eq!(keys, vec!["SYNC_BATCH_SIZE", "SYNC_HTTP_MAX_CONNECTIONS", "SYNC_HTTP_REQUEST_TIMEOUT"]);
    }

    #[test]
    fn a_single_quoted_env_value_reads_back_exactly(
        values in proptest::collection::vec("[ -&(-~é€🕴]{0,39}[ -&(-\\[\\]-~é€🕴]", KEYS.len()),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        let text: String = KEYS
            .iter()
            .zip(&values)
            .map(|(k, v)| format!("# {k}\n{k}='{v}'\n"))
            .collect();
        std::fs::write(&path, &text).expect("write");
        let read: Result<HashMap<String, String>, _> =
            dotenvy::from_path_iter(&path).expect("readable").collect();
        prop_assert!(read.is_ok(), "{:?} in\n{}", read.err(), text);
        let read = read.unwrap_or_default();
        for (k, v) in KEYS.iter().zip(&values) {
            prop_assert_eq!(read.get(*k), Some(v), "{}", text);
        }
    }

    /// dotenvy's line reader takes a backslash before the closing quote as escaping it: an odd
    /// run of trailing backslashes leaves the quote open. Refused (the `.env` error says so),
    /// never misread.
    #[test]
    fn a_single_quoted_env_value_ending_in_backslashes_is_read_exactly_or_refused(
        prefix in "[ -&(-\\[\\]-~]{0,20}",
        run in 1usize..5,
    ) {
        let value = format!("{prefix}{}", "\\".repeat(run));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        std::fs::write(&path, format!("SYNC_AGENT_ID='{value}'\nSYNC_DATA_DIR='data'\n")).expect("write");
        let read: Result<Vec<(String, String)>, _> =
            dotenvy::from_path_iter(&path).expect("readable").collect();
        if run % 2 == 1 {
            prop_assert!(read.is_err(), "{read:?}");
        } else {
            let read = read.unwrap_or_default();
            prop_assert_eq!(read.first().map(|(_, v)| v.as_str()), Some(value.as_str()));
        }
    }
}
