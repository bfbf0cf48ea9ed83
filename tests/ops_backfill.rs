//! `syncbridge backfill` end to end over the SQL Server double and the PostgREST-compatible
//! server, with the agent running: 100,000 existing patients (and their works) queued in key
//! order, parents first; the backfill killed halfway (its task aborted mid-run, as a process
//! kill stops it wherever it is) while the clinic keeps editing, inserting and deleting rows;
//! resumed from its checkpoint; both sides end equal with no row lost, duplicated or older
//! than the clinic's last edit. `--dry-run` counts and queues nothing; a finished table is not
//! queued again unless `--restart`.
//!
//! In-process rather than the real binary: the binary needs a real SQL Server, and there is
//! none here (the double lives in the test's process).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use syncbridge::cli::backfill::{execute, BackfillArgs, TableState};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{SqlStore, SqlValue};
use syncbridge::Agent;
use tokio_util::sync::CancellationToken;

const PATIENTS: i64 = 100_000;
const WORKS: i64 = 500;
/// Syncing 100,000 rows in a debug build on a shared machine takes a while; the wait ends as
/// soon as the queue is drained.
const SYNC_DEADLINE: Duration = Duration::from_secs(480);

fn options(store: MemoryStore) -> Options {
    Options {
        batch_size: 1000,
        store: Some(store),
        ..Options::default()
    }
}

/// A clinic database that existed before syncbridge: rows, and no queue items for them.
fn existing_clinic() -> MemoryStore {
    let store = MemoryStore::sample_clinic();
    for id in 1..=PATIENTS {
        store.clinic_write(
            "tblPatients",
            &key("PersonID", id),
            Some(patient(id, &format!("P{id}"))),
        );
    }
    for id in 1..=WORKS {
        store.clinic_write("tblWork", &key("WorkID", id), Some(work(id, id)));
    }
    store.clear_queue();
    store
}

/// The agent the command sees: the harness's `.env` (address, token, data directory) and
/// SQL Server double.
fn cli_agent(h: &Harness) -> Agent {
    let key = h.keys.service_role_jwt().to_owned();
    let mut config = config(&h.sql, &h.rest.url(), key, &h.data_dir, &Options::default());
    config.listen_addr = h.addr;
    Agent {
        config,
        store: Arc::new(h.sql.clone()),
        map: TableMap::sample_clinic(),
    }
}

