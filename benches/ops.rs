//! Benchmarks of `syncbridge backfill` and `syncbridge verify`: `cargo bench --bench ops`
//! (needs the test PostgreSQL: `eval "$(scripts/pg-test-env.sh)"`). In one run, on one machine:
//! - backfill of 100,000 patients through the running agent (queued in pages of 1,000, sent by
//!   the forward worker at batch sizes 50 and 500: first page → all Synced), against the
//!   baseline of the old "initial data sync": one PostgREST upsert per row;
//! - verify of 100,000 equal rows (one pass over both sides) and with 10 rows changed in
//!   Supabase (a second pass over the differing ranges), against the baseline of a naive
//!   full-row compare (every row of both sides read into memory and compared column by column).
//!
//! The SQL Server side is the in-memory double: these figures measure syncbridge, the
//! PostgREST-compatible test server and PostgreSQL on this machine, not SQL Server or the
//! network to Supabase. Compare rows within one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use syncbridge::cli::backfill::{self, BackfillArgs};
use syncbridge::cli::verify::{self, VerifyArgs};
use syncbridge::config::KeyKind;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{KeyPage, KeyPart, RecordKey, Row, SqlStore, SqlValue};
use syncbridge::supabase::{PageRequest, PostgrestClient, SupabaseApi, UpsertMode};
use syncbridge::test_support::RowMapper;
use syncbridge::{Agent, Config};
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "bench-admin-token-0123456789abcdef";
const SECRET: &str = "bench-webhook-secret-0123456789abcdef";
const ROWS: i64 = 100_000;

