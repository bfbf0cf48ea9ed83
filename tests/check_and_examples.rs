//! `syncbridge check` against both schemas, and the example scripts against a running agent.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use syncbridge::config::KeyKind;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::supabase::PostgrestClient;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};

async fn check(
    setup_sql: &str,
    store: &MemoryStore,
    key: Option<String>,
) -> syncbridge::check::CheckReport {
    check_map(setup_sql, store, key, &TableMap::sample_clinic()).await
}

async fn check_map(
    setup_sql: &str,
    store: &MemoryStore,
    key: Option<String>,
    map: &TableMap,
) -> syncbridge::check::CheckReport {
    let db = TestDb::create().await.expect("db");
    if !setup_sql.is_empty() {
        db.client().batch_execute(setup_sql).await.expect("setup");
    }
    let keys = ApiKeys::generate();
    let rest = FakePostgrest::start(db.url(), keys.clone())
        .await
        .expect("rest");
    let url = url::Url::parse(&rest.url()).expect("url");
    let key = secrecy::SecretString::from(key.unwrap_or_else(|| keys.secret_key().to_owned()));
    let client =
        PostgrestClient::new(&url, &key, KeyKind::Secret, Duration::from_secs(5)).expect("client");
    syncbridge::check::run_checks(store, &client, map).await
}

