//! `syncbridge status`, `retry-failed` and `GET /metrics` end to end, over the SQL Server double
//! and the PostgREST-compatible server: after a scripted sequence (rows synced, a row Supabase
//! refuses until its parent exists, a reverse event SQL Server refuses until it gives up) both
//! commands and the metrics report the right numbers; retry-failed puts the right items back
//! and wakes the agent, so they sync with no other notification; with the agent stopped both
//! commands read and repair SQL Server and the inbox themselves.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use syncbridge::cli::retry_failed::{execute, RetryFailedArgs};
use syncbridge::cli::status::{gather, render};
use syncbridge::mapping::TableMap;
use syncbridge::Agent;

fn options() -> Options {
    Options {
        max_attempts: 2,
        ..Options::default()
    }
}

/// The agent the commands see: the harness's `.env` (its address, token and data directory)
/// and SQL Server double.
fn cli_agent(h: &Harness) -> Agent {
    let key = h.keys.service_role_jwt().to_owned();
    let mut config = config(&h.sql, &h.rest.url(), key, &h.data_dir, &options());
    config.listen_addr = h.addr;
    Agent {
        config,
        store: Arc::new(h.sql.clone()),
        map: TableMap::sample_clinic(),
    }
}

/// Patient 1, work 1 and set 1 synced; work 5 of patient 2, whom Supabase does not know,
/// Failed (23503 after its two attempts); a portal note that SQL Server refused until it was
/// given up (dead). Returns the dead event's id.
async fn script(h: &Harness) -> i64 {
    seed_parents(&h.sql);
    h.sql
        .clinic_write("tblWork", &key("WorkID", 5), Some(work(5, 2)));
    h.notify().await;
    h.wait_store("work 5 failed", |s| {
        s.queue()
            .iter()
            .any(|q| q.table == "tblWork" && q.status == "Failed")
    })
    .await;
    h.wait_synced().await;
    h.sql.reject_next_applies(2);
    let note = note_record(NOTE_A, "from the portal", "2026-11-25T10:00:00+00:00");
    h.webhook_accepted(&hook("INSERT", "aligner_notes", Some(note), None))
        .await;
    let status = h
        .wait_status("the note is dead", |s| {
            s["reverse"]["inbox"]["dead"] == json!(1)
        })
        .await;
    status["reverse"]["dead_events"][0]["id"]
        .as_i64()
        .expect("dead event id")
}

/// Supabase gets patient 2, the missing parent of work 5.
async fn fix_the_parent(h: &Harness) {
    h.db.client()
        .batch_execute("INSERT INTO patients (person_id, patient_name, is_active, patient_guid, date_added) VALUES (2, 'B', true, gen_random_uuid(), '2026-01-01');")
        .await
        .expect("parent");
}