/// Waits as [`wait_for`] does, with the longer deadline a 100,000-row run needs here.
async fn wait_long(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + SYNC_DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_drained(h: &Harness) {
    let deadline = tokio::time::Instant::now() + SYNC_DEADLINE;
    loop {
        let stats = SqlStore::queue_stats(&h.sql).await.expect("stats");
        if stats.pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue not drained: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn renamed(h: &Harness, id: i64, name: &str) {
    h.sql.clinic_update(
        "tblPatients",
        &key("PersonID", id),
        &[("PatientName", SqlValue::Text(name.to_owned()))],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_halfway_resumes_and_loses_no_concurrent_edit() {
    let h = Harness::start_with(options(existing_clinic())).await;
    let agent = Arc::new(cli_agent(&h));
    let args = BackfillArgs::default();

    let first = {
        let (agent, args) = (agent.clone(), args.clone());
        tokio::spawn(async move { execute(&agent, &args, &CancellationToken::new(), false).await })
    };
    // Edits while the first run queues: one row already queued, one not yet.
    wait_long("the backfill started", || h.sql.calls("backfill_page") >= 5).await;
    renamed(&h, 10, "edited early");
    renamed(&h, 90_000, "edited before its page");
    wait_long("the backfill is halfway", || {
        h.sql.calls("backfill_page") >= 50
    })
    .await;
    first.abort();
    let _ = first.await;
    let pages_before = h.sql.calls("backfill_page");
    assert!(
        pages_before < 101,
        "killed before the end: {pages_before} pages"
    );

    // The clinic goes on while no backfill runs: an edit, a delete, a new patient.
    renamed(&h, 99_999, "edited between the runs");
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 77_777), None);
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", PATIENTS + 1),
        Some(patient(PATIENTS + 1, "new")),
    );

    let resumed = {
        let (agent, args) = (agent.clone(), args.clone());
        tokio::spawn(async move { execute(&agent, &args, &CancellationToken::new(), false).await })
    };
    wait_long("the second run started", || {
        h.sql.calls("backfill_page") >= pages_before + 5
    })
    .await;
    renamed(&h, 50, "edited during the second run");
    let report = resumed.await.expect("task").expect("backfill");
    let patients = &report.tables[0];
    assert_eq!(
        (patients.table.as_str(), patients.state),
        ("tblPatients", TableState::Done)
    );
    assert_eq!(
        patients.rows, PATIENTS as u64,
        "counted at the start of the second run"
    );
    assert!(
        patients.queued_now < (PATIENTS - 40_000) as u64,
        "resumed from the checkpoint, not from the start: {patients:?}"
    );
    assert!(
        patients.queued_total <= (PATIENTS + 1000 + 1) as u64,
        "at most the page in flight at the kill is queued twice: {patients:?}"
    );
    assert!(report.agent_woken, "the running agent was told");
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        format!(r#"syncbridge_backfill_table_rows{{table="tblPatients"}} {PATIENTS}"#),
        format!(
            r#"syncbridge_backfill_enqueued_rows{{table="tblPatients"}} {}"#,
            patients.queued_total
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    assert_eq!(report.tables[1].table, "tblWork");
    assert_eq!(report.tables[1].queued_now, WORKS as u64);

    wait_drained(&h).await;
    let compared = assert_sides_equal(&h, &TableMap::sample_clinic()).await;
    assert_eq!(
        compared as i64,
        PATIENTS + WORKS,
        "every row, once, on both sides"
    );
    let edited = h
        .pg_rows("SELECT person_id, patient_name FROM patients WHERE person_id IN (10, 50, 90000, 99999, 77777, 100001) ORDER BY person_id")
        .await;
    assert_eq!(
        edited,
        [
            json!({"person_id": 10, "patient_name": "edited early"}),
            json!({"person_id": 50, "patient_name": "edited during the second run"}),
            json!({"person_id": 90000, "patient_name": "edited before its page"}),
            json!({"person_id": 99999, "patient_name": "edited between the runs"}),
            json!({"person_id": 100001, "patient_name": "new"}),
        ]
    );
    let failed = h
        .sql
        .queue()
        .iter()
        .filter(|q| q.status != "Synced")
        .count();
    assert_eq!(failed, 0, "every item synced");

    // Done tables are remembered; --restart queues them again.
    let again = execute(&agent, &args, &CancellationToken::new(), false)
        .await
        .expect("again");
    assert!(again
        .tables
        .iter()
        .all(|t| t.state == TableState::AlreadyDone && t.queued_now == 0));
    let restart = BackfillArgs {
        tables: vec!["work".to_owned()],
        restart: true,
        ..BackfillArgs::default()
    };
    let redone = execute(&agent, &restart, &CancellationToken::new(), false)
        .await
        .expect("restart");
    assert_eq!(redone.tables.len(), 1);
    assert_eq!(
        (redone.tables[0].state, redone.tables[0].queued_now),
        (TableState::Done, WORKS as u64)
    );
    wait_drained(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_each_table_and_queues_nothing() {
    let store = MemoryStore::sample_clinic();
    seed_parents(&store);
    for id in 2..=30 {
        store.clinic_write("tblPatients", &key("PersonID", id), Some(patient(id, "x")));
    }
    store.clear_queue();
    let h = Harness::start_with(options(store)).await;
    let agent = cli_agent(&h);
    let args = BackfillArgs {
        dry_run: true,
        ..BackfillArgs::default()
    };
    let report = execute(&agent, &args, &CancellationToken::new(), false)
        .await
        .expect("dry run");
    let counts: Vec<(&str, u64, TableState)> = report
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows, t.state))
        .collect();
    assert_eq!(
        counts,
        [
            ("tblPatients", 30, TableState::Counted),
            ("tblWork", 1, TableState::Counted),
            ("tblAlignerSets", 1, TableState::Counted),
            ("tblAlignerBatches", 0, TableState::Counted),
            ("tblAlignerNotes", 0, TableState::Counted),
        ]
    );
    assert!(h.sql.queue().is_empty(), "a dry run queues nothing");
    assert_eq!(h.sql.calls("backfill_page"), 0);
    let text = syncbridge::cli::backfill::render(&report, true);
    assert!(
        text.contains("tblPatients") && text.contains("30 rows"),
        "{text}"
    );

    let unknown = BackfillArgs {
        tables: vec!["tblNope".to_owned()],
        ..BackfillArgs::default()
    };
    let e = execute(&agent, &unknown, &CancellationToken::new(), false)
        .await
        .expect_err("an unknown table is refused");
    assert!(e.to_string().contains("tblNope"), "{e}");
}
