//! Issue 6.2, the forward half: schema drift never stops forward sync. A column that exists on
//! one side only (added in SQL Server, dropped in Supabase before the start or while the agent
//! runs) is not synced and is reported once (`schema_drift` in status); every other column keeps
//! syncing, no item spends an attempt, and both sides end equal on the columns both have. The
//! Supabase schema is cached, so a start with Supabase unreachable still knows the drift.

mod common;

use common::*;
use serde_json::{json, Value};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::{SourceColumn, SqlType, SqlValue};

fn drift(status: &Value) -> Vec<(String, String, String)> {
    status["schema_drift"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let field = |f: &str| d[f].as_str().unwrap_or_default().to_owned();
            (field("table"), field("column"), field("only_in"))
        })
        .collect()
}

fn drifted(table: &str, column: &str, side: &str) -> (String, String, String) {
    (table.to_owned(), column.to_owned(), side.to_owned())
}

/// Everything synced, no attempt spent, no pause, both sides equal on the shared columns.
async fn forward_unharmed(h: &Harness) {
    assert_nothing_lost(h, &TableMap::sample_clinic()).await;
    let status = h.status().await;
    assert_eq!(status["forward"]["config_fault"], Value::Null, "{status}");
}

fn write_patients(h: &Harness, ids: std::ops::RangeInclusive<i64>, name: &str) {
    for id in ids {
        h.sql
            .clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, name)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_missing_in_supabase_at_start_is_left_out_and_reported() {
    let h = Harness::start_with(Options {
        setup_sql: "ALTER TABLE patients DROP COLUMN phone",
        ..Options::default()
    })
    .await;
    write_patients(&h, 1..=4, "A");
    h.notify().await;
    forward_unharmed(&h).await;
    let status = h.status().await;
    assert_eq!(
        drift(&status),
        [drifted("patients", "Phone", "sql_server")],
        "{status}"
    );
    let refused = h.rest.requests().iter().filter(|r| r.status == 400).count();
    assert_eq!(refused, 0, "known before the first row was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_dropped_in_supabase_while_running_does_not_stop_the_others() {
    let h = Harness::start().await;
    write_patients(&h, 1..=2, "before");
    h.notify().await;
    h.wait_synced().await;
    for column in ["phone", "notes"] {
        h.db.client()
            .batch_execute(&format!("ALTER TABLE patients DROP COLUMN {column}"))
            .await
            .expect("drop column");
        write_patients(&h, 1..=4, &format!("after {column}"));
        h.notify().await;
        h.wait_synced().await;
    }
    forward_unharmed(&h).await;
    let names = h
        .pg_rows("SELECT patient_name FROM patients ORDER BY person_id")
        .await;
    assert_eq!(names, vec![json!({"patient_name": "after notes"}); 4]);
    let status = h.status().await;
    assert_eq!(
        drift(&status),
        [
            drifted("patients", "Notes", "sql_server"),
            drifted("patients", "Phone", "sql_server"),
        ],
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_in_sql_server_is_reported_after_a_restart_and_the_rest_syncs() {
    let o = Options::default();
    let mut h = Harness::start_with(o.clone()).await;
    h.sql.add_column(
        "tblPatients",
        SourceColumn {
            nullable: true,
            ..column(
                "Allergies",
                SqlType::Text {
                    unicode: true,
                    max_chars: None,
                },
            )
        },
    );
    let mut with_allergy = patient(1, "A");
    with_allergy.insert("Allergies".into(), SqlValue::Text("penicillin".into()));
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(with_allergy));
    h.stop().await;
    h.launch(&o).await;
    let status = h.status().await;
    assert_eq!(
        drift(&status),
        [drifted("patients", "Allergies", "sql_server")],
        "{status}"
    );
    write_patients(&h, 2..=3, "B");
    h.notify().await;
    forward_unharmed(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_supabase_unreachable_uses_the_cached_schema() {
    let o = Options {
        setup_sql: "ALTER TABLE patients DROP COLUMN phone",
        ..Options::default()
    };
    let mut h = Harness::start_with(o.clone()).await;
    h.stop().await;
    h.rest.set_unreachable(true).await.expect("unreachable");
    h.launch(&o).await;
    write_patients(&h, 1..=3, "while unreachable");
    h.notify().await;
    h.rest.clear_requests();
    h.rest.set_unreachable(false).await.expect("reachable");
    forward_unharmed(&h).await;
    let refused = h.rest.requests().iter().filter(|r| r.status == 400).count();
    assert_eq!(refused, 0, "the cached schema already left the column out");
    assert_eq!(
        drift(&h.status().await),
        [drifted("patients", "Phone", "sql_server")]
    );
}