fn installed_store() -> MemoryStore {
    let store = MemoryStore::sample_clinic();
    store.create_table("SyncQueue", vec![]);
    store.create_table("SyncConfig", vec![]);
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_matching_schemas() {
    let report = check("", &installed_store(), None).await;
    assert_eq!(report.problems, 0, "{}", report.render());
    assert!(report
        .render()
        .contains("ok    Supabase aligner_notes matches"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_every_mismatch() {
    let setup = "ALTER TABLE aligner_batches DROP COLUMN label_code;
                 ALTER TABLE work ALTER COLUMN total_required TYPE double precision;
                 ALTER TABLE aligner_notes DROP COLUMN updated_at CASCADE;";
    let report = check(setup, &MemoryStore::sample_clinic(), None).await;
    let text = report.render();
    assert_eq!((report.problems, report.warnings), (4, 1), "{text}");
    for expected in [
        "FAIL  SQL Server table SyncQueue is missing",
        "FAIL  SQL Server table SyncConfig is missing",
        "FAIL  work.total_required is double precision",
        "FAIL  aligner_notes.updated_at (the version column) does not exist",
        // A column Supabase lacks is not synced, and does not stop sync: a warning.
        "WARN  tblAlignerBatches.LabelCode exists in SQL Server only",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_a_table_with_portal_owned_columns_but_no_versions() {
    let setup = "ALTER TABLE aligner_batches DROP COLUMN sync_versions CASCADE;";
    let report = check(setup, &installed_store(), None).await;
    let text = report.render();
    assert_eq!(report.problems, 1, "{text}");
    assert!(
        text.contains("FAIL  aligner_batches.sync_versions (the versions of its portal-owned columns) does not exist in Supabase: run sql/supabase/03_versions.sql"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_of_a_table_without_the_row_version() {
    let setup = "ALTER TABLE work DROP COLUMN synced_at CASCADE;";
    let report = check(setup, &installed_store(), None).await;
    let text = report.render();
    // It syncs as before (no failure), only without the guard against a late write.
    assert_eq!((report.problems, report.warnings), (0, 1), "{text}");
    assert!(
        text.contains("WARN  work.synced_at (the clinic's row version) does not exist in Supabase, so a forward write given up on can land after a newer one: run sql/supabase/04_row_versions.sql"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_columns_that_exist_on_one_side_only() {
    let store = installed_store();
    store.add_column(
        "tblPatients",
        syncbridge::sqlserver::SourceColumn {
            nullable: true,
            ..column(
                "Allergies",
                syncbridge::sqlserver::SqlType::Text {
                    unicode: true,
                    max_chars: None,
                },
            )
        },
    );
    let setup = "ALTER TABLE patients DROP COLUMN phone;
                 ALTER TABLE aligner_notes ADD COLUMN reviewed_by text;";
    let report = check(setup, &store, None).await;
    let text = report.render();
    assert_eq!((report.problems, report.warnings), (0, 3), "{text}");
    for expected in [
        "WARN  tblPatients.Allergies exists in SQL Server only (Supabase patients has no such column): not synced",
        "WARN  tblPatients.Phone exists in SQL Server only",
        "WARN  aligner_notes.reviewed_by exists in Supabase only (SQL Server tblAlignerNotes has no such column): not synced",
        "all checks passed (3 warning(s))",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

/// The sample map with the patients table spelled `spelling` (its Supabase name given: the
/// naming convention reads the case of the name).
fn map_spelling_patients(spelling: &str) -> TableMap {
    let mut map = TableMap::sample_clinic();
    map.tables[0].source = spelling.to_owned();
    map.tables[0].target = Some("patients".to_owned());
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_treats_every_spelling_of_a_table_as_the_same_table() {
    for spelling in ["dbo.tblPatients", "[dbo].[tblPatients]", "DBO.TBLPATIENTS"] {
        let map = map_spelling_patients(spelling);
        let report = check_map("", &installed_store(), None, &map).await;
        assert_eq!(report.problems, 0, "{spelling}: {}", report.render());
        assert!(
            report
                .render()
                .to_lowercase()
                .contains("ok    change trigger on dbo.tblpatients"),
            "{spelling}"
        );
    }
    // ... and still fails when it should: no trigger on the patients table.
    let store = installed_store();
    store.set_setup(syncbridge::sqlserver::SetupReport {
        ole_automation: true,
        notify_url: Some("http://127.0.0.1:3000/api/sync/queue-notify".into()),
        tables_with_trigger: [
            "tblWork",
            "tblAlignerSets",
            "tblAlignerBatches",
            "tblAlignerNotes",
        ]
        .map(|t| format!("dbo.{t}"))
        .to_vec(),
    });
    let report = check_map("", &store, None, &map_spelling_patients("dbo.tblPatients")).await;
    let text = report.render();
    assert_eq!(report.problems, 1, "{text}");
    assert!(
        text.contains("FAIL  no change trigger on dbo.tblPatients"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_when_sql_server_cannot_notify() {
    let store = installed_store();
    store.set_setup(syncbridge::sqlserver::SetupReport {
        ole_automation: false,
        notify_url: None,
        tables_with_trigger: [
            "dbo.tblPatients",
            "dbo.tblWork",
            "dbo.tblAlignerSets",
            "dbo.tblAlignerNotes",
        ]
        .map(String::from)
        .to_vec(),
    });
    let report = check("", &store, None).await;
    let text = report.render();
    assert_eq!(report.problems, 3, "{text}");
    assert!(
        text.contains("FAIL  OLE Automation Procedures is off"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  SyncConfig.NotifyUrl is empty"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  no change trigger on dbo.tblAlignerBatches: EXEC dbo.sp_SyncInstallChangeTrigger @Table = N'dbo.tblAlignerBatches', @KeyColumns = N'AlignerBatchID'"),
        "{text}"
    );
    assert!(
        text.contains("ok    change trigger on dbo.tblPatients"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_wrong_key_and_an_unreachable_sql_server() {
    let store = installed_store();
    store.set_down(true);
    let report = check("", &store, Some("sb_secret_not-the-key".into())).await;
    let text = report.render();
    assert_eq!(report.problems, 2, "{text}");
    assert!(
        text.contains("FAIL  SQL Server: SQL Server is unavailable"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  Supabase: PostgREST answered HTTP 401"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_example_script_prints_each_answer() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 10)),
    );
    // The batch has long been synced: its clinic edit is not newer than the example's portal
    // edit of Days (README "Who wins").
    h.sql.clear_queue();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/post-webhooks.sh");
    let (url, secret) = (h.url(""), WEBHOOK_SECRET);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .env("SYNCBRIDGE_URL", url)
            .env("SUPABASE_WEBHOOK_SECRET", secret)
            .output()
    })
    .await
    .expect("join")
    .expect("run script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.rsplit("HTTP ").next())
        .collect();
    assert_eq!(codes, ["200", "200", "200", "401", "400"], "{stdout}");
    h.wait_store("examples applied", |store| {
        note_text(store, NOTE_A).as_deref() == Some("Fit is fine; continue with batch 2")
            && days(store, 1) == Some(syncbridge::sqlserver::SqlValue::Int(14))
    })
    .await;
}
