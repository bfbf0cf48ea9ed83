//! Benchmark harness: `cargo bench --bench sync` (needs the test PostgreSQL:
//! `eval "$(scripts/pg-test-env.sh)"`). Measures, in one run and on one machine:
//! - forward sync throughput through the real agent (notify → claim → load → upsert through the
//!   PostgREST-compatible server → settle) at batch size 1 — the per-row baseline of the
//!   system syncbridge replaces — and at the default 50 and 200;
//! - webhook ingest latency (authenticate, decode, fsync into the inbox, answer) and the time
//!   until the events are applied;
//! - the pure mapping cost of turning SQL Server rows into PostgREST JSON.
//!
//! Figures are wall-clock on a shared 2-core machine: compare rows within one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::SqlValue;
use syncbridge::sqlserver::{KeyPart, RecordKey, Row};
use syncbridge::test_support::RowMapper;
use syncbridge::{Agent, Config};
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "bench-admin-token-0123456789abcdef";
const SECRET: &str = "bench-webhook-secret-0123456789abcdef";

struct Running {
    db: TestDb,
    _rest: FakePostgrest,
    store: MemoryStore,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(batch_size: usize) -> Running {
    let db = TestDb::create()
        .await
        .expect("test database: run scripts/pg-test-env.sh first");
    let keys = ApiKeys::generate();
    let rest = FakePostgrest::start(db.url(), keys.clone())
        .await
        .expect("fake PostgREST");
    let dir = tempfile::tempdir().expect("tempdir");
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
    ];
    let lookup = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let config = Config::from_lookup(&lookup).expect("config");
    let store = MemoryStore::sample_clinic();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let agent = Agent {
        config,
        store: Arc::new(store.clone()),
        map: TableMap::sample_clinic(),
    };
    tokio::spawn(syncbridge::run(agent, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    loop {
        let ready = http
            .get(format!("{base}/api/sync/status"))
            .bearer_auth(ADMIN)
            .send()
            .await;
        if let Ok(r) = ready {
            if r.json::<serde_json::Value>()
                .await
                .map(|v| v["agent"]["ready"] == json!(true))
                .unwrap_or(false)
            {
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    Running {
        db,
        _rest: rest,
        store,
        base,
        http,
        shutdown,
        _dir: dir,
    }
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
    [
        ("PersonID", SqlValue::Int(id)),
        ("PatientName", t(&format!("مریض {id} — Patient {id}"))),
        ("Phone", t("0750 123 4567")),
        (
            "DateOfBirth",
            SqlValue::Date(chrono::NaiveDate::from_ymd_opt(1990, 1, 1).expect("date")),
        ),
        ("IsActive", SqlValue::Bit(true)),
        (
            "PatientGUID",
            SqlValue::Guid(uuid::Uuid::from_u128(id as u128)),
        ),
        ("Notes", SqlValue::Null),
        (
            "DateAdded",
            SqlValue::DateTime(
                chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
                    .expect("d")
                    .and_hms_opt(9, 0, 0)
                    .expect("t"),
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn forward(batch_size: usize, rows: i64) -> Duration {
    let r = start(batch_size).await;
    for id in 1..=rows {
        r.store
            .clinic_write("tblPatients", &key(id), Some(patient(id)));
    }
    let started = Instant::now();
    r.http
        .post(format!("{}/api/sync/queue-notify", r.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("notify");
    loop {
        if r.store.queue().iter().all(|q| q.status == "Synced") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    let n =
        r.db.query_json("SELECT count(*) AS n FROM patients")
            .await
            .expect("count")[0]["n"]
            .as_i64();
    assert_eq!(n, Some(rows));
    r.shutdown.cancel();
    took
}

async fn webhooks(count: usize) -> (Vec<Duration>, Duration) {
    let r = start(50).await;
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let uid = uuid::Uuid::from_u128(i as u128 + 1);
        let body = json!({"type": "INSERT", "table": "aligner_notes", "schema": "public", "old_record": null,
            "record": {"note_uid": uid, "aligner_set_id": 1, "note_type": "Doctor", "note_text": format!("note {i} ملاحظة"),
                       "created_at": "2026-11-25T10:00:00", "is_edited": false, "edited_at": null, "is_read": false,
                       "updated_at": "2026-11-25T10:00:00+00:00"}});
        let t = Instant::now();
        let resp = r
            .http
            .post(format!("{}/api/sync/webhook", r.base))
            .bearer_auth(SECRET)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 200);
        latencies.push(t.elapsed());
    }
    loop {
        if r.store.rows("tblAlignerNotes").len() == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = started.elapsed();
    r.shutdown.cancel();
    (latencies, total)
}

async fn mapping(rows: usize) -> Duration {
    let store = MemoryStore::sample_clinic();
    let map = TableMap::sample_clinic();
    let table = RowMapper::new(&store, &map, "tblPatients")
        .await
        .expect("patients map");
    let sample: Vec<Row> = (0..1000).map(patient).collect();
    let started = Instant::now();
    let mut bytes = 0;
    for i in 0..rows {
        let json = table.to_json(&sample[i % sample.len()]);
        bytes += json.len();
    }
    assert!(bytes > 0);
    started.elapsed()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` only checks that the harness builds
    }
    println!("syncbridge benchmarks (wall clock, this machine, one run)\n");
    println!("forward sync: rows notified at once → all Synced in PostgreSQL");
    let rows = 2000;
    let mut baseline = None;
    for batch in [1usize, 50, 200] {
        let took = forward(batch, rows).await;
        let rate = rows as f64 / took.as_secs_f64();
        let base = *baseline.get_or_insert(rate);
        let label = if batch == 1 {
            "  (baseline: one row per request)"
        } else {
            ""
        };
        println!("  batch {batch:>4}: {rows} rows in {:>8.1} ms = {rate:>8.0} rows/s, x{:.1} baseline{label}", took.as_secs_f64() * 1e3, rate / base);
    }
    let count = 500;
    let (mut lat, total) = webhooks(count).await;
    lat.sort();
    println!("\nreverse sync: {count} note webhooks, sequential");
    println!(
        "  accept (auth + decode + fsync'd inbox + 200): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        pct(&lat, 1.0).as_secs_f64() * 1e3
    );
    println!(
        "  first POST → all {count} applied: {:.1} ms ({:.0} events/s)",
        total.as_secs_f64() * 1e3,
        count as f64 / total.as_secs_f64()
    );
    let n = 200_000;
    let took = mapping(n).await;
    println!(
        "\nmapping: {n} patient rows → PostgREST JSON in {:.1} ms ({:.2} µs/row)",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / n as f64
    );
}
