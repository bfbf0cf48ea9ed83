//! Forward against a real SQL Server (2017+), only when `MSSQL_TEST_URL` is set (an ADO
//! connection string; see tests/common/mssql.rs for the login it needs), so that the SQL
//! side's own cost is visible beside the double's figures. Each run gets a fresh database of
//! its own with `sql/sqlserver/*.sql` applied (`SqlDb`), dropped at the end:
//! - the agent with the tiberius store drains a 6,000-change burst (5,000 inserts, 1,000
//!   updates; `clinic`) to the same Supabase side as the double's runs, at each round trip
//!   and batch size of [`BATCHES`];
//! - the SQL side alone: the same burst claimed, read and settled through `TdsStore`'s
//!   `SqlStore` methods, with no Supabase, at each batch size.

mod agent;
mod clinic;
#[allow(dead_code)]
#[path = "../../tests/common/mssql.rs"]
mod sqldb;

use std::future::Future;
use std::time::{Duration, Instant};

use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::sqlserver::{RecordKey, SettleItem, Settlement, SqlStore, SqlValue};

use crate::env::Side;
use crate::forward::{self, Rate};
use crate::workload::{Change, TABLES};
use crate::{fixtures, Plan};
use agent::TdsAgent;
use sqldb::SqlDb;

/// `SYNC_BATCH_SIZE` values, the default first.
pub const BATCHES: [usize; 2] = [crate::DEFAULT_BATCH, 50];
pub const CHANGES: i64 = clinic::CHANGES;
/// Between two counts of the queue: counting takes SQL Server's time from the agent too.
const POLL: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct MssqlFigures {
    /// Per batch size of [`BATCHES`], per round trip.
    pub agent: Vec<(usize, [Option<Rate>; 2])>,
    /// Per batch size of [`BATCHES`]: claim → load_rows → settle, no Supabase.
    pub sql_alone: Vec<(usize, Rate)>,
    /// The clinic's set-based writes of the burst (triggers included), from the first SQL-alone
    /// run.
    pub clinic_write: Option<Rate>,
}

/// Whether `MSSQL_TEST_URL` names a server; nothing here connects anywhere otherwise.
pub fn configured() -> bool {
    std::env::var("MSSQL_TEST_URL").is_ok_and(|v| !v.trim().is_empty())
}

/// Every figure of this module, at the round trips `selected` keeps.
pub async fn measure(plan: &Plan, selected: impl Fn(Duration) -> bool) -> MssqlFigures {
    let mut f = MssqlFigures::default();
    for batch in BATCHES {
        let (write, rate) = sql_alone(batch, plan.agent_deadline).await;
        println!("  SQL side alone, batch {batch}: {rate:?} (clinic's writes: {write:?})");
        f.clinic_write.get_or_insert(write);
        f.sql_alone.push((batch, rate));
    }
    for (i, rtt) in crate::ROUND_TRIPS.into_iter().enumerate() {
        if !selected(rtt) {
            continue;
        }
        for batch in BATCHES {
            let rate = agent_burst(rtt, batch, plan.agent_deadline).await;
            println!(
                "  agent over SQL Server, {} ms, batch {batch}: {rate:?}",
                rtt.as_millis()
            );
            match f.agent.iter_mut().find(|(b, _)| *b == batch) {
                Some((_, rates)) => rates[i] = Some(rate),
                None => {
                    let mut rates = [None, None];
                    rates[i] = Some(rate);
                    f.agent.push((batch, rates));
                }
            }
        }
    }
    f
}

/// A fresh database holding the seeded families, and the burst written into its queue.
async fn prepared() -> (SqlDb, Rate) {
    let db = SqlDb::create().await;
    clinic::seed(&db).await;
    let started = Instant::now();
    clinic::write_burst(&db).await;
    let write = Rate {
        n: CHANGES as u64,
        took: started.elapsed(),
        complete: true,
        cpu: None,
    };
    (db, write)
}

/// The columns of the four tables, in [`TABLES`] order.
async fn columns(store: &TdsStore) -> Vec<Vec<syncbridge::sqlserver::SourceColumn>> {
    let mut out = Vec::new();
    for (source, _) in TABLES {
        let described = store.describe_table(source).await.expect("describe");
        out.push(described.unwrap_or_else(|| panic!("{source} is missing")));
    }
    out
}

