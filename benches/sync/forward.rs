//! Forward measurements: the agent draining a burst, the same rows sent straight to the REST
//! server (the ceiling), the old processor's pattern, and notify → visible at light load.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{RecordKey, SqlStore};
use syncbridge::supabase::{JsonRow, KeyFilter, PostgrestClient, SupabaseApi, UpsertMode};
use syncbridge::test_support::RowMapper;

use crate::cpu::{CpuSplit, Meter};
use crate::env::{Running, Side};
use crate::workload::{self, Burst, Change, TABLES};

/// A throughput figure: `n` things in `took`; `complete` false when the deadline cut it short.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub n: u64,
    pub took: Duration,
    pub complete: bool,
    /// CPU per change over the run, where measured (agent and ceiling runs).
    pub cpu: Option<CpuSplit>,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        self.n as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// JSON mappers for the four tables, in table order (over the double or a real server).
pub async fn mappers(store: &dyn SqlStore) -> Vec<RowMapper> {
    let map = workload::bench_map();
    let mut out = Vec::new();
    for (source, _) in TABLES {
        out.push(RowMapper::new(store, &map, source).await.expect("mapper"));
    }
    out
}

fn key_filter(mapper: &RowMapper, key: &RecordKey) -> KeyFilter {
    let column = &mapper.target_keys()[0];
    let value = match key.0.values().next() {
        Some(syncbridge::sqlserver::KeyPart::Int(i)) => serde_json::json!(i),
        Some(syncbridge::sqlserver::KeyPart::Text(t)) => serde_json::json!(t),
        None => serde_json::Value::Null,
    };
    vec![(column.clone(), value)]
}

/// How the ceiling's rows are shaped.
#[derive(Clone, Copy, PartialEq)]
pub enum Rows {
    /// The synced columns only.
    Plain,
    /// Also the row version column the agent sends (`synced_at`), which Supabase's guard
    /// trigger checks (`sql/supabase/04_row_versions.sql`).
    Versioned,
}

/// Sends `changes` straight to Supabase: per table, parents first, upserts in requests of
/// `batch` rows with `parallel` in flight; then deletes, children first.
pub async fn bulk_send(
    client: &PostgrestClient,
    mappers: &[RowMapper],
    changes: &[Change],
    (batch, parallel): (usize, usize),
    shape: Rows,
) {
    let at = chrono::Utc::now();
    for (t, mapper) in mappers.iter().enumerate() {
        let rows: Vec<JsonRow> = changes
            .iter()
            .filter(|c| c.table == t)
            .filter_map(|c| {
                c.row.as_ref().map(|r| match shape {
                    Rows::Plain => mapper.to_json(r),
                    Rows::Versioned => mapper.to_json_versioned(r, at),
                })
            })
            .collect();
        let keys = mapper.target_keys();
        let sent = futures_util::stream::iter(rows.chunks(batch.max(1)))
            .map(|chunk| client.upsert(mapper.target(), chunk, &keys, &UpsertMode::Merge))
            .buffer_unordered(parallel.max(1))
            .collect::<Vec<_>>()
            .await;
        sent.into_iter().for_each(|r| r.expect("bulk upsert"));
    }
    for (t, mapper) in mappers.iter().enumerate().rev() {
        let gone: Vec<KeyFilter> = changes
            .iter()
            .filter(|c| c.table == t && c.row.is_none())
            .map(|c| key_filter(mapper, &c.key))
            .collect();
        let sent = futures_util::stream::iter(gone.chunks(batch.max(1)))
            .map(|chunk| client.delete(mapper.target(), chunk))
            .buffer_unordered(parallel.max(1))
            .collect::<Vec<_>>()
            .await;
        sent.into_iter().for_each(|r| r.expect("bulk delete"));
    }
}

/// A side seeded with the rows that exist before `burst`, and the double holding them.
pub async fn seeded(burst: &Burst, round_trip: Duration) -> (Side, MemoryStore, Vec<RowMapper>) {
    let side = Side::start(round_trip).await;
    let store = MemoryStore::sample_clinic();
    workload::write(&store, &burst.existing);
    store.clear_queue();
    let mappers = mappers(&store).await;
    // Seeded without the WAN: only the measured part pays the round trip.
    let direct = side.direct_client();
    bulk_send(&direct, &mappers, &burst.existing, (1000, 4), Rows::Plain).await;
    (side, store, mappers)
}

