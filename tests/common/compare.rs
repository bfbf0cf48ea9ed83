//! The end of every fault test: both sides compared row for row, every column both sides sync
//! (Supabase's rows read through PostgREST and decoded as the agent decodes them, so values are
//! compared typed, not as text), and nothing left in between in the queue.

use std::collections::BTreeMap;
use std::time::Duration;

use syncbridge::config::KeyKind;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{Row, TableName};
use syncbridge::supabase::{JsonRow, PageRequest, PostgrestClient, SupabaseApi};
use syncbridge::test_support::RowMapper;

use super::{wait_for, Harness};

/// What a comparison needs of a test's two sides: the SQL Server double, and the Supabase test
/// server with the service key. An agent in process ([`Harness`]) and the real binary over the
/// out-of-process double (`process::Processes`) both have them.
pub trait BothSides {
    fn memory(&self) -> &MemoryStore;
    fn rest_url(&self) -> String;
    fn service_key(&self) -> String;
}

impl BothSides for Harness {
    fn memory(&self) -> &MemoryStore {
        &self.sql
    }

    fn rest_url(&self) -> String {
        self.rest.url()
    }

    fn service_key(&self) -> String {
        self.keys.service_role_jwt().to_owned()
    }
}

/// A PostgREST client of the test server with the service key, as the agent has.
pub fn service_client(h: &impl BothSides) -> PostgrestClient {
    let url = url::Url::parse(&h.rest_url()).expect("url");
    let key = secrecy::SecretString::from(h.service_key());
    PostgrestClient::new(&url, &key, KeyKind::LegacyJwt, Duration::from_secs(10)).expect("client")
}

/// Rows by their Supabase key (as JSON text).
type Rows = BTreeMap<String, Row>;

fn key_of(keys: &[String], json: &JsonRow) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            json.get(k)
                .map(|v| v.to_string().to_lowercase())
                .unwrap_or_default()
        })
        .collect();
    parts.join(",")
}

async fn supabase_rows(client: &PostgrestClient, table: &RowMapper) -> Rows {
    let page = PageRequest {
        order: table.target_keys(),
        after: Vec::new(),
        since: None,
        limit: 100_000,
    };
    let rows = client
        .select_page(table.target(), &page)
        .await
        .expect("Supabase rows");
    rows.iter()
        .map(|r| {
            let decoded = table.from_json(r).expect("a Supabase row decodes");
            (key_of(&table.target_keys(), r), decoded)
        })
        .collect()
}

fn sql_rows(store: &MemoryStore, source: &str, table: &RowMapper) -> Rows {
    let name = TableName::parse(source).expect("a table name").name;
    store
        .rows(&name)
        .iter()
        .map(|r| {
            (
                key_of(&table.target_keys(), &table.to_json(r)),
                table.synced(r),
            )
        })
        .collect()
}

/// The end of a fault test: the queue drained with every item `Synced` and no attempt spent,
/// and both sides equal ([`assert_sides_equal`]).
pub async fn assert_nothing_lost(h: &impl BothSides, map: &TableMap) {
    let store = h.memory();
    wait_for("queue drained", || async {
        store.queue().iter().all(|q| q.status != "Pending")
    })
    .await;
    let queue = store.queue();
    assert!(
        queue
            .iter()
            .all(|q| q.status == "Synced" && q.attempts == 0),
        "{queue:?}"
    );
    assert!(assert_sides_equal(h, map).await > 0, "rows were compared");
}

/// Every table of `map` holds the same rows on both sides, column for column, and no queue
/// item is left Pending or claimed. Returns the number of rows compared.
pub async fn assert_sides_equal(h: &impl BothSides, map: &TableMap) -> usize {
    let store = h.memory();
    let client = service_client(h);
    let openapi = client.schema().await.expect("Supabase's schema");
    let mut compared = 0;
    for spec in &map.tables {
        let table = RowMapper::for_both_sides(store, &openapi, map, &spec.source)
            .await
            .expect("the map resolves");
        let sql = sql_rows(store, &spec.source, &table);
        let supabase = supabase_rows(&client, &table).await;
        assert_eq!(
            sql.keys().collect::<Vec<_>>(),
            supabase.keys().collect::<Vec<_>>(),
            "{}: the same records on both sides",
            spec.source
        );
        for (key, row) in &sql {
            assert_eq!(Some(row), supabase.get(key), "{} {key}", spec.source);
        }
        compared += sql.len();
    }
    let left: Vec<_> = store
        .queue()
        .into_iter()
        .filter(|q| q.status == "Pending" || q.claim.is_some())
        .collect();
    assert!(left.is_empty(), "left in between: {left:?}");
    compared
}