/// The SQL side alone: claim `batch` → load each table's rows → settle them Synced, until
/// the queue is empty or `deadline` passed, as the agent's worker does minus Supabase (and
/// minus its pipelining).
async fn sql_alone(batch: usize, deadline: Duration) -> (Rate, Rate) {
    let (db, write) = prepared().await;
    let store = db.store();
    let columns = columns(&store).await;
    let started = Instant::now();
    let mut n = 0_u64;
    loop {
        let items = store
            .claim(batch, Duration::from_secs(300))
            .await
            .expect("claim");
        if items.is_empty() {
            break;
        }
        for (t, (source, _)) in TABLES.iter().enumerate() {
            let keys: Vec<RecordKey> = items
                .iter()
                .filter(|i| i.table == *source)
                .map(|i| RecordKey::parse(&i.record_id).expect("RecordID"))
                .collect();
            if !keys.is_empty() {
                let rows = store
                    .load_rows(source, &columns[t], &keys)
                    .await
                    .expect("load");
                assert_eq!(
                    rows.len(),
                    keys.len(),
                    "rows of {source} claimed (none is deleted)"
                );
            }
        }
        let settle: Vec<SettleItem> = items
            .iter()
            .map(|i| SettleItem {
                id: i.id,
                claim: i.claim,
                outcome: Settlement::Synced,
            })
            .collect();
        store.settle(&settle).await.expect("settle");
        n += items.len() as u64;
        if started.elapsed() > deadline {
            break;
        }
    }
    let rate = Rate {
        n,
        took: started.elapsed(),
        complete: n == CHANGES as u64,
        cpu: None,
    };
    assert_eq!(
        clinic::settled(&db).await,
        (n as i64, 0),
        "every item settled was Synced"
    );
    drop(store);
    db.drop_db().await;
    (write, rate)
}

/// The Supabase side at `round_trip`, holding the seeded families as SQL Server holds them
/// (read through the store, sent without the WAN: only the measured part pays the round trip).
async fn seeded_side(db: &SqlDb, round_trip: Duration) -> Side {
    let side = Side::start(round_trip).await;
    let store = db.store();
    let mappers = forward::mappers(&store).await;
    let columns = columns(&store).await;
    let mut existing = Vec::new();
    for (t, (source, key)) in TABLES.iter().enumerate() {
        let ids = db.rows(&format!("SELECT {key} FROM dbo.{source};")).await;
        let keys: Vec<RecordKey> = ids
            .iter()
            .map(|r| fixtures::key(key, i64::from(r.get::<i32, _>(0).expect("an int key"))))
            .collect();
        let rows = store
            .load_rows(source, &columns[t], &keys)
            .await
            .expect("load");
        assert_eq!(rows.len(), keys.len(), "seeded rows of {source}");
        // Keyed by each row's own key: load_rows promises no order.
        existing.extend(rows.into_iter().map(|row| {
            let id = match row.get(*key) {
                Some(SqlValue::Int(id)) => *id,
                other => panic!("{source}.{key} is not an int: {other:?}"),
            };
            Change {
                table: t,
                key: fixtures::key(key, id),
                row: Some(row),
            }
        }));
    }
    forward::bulk_send(
        &side.direct_client(),
        &mappers,
        &existing,
        (1000, 4),
        forward::Rows::Plain,
    )
    .await;
    side
}

/// The agent drains the burst (written before the notification); stops at `deadline`.
async fn agent_burst(round_trip: Duration, batch: usize, deadline: Duration) -> Rate {
    let db = SqlDb::create().await;
    db.assert_ado_reaches_it().await;
    clinic::seed(&db).await;
    let side = seeded_side(&db, round_trip).await;
    let agent = TdsAgent::start(&side, &db, batch).await;
    clinic::write_burst(&db).await;
    let started = Instant::now();
    agent.notify().await;
    let rate = loop {
        let (synced, failed) = clinic::settled(&db).await;
        if failed > 0 {
            panic!("{failed} items Failed: {:#?}", clinic::errors(&db).await);
        }
        let done = synced + failed;
        if done >= CHANGES || started.elapsed() > deadline {
            break Rate {
                n: done as u64,
                took: started.elapsed(),
                complete: done >= CHANGES,
                cpu: None,
            };
        }
        tokio::time::sleep(POLL).await;
    };
    if !rate.complete {
        eprintln!(
            "  cut at the deadline; items with errors: {:#?}",
            clinic::errors(&db).await
        );
    }
    agent.stop().await;
    if rate.complete {
        let mappers = forward::mappers(&db.store()).await;
        for ((source, _), mapper) in TABLES.iter().zip(&mappers) {
            let target = mapper.target();
            let counts = (clinic::count(&db, source).await, side.count(target).await);
            assert_eq!(
                counts,
                (clinic::ROWS_PER_TABLE, clinic::ROWS_PER_TABLE),
                "rows in {source} / {target} after the burst (SQL Server, Supabase)"
            );
        }
    }
    drop(side);
    db.drop_db().await;
    rate
}

/// Polls `condition` until it holds, 60 s at most (then panics naming `what`): the wait
/// tests/common/mssql.rs expects from its parent module, and the agent's start-up wait here.
pub async fn wait_for<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