/// The agent drains `burst` (written at once, one notification); stops at `deadline`.
pub async fn agent_burst(
    burst: &Burst,
    round_trip: Duration,
    batch: Option<usize>,
    deadline: Duration,
) -> Rate {
    let (side, store, _) = seeded(burst, round_trip).await;
    let agent = Running::start(&side, store.clone(), workload::bench_map(), batch).await;
    workload::write(&store, &burst.changes);
    let total = burst.changes.len() as u64;
    let tables: Vec<String> = TABLES.iter().map(|(t, _)| (*t).to_owned()).collect();
    let started = Instant::now();
    let meter = Meter::start();
    agent.notify().await;
    let rate = loop {
        // While items are Pending, asking whether any is costs one index probe; counting (a
        // scan of the double's whole queue under its lock) is left to the last batches in
        // flight, every 20 ms, so the wait takes little CPU from the agent it measures
        // (counting every 10 ms throughout took a quarter of the machine) and adds at most
        // 20 ms to its time.
        let pending = store.unsettled_in(&tables).await.expect("pending");
        let late = started.elapsed() > deadline;
        if !pending || late {
            let stats = store.queue_stats().await.expect("stats");
            let done = stats.synced + stats.failed;
            if done >= total || late {
                assert_eq!(stats.failed, 0, "items failed during the burst");
                break Rate {
                    n: done,
                    took: started.elapsed(),
                    complete: done >= total,
                    cpu: meter.per_change(done),
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(if pending { 5 } else { 20 })).await;
    };
    // Refusals cost a write into SQL Server each: a burst of clinic edits should have none.
    let status: serde_json::Value = agent
        .http
        .get(format!("{}/api/sync/status", agent.base))
        .bearer_auth(crate::env::ADMIN)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    println!(
        "    portal edits kept: {}, items retried: {}",
        status["forward"]["state"]["conflicts_portal_won"],
        status["forward"]["state"]["items_retried"]
    );
    if rate.complete {
        for (t, mapper) in mappers(&store).await.iter().enumerate() {
            let n = side.count(mapper.target()).await;
            assert_eq!(
                n,
                burst.rows_per_table,
                "rows in {} after the burst ({t})",
                mapper.target()
            );
        }
    }
    drop(agent);
    rate
}

/// The ceiling: the burst's rows sent straight to the REST server, best of `configs`
/// (batch, in flight). Returns the best rate and its configuration.
pub async fn ceiling(
    burst: &Burst,
    round_trip: Duration,
    configs: &[(usize, usize)],
) -> (Rate, (usize, usize)) {
    let mut best: Option<(Rate, (usize, usize))> = None;
    for &config in configs {
        let rate = ceiling_run(burst, round_trip, config, Rows::Plain).await;
        println!(
            "    ceiling batch {:>5} × {} in flight: {:>8.0} rows/s",
            config.0,
            config.1,
            rate.per_sec()
        );
        if best.is_none_or(|(b, _)| rate.per_sec() > b.per_sec()) {
            best = Some((rate, config));
        }
    }
    best.expect("at least one configuration")
}

/// One ceiling run: the burst's rows shaped as `shape`, sent as `config` (batch, in flight).
pub async fn ceiling_run(
    burst: &Burst,
    round_trip: Duration,
    config: (usize, usize),
    shape: Rows,
) -> Rate {
    let (side, _store, mappers) = seeded(burst, round_trip).await;
    let client = side.client();
    let started = Instant::now();
    let meter = Meter::start();
    bulk_send(&client, &mappers, &burst.changes, config, shape).await;
    let n = burst.changes.len() as u64;
    Rate {
        n,
        took: started.elapsed(),
        complete: true,
        cpu: meter.per_change(n),
    }
}

/// The old processor: claim 50, then per item load its row and send it alone, sequentially,
/// and mark it done; `changes` of the burst at most, `deadline` at most.
pub async fn old_pattern(burst: &Burst, round_trip: Duration, deadline: Duration) -> Rate {
    let (side, store, mappers) = seeded(burst, round_trip).await;
    let client = side.client();
    let columns: Vec<_> = {
        let mut out = Vec::new();
        for (source, _) in TABLES {
            out.push(
                store
                    .describe_table(source)
                    .await
                    .expect("describe")
                    .expect("table"),
            );
        }
        out
    };
    workload::write(&store, &burst.changes);
    let started = Instant::now();
    let mut n = 0_u64;
    'all: loop {
        let items = store
            .claim(50, Duration::from_secs(300))
            .await
            .expect("claim");
        if items.is_empty() {
            break;
        }
        for item in items {
            let t = TABLES
                .iter()
                .position(|(s, _)| *s == item.table)
                .expect("table");
            let key = RecordKey::parse(&item.record_id).expect("key");
            let rows = store
                .load_rows(&item.table, &columns[t], std::slice::from_ref(&key))
                .await
                .expect("load");
            let mapper = &mappers[t];
            match rows.first() {
                Some(row) => client
                    .upsert(
                        mapper.target(),
                        &[mapper.to_json(row)],
                        &mapper.target_keys(),
                        &UpsertMode::Merge,
                    )
                    .await
                    .expect("upsert"),
                None => client
                    .delete(mapper.target(), &[key_filter(mapper, &key)])
                    .await
                    .expect("delete"),
            }
            let settle = syncbridge::sqlserver::SettleItem {
                id: item.id,
                claim: item.claim,
                outcome: syncbridge::sqlserver::Settlement::Synced,
            };
            store.settle(&[settle]).await.expect("settle");
            n += 1;
            if started.elapsed() > deadline {
                break 'all;
            }
        }
    }
    Rate {
        n,
        took: started.elapsed(),
        complete: n == burst.changes.len() as u64,
        cpu: None,
    }
}

/// Notify → visible in Supabase, one new patient at a time, `samples` times; sorted.
pub async fn notify_latency(round_trip: Duration, samples: usize) -> Vec<Duration> {
    let side = Side::start(round_trip).await;
    let store = MemoryStore::sample_clinic();
    let agent = Running::start(&side, store.clone(), workload::bench_map(), None).await;
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples as i64 {
        let id = 1_000_000 + i;
        let started = Instant::now();
        store.clinic_write(
            "tblPatients",
            &crate::fixtures::key("PersonID", id),
            Some(crate::fixtures::patient(id, "Light Load")),
        );
        agent.notify().await;
        let query = format!("SELECT 1 AS one FROM patients WHERE person_id = {id}");
        while side.db.query_json(&query).await.expect("poll").is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "change never visible"
            );
        }
        out.push(started.elapsed());
        // Light load: one change at a time, a pause between them.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.sort();
    out
}