async fn metrics(h: &Harness) -> String {
    let r = h
        .http
        .get(h.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("application/openmetrics-text")));
    r.text().await.expect("text")
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn count(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_report_a_scripted_day_and_retry_failed_wakes_the_agent() {
    let h = Harness::start_with(options()).await;
    let dead_id = script(&h).await;
    let agent = cli_agent(&h);

    let status = gather(&agent).await.expect("status");
    let s = &status.json;
    assert_eq!(status.code, 0, "running and ready: {s}");
    assert_eq!(s["agent"]["running"], json!(true));
    assert_eq!(s["forward"]["queue"]["failed"], json!(1), "{s}");
    assert_eq!(s["forward"]["queue"]["pending"], json!(0), "{s}");
    assert_eq!(s["forward"]["queue"]["synced"], json!(3), "{s}");
    let failure = &s["forward"]["recent_failures"][0];
    assert_eq!(
        (failure["table"].clone(), failure["attempts"].clone()),
        (json!("tblWork"), json!(2))
    );
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("23503")),
        "{s}"
    );
    assert_eq!(s["reverse"]["inbox"]["dead"], json!(1));
    assert_eq!(
        s["reverse"]["dead_events"][0]["table"],
        json!("aligner_notes")
    );
    let text = render(s);
    for line in [
        "the agent is running, ready",
        "  queue           0 pending (oldest -) · 3 synced · 1 failed",
        "  inbox           0 waiting (oldest -) · 1 dead",
        "  newest failures:",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }

    let m = metrics(&h).await;
    for line in [
        "syncbridge_ready 1",
        r#"syncbridge_queue_items{status="failed"} 1"#,
        r#"syncbridge_queue_items{status="synced"} 3"#,
        "syncbridge_inbox_dead_events 1",
        "syncbridge_inbox_depth 0",
        r#"syncbridge_items_synced_total{direction="sql-to-postgres",table="tblPatients"} 1"#,
        r#"syncbridge_items_synced_total{direction="sql-to-postgres",table="tblWork"} 1"#,
        r#"syncbridge_items_failed_total{direction="sql-to-postgres",table="tblWork"} 1"#,
        r#"syncbridge_items_failed_total{direction="postgres-to-sql",table="aligner_notes"} 1"#,
        r#"syncbridge_outage{side="sqlserver"} 0"#,
        r#"syncbridge_outage{side="supabase"} 0"#,
        r#"syncbridge_config_fault{direction="sql-to-postgres"} 0"#,
    ] {
        assert!(has(&m, line), "no {line:?} in\n{m}");
    }
    let claims = r#"syncbridge_sqlserver_request_duration_seconds_count{operation="claim"}"#;
    let upserts = r#"syncbridge_postgrest_request_duration_seconds_count{operation="upsert"}"#;
    assert!(count(&m, claims) >= 2 && count(&m, upserts) >= 2, "{m}");
    let r = h.http.get(h.url("/metrics")).send().await.expect("metrics");
    assert_eq!(r.status(), 401, "metrics need the admin token");

    for bad in [
        r#"{"queue": 5}"#,
        r#"{"inbox": {"tabel": "x"}}"#,
        "not json",
    ] {
        let r = h
            .http
            .post(h.url("/api/sync/retry-failed"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .expect("retry-failed");
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(
        h.status().await["forward"]["queue"]["failed"],
        json!(1),
        "refusals reset nothing"
    );

    fix_the_parent(&h).await;
    let notifications = h.status().await["forward"]["state"]["notifications"].clone();
    let args = RetryFailedArgs {
        table: Some("work".into()),
        ..RetryFailedArgs::default()
    };
    let done = execute(&agent, &args).await.expect("retry-failed");
    assert!(done.by_agent, "{}", done.text);
    assert_eq!(
        done.report,
        json!({"queue_items_reset": 1, "dead_events_revived": 0})
    );
    assert_eq!(done.code, 0);
    h.wait_synced().await;
    let rows = h.pg_rows("SELECT work_id FROM work ORDER BY work_id").await;
    assert_eq!(rows, [json!({"work_id": 1}), json!({"work_id": 5})]);
    let s = h.status().await;
    assert_eq!(
        s["forward"]["state"]["notifications"], notifications,
        "woken without a notification"
    );
    assert_eq!(s["forward"]["queue"]["failed"], json!(0));
    assert_eq!(
        s["reverse"]["inbox"]["dead"],
        json!(1),
        "--table work revives no note"
    );

    let args = RetryFailedArgs {
        event: Some(dead_id),
        ..RetryFailedArgs::default()
    };
    let done = execute(&agent, &args).await.expect("retry-failed --event");
    assert_eq!(
        done.report,
        json!({"dead_events_revived": 1}),
        "{}",
        done.text
    );
    h.wait_store("note applied", |s| {
        note_text(s, NOTE_A).as_deref() == Some("from the portal")
    })
    .await;
    h.wait_inbox_empty().await;
    let m = metrics(&h).await;
    for line in [
        r#"syncbridge_items_synced_total{direction="postgres-to-sql",table="aligner_notes"} 1"#,
        r#"syncbridge_items_synced_total{direction="sql-to-postgres",table="tblWork"} 2"#,
        r#"syncbridge_queue_items{status="failed"} 0"#,
        "syncbridge_inbox_dead_events 0",
    ] {
        assert!(has(&m, line), "no {line:?} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_agent_stopped_both_commands_read_and_repair_sql_server_and_the_inbox() {
    let mut h = Harness::start_with(options()).await;
    script(&h).await;
    h.stop().await;
    let agent = cli_agent(&h);

    let status = gather(&agent).await.expect("status");
    let s = &status.json;
    assert_eq!(status.code, 1, "no agent runs: {s}");
    assert_eq!(s["agent"]["running"], json!(false));
    let reason = s["agent"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("no agent answers on {}", h.addr)),
        "{s}"
    );
    assert_eq!(s["forward"]["queue"]["failed"], json!(1), "{s}");
    assert_eq!(
        s["forward"]["recent_failures"][0]["record_id"],
        json!(r#"{"WorkID":5}"#)
    );
    assert_eq!(s["reverse"]["inbox"]["dead"], json!(1), "{s}");
    let text = render(s);
    assert!(text.contains("the agent is NOT running"), "{text}");
    assert!(
        text.contains("0 pending (oldest -) · 3 synced · 1 failed"),
        "{text}"
    );

    let done = execute(&agent, &RetryFailedArgs::default())
        .await
        .expect("retry-failed");
    assert!(!done.by_agent);
    assert_eq!(
        done.report,
        json!({"queue_items_reset": 1, "dead_events_revived": 1}),
        "{}",
        done.text
    );
    assert!(
        done.text.contains("the agent takes them up when it starts"),
        "{}",
        done.text
    );
    let item = h
        .sql
        .queue()
        .into_iter()
        .find(|q| q.status != "Synced")
        .expect("item");
    assert_eq!((item.status.as_str(), item.attempts), ("Pending", 0));

    // With the parent in Supabase, the next start takes both up.
    fix_the_parent(&h).await;
    h.launch(&options()).await;
    h.wait_synced().await;
    h.wait_inbox_empty().await;
    assert_eq!(
        note_text(&h.sql, NOTE_A).as_deref(),
        Some("from the portal")
    );
    let rows = h.pg_rows("SELECT work_id FROM work ORDER BY work_id").await;
    assert_eq!(rows, [json!({"work_id": 1}), json!({"work_id": 5})]);
    let s = h.status().await;
    assert_eq!(s["forward"]["queue"]["failed"], json!(0));
    assert_eq!(s["reverse"]["inbox"]["dead"], json!(0));
}