struct Running {
    db: TestDb,
    _rest: FakePostgrest,
    store: MemoryStore,
    agent: Agent,
    client: PostgrestClient,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

fn key(id: i64) -> RecordKey {
    RecordKey(
        [("PersonID".to_owned(), KeyPart::Int(id))]
            .into_iter()
            .collect(),
    )
}

fn patient(id: i64) -> Row {
    let t = |s: &str| SqlValue::Text(s.to_owned());
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).expect("d");
    [
        ("PersonID", SqlValue::Int(id)),
        ("PatientName", t(&format!("مریض {id} — Patient {id}"))),
        ("Phone", t("0750 123 4567")),
        ("DateOfBirth", SqlValue::Date(day)),
        ("IsActive", SqlValue::Bit(true)),
        (
            "PatientGUID",
            SqlValue::Guid(uuid::Uuid::from_u128(id as u128)),
        ),
        ("Notes", SqlValue::Null),
        (
            "DateAdded",
            SqlValue::DateTime(day.and_hms_opt(9, 0, 0).expect("t")),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The agent over a double holding `rows` patients that no queue item announces.
async fn start(batch_size: usize, rows: i64) -> Running {
    let db = TestDb::create()
        .await
        .expect("test database: run scripts/pg-test-env.sh first");
    let keys = ApiKeys::generate();
    let rest = FakePostgrest::start(db.url(), keys.clone())
        .await
        .expect("fake PostgREST");
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let pairs = [
        (
            "MSSQL_CONNECTION_STRING",
            "Server=127.0.0.1,1;Database=Bench;User Id=sa;Password=unused".to_owned(),
        ),
        ("SUPABASE_URL", rest.url().to_string()),
        (
            "SUPABASE_SERVICE_ROLE_KEY",
            keys.service_role_jwt().to_owned(),
        ),
        ("SUPABASE_WEBHOOK_SECRET", SECRET.to_owned()),
        ("SYNC_ADMIN_TOKEN", ADMIN.to_owned()),
        ("SYNC_BATCH_SIZE", batch_size.to_string()),
        ("SYNC_DATA_DIR", dir.path().display().to_string()),
        ("SYNC_LISTEN_ADDR", addr.to_string()),
    ];
    let lookup = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let config = Config::from_lookup(&lookup).expect("config");
    let store = MemoryStore::sample_clinic();
    for id in 1..=rows {
        store.clinic_write("tblPatients", &key(id), Some(patient(id)));
    }
    store.clear_queue();
    let shutdown = CancellationToken::new();
    let agent = |config: Config| Agent {
        config,
        store: Arc::new(store.clone()),
        map: TableMap::sample_clinic(),
    };
    tokio::spawn(syncbridge::run(
        agent(config.clone()),
        listener,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    loop {
        let ready = http
            .get(format!("http://{addr}/api/sync/status"))
            .bearer_auth(ADMIN)
            .send()
            .await;
        if let Ok(r) = ready {
            if r.json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["agent"]["ready"] == json!(true))
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let key = secrecy::SecretString::from(keys.service_role_jwt().to_owned());
    let client = PostgrestClient::new(
        &url::Url::parse(&rest.url()).expect("url"),
        &key,
        KeyKind::LegacyJwt,
        Duration::from_secs(30),
    )
    .expect("client");
    Running {
        db,
        _rest: rest,
        store: store.clone(),
        agent: agent(config),
        client,
        shutdown,
        _dir: dir,
    }
}

async fn drained(store: &MemoryStore) {
    loop {
        let stats = SqlStore::queue_stats(store).await.expect("stats");
        if stats.pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn count(db: &TestDb) -> i64 {
    db.query_json("SELECT count(*) AS n FROM patients")
        .await
        .expect("count")[0]["n"]
        .as_i64()
        .unwrap_or(0)
}

/// Backfill of `ROWS` patients, first page → all Synced; and the time to queue them alone.
async fn backfill_run(batch_size: usize) -> (Duration, Duration) {
    let r = start(batch_size, ROWS).await;
    let started = Instant::now();
    let report = backfill::execute(
        &r.agent,
        &BackfillArgs::default(),
        &CancellationToken::new(),
        false,
    )
    .await
    .expect("backfill");
    let queued = started.elapsed();
    assert_eq!(report.tables[0].queued_now, ROWS as u64);
    drained(&r.store).await;
    let took = started.elapsed();
    assert_eq!(count(&r.db).await, ROWS);
    r.shutdown.cancel();
    (took, queued)
}

/// The old initial load: one upsert request per row.
async fn one_row_per_request(rows: i64) -> Duration {
    let r = start(50, 0).await;
    let mapper = RowMapper::new(&r.store, &TableMap::sample_clinic(), "tblPatients")
        .await
        .expect("mapper");
    let conflict = mapper.target_keys();
    let started = Instant::now();
    for id in 1..=rows {
        let row = mapper.to_json(&patient(id));
        r.client
            .upsert("patients", &[row], &conflict, &UpsertMode::Merge)
            .await
            .expect("upsert");
    }
    let took = started.elapsed();
    r.shutdown.cancel();
    took
}

/// Verify over `ROWS` synced rows: equal, then with 10 rows changed in Supabase; and the
/// naive compare of the same equal rows.
async fn verify_run() -> (Duration, Duration, Duration) {
    let r = start(500, ROWS).await;
    backfill::execute(
        &r.agent,
        &BackfillArgs::default(),
        &CancellationToken::new(),
        false,
    )
    .await
    .expect("backfill");
    drained(&r.store).await;
    let args = VerifyArgs {
        tables: vec!["tblPatients".to_owned()],
        fix: false,
    };
    let started = Instant::now();
    let same = verify::execute(&r.agent, &r.client, &args)
        .await
        .expect("verify");
    let equal = started.elapsed();
    assert!(!same.differs());
    let naive = naive_compare(&r).await;
    r.db.client()
        .batch_execute("UPDATE patients SET phone = 'changed' WHERE person_id % 10000 = 7")
        .await
        .expect("change");
    let started = Instant::now();
    let found = verify::execute(&r.agent, &r.client, &args)
        .await
        .expect("verify");
    let differing = started.elapsed();
    assert_eq!(found.tables[0].differing.len(), 10);
    r.shutdown.cancel();
    (equal, differing, naive)
}

/// Every row of both sides read into memory, decoded and compared column by column.
async fn naive_compare(r: &Running) -> Duration {
    let started = Instant::now();
    let openapi = r.client.schema().await.expect("schema");
    let mapper = RowMapper::for_both_sides(&r.store, &openapi, &r.agent.map, "tblPatients")
        .await
        .expect("mapper");
    let columns: Vec<_> = r
        .store
        .describe_table("tblPatients")
        .await
        .expect("describe")
        .expect("table");
    let mut sql = BTreeMap::new();
    let mut page = KeyPage {
        table: "tblPatients".to_owned(),
        keys: vec!["PersonID".to_owned()],
        after: None,
        limit: 1000,
    };
    loop {
        let rows = r.store.read_page(&page, &columns).await.expect("page");
        let Some(last) = rows.last() else { break };
        page.after = last.get("PersonID").and_then(|v| match v {
            SqlValue::Int(i) => Some(key(*i)),
            _ => None,
        });
        for row in rows {
            sql.insert(
                mapper.to_json(&row)["person_id"].to_string(),
                mapper.synced(&row),
            );
        }
    }
    let mut supa = BTreeMap::new();
    let mut request = PageRequest {
        order: vec!["person_id".to_owned()],
        after: Vec::new(),
        since: None,
        limit: 1000,
    };
    loop {
        let rows = r
            .client
            .select_page("patients", &request)
            .await
            .expect("page");
        let Some(last) = rows.last() else { break };
        request.after = vec![("person_id".to_owned(), last["person_id"].clone())];
        for row in rows {
            supa.insert(
                row["person_id"].to_string(),
                mapper.from_json(&row).expect("decode"),
            );
        }
    }
    assert_eq!(sql.len(), supa.len());
    assert!(sql.iter().all(|(k, v)| supa.get(k) == Some(v)));
    started.elapsed()
}

fn rate(rows: i64, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` only checks that the harness builds
    }
    println!("syncbridge ops benchmarks (wall clock, this machine, one run)\n");
    let base_rows = 2000;
    let base = one_row_per_request(base_rows).await;
    let base_rate = rate(base_rows, base);
    println!("backfill: {ROWS} patients, first page queued → all Synced in PostgreSQL");
    println!("  baseline, one upsert request per row: {base_rows} rows in {:>8.1} ms = {base_rate:>8.0} rows/s", base.as_secs_f64() * 1e3);
    for batch in [50usize, 500] {
        let (took, queued) = backfill_run(batch).await;
        let r = rate(ROWS, took);
        println!(
            "  batch {batch:>4}: {ROWS} rows in {:>8.1} ms = {r:>8.0} rows/s, x{:.1} baseline (queueing alone: {:.1} ms)",
            took.as_secs_f64() * 1e3,
            r / base_rate,
            queued.as_secs_f64() * 1e3
        );
    }
    let (equal, differing, naive) = verify_run().await;
    println!("\nverify: {ROWS} patients on both sides");
    println!(
        "  baseline, naive full-row compare (all rows in memory): {:>8.1} ms = {:>8.0} rows/s",
        naive.as_secs_f64() * 1e3,
        rate(ROWS, naive)
    );
    println!(
        "  equal (one pass):                  {:>8.1} ms = {:>8.0} rows/s",
        equal.as_secs_f64() * 1e3,
        rate(ROWS, equal)
    );
    println!(
        "  10 rows differ (second pass):      {:>8.1} ms = {:>8.0} rows/s",
        differing.as_secs_f64() * 1e3,
        rate(ROWS, differing)
    );
}
