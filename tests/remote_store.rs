//! The out-of-process SQL Server double: every `SqlStore` method called through
//! `RemoteStore` answers what the `MemoryStore` behind the server answers, every value type
//! survives the wire, the caller's agent id owns its claims, and the faults a test turns on
//! (the double down, one method failing, nothing listening) reach the caller as SQL Server
//! being unavailable.

mod common;

use std::time::Duration;

use common::*;
use syncbridge::retry::ErrorClass;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::remote::RemoteStore;
use syncbridge::sqlserver::*;
use syncbridge::test_support::remote::RemoteServer;

async fn served() -> (RemoteServer, RemoteStore) {
    let server = RemoteServer::start(MemoryStore::sample_clinic())
        .await
        .expect("server");
    let client = RemoteStore::new(server.addr(), "remote-agent".to_owned());
    (server, client)
}

fn seed(store: &MemoryStore) {
    seed_parents(store);
    store.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 14)),
    );
}

#[tokio::test]
async fn every_method_answers_through_the_wire_as_the_double_does() {
    let (server, remote) = served().await;
    let direct = server.store().clone();
    seed(&direct);
    remote.ping().await.expect("ping");
    for table in [
        "tblPatients",
        "tblWork",
        "tblAlignerSets",
        "tblAlignerBatches",
        "nope",
    ] {
        assert_eq!(
            remote.describe_table(table).await.expect("describe"),
            direct.describe_table(table).await.expect("describe"),
            "{table}"
        );
    }
    // Rows of every value type the sample schema has (int, text, date, datetime, bit, GUID,
    // NULL, money, decimal, datetimeoffset, binary) come back equal.
    for (table, key) in [
        ("tblPatients", key("PersonID", 1)),
        ("tblWork", key("WorkID", 1)),
        ("tblAlignerSets", key("AlignerSetID", 1)),
        ("tblAlignerBatches", key("AlignerBatchID", 1)),
    ] {
        let columns = direct.describe_table(table).await.unwrap().unwrap();
        let keys = [key];
        let via_wire = remote.load_rows(table, &columns, &keys).await.unwrap();
        assert_eq!(via_wire.len(), 1, "{table}");
        assert_eq!(
            via_wire,
            direct.load_rows(table, &columns, &keys).await.unwrap()
        );
    }
    assert_eq!(
        remote.setup_report().await.unwrap(),
        direct.setup_report().await.unwrap()
    );
    let items = remote.claim(2, Duration::from_secs(60)).await.unwrap();
    assert_eq!(items.len(), 2);
    assert!(direct
        .queue()
        .iter()
        .filter(|q| q.claim.is_some())
        .all(|q| q.claimed_by.as_deref() == Some("remote-agent")));
    let settle = |item: &QueueItem, outcome| SettleItem {
        id: item.id,
        claim: item.claim,
        outcome,
    };
    remote
        .settle(&[
            settle(&items[0], Settlement::Synced),
            settle(
                &items[1],
                Settlement::Failed {
                    error: "refused".to_owned(),
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        remote.queue_stats().await.unwrap(),
        direct.queue_stats().await.unwrap()
    );
    let failures = remote.recent_failures(10).await.unwrap();
    assert_eq!(failures, direct.recent_failures(10).await.unwrap());
    assert_eq!(failures.len(), 1);
    assert_eq!(
        remote.next_due_in().await.unwrap(),
        Some(Duration::ZERO),
        "more items are due"
    );
    assert_eq!(
        remote
            .wait_for_writers(Duration::from_millis(10))
            .await
            .unwrap(),
        WriterWait::Idle
    );
    let more = remote.claim(1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(remote.release_own_claims().await.unwrap(), 1);
    let filter = RetryFilter::default();
    assert_eq!(remote.retry_failed(&filter).await.unwrap(), 1);
    let write = ReverseWrite {
        guard: None,
        table: "tblAlignerBatches".to_owned(),
        key: vec![("AlignerBatchID".to_owned(), SqlValue::Int(1))],
        action: WriteAction::UpdateOnly {
            update: vec![("Days".to_owned(), SqlValue::Int(21))],
        },
    };
    assert_eq!(remote.apply(&write).await.unwrap(), WriteOutcome::Updated);
    assert_eq!(days(&direct, 1), Some(SqlValue::Int(21)));
    // The backfill and verify methods: a page read, a page queued, records queued.
    let page = KeyPage {
        table: "tblPatients".to_owned(),
        keys: vec!["PersonID".to_owned()],
        after: None,
        limit: 10,
    };
    let columns = direct.describe_table("tblPatients").await.unwrap().unwrap();
    let rows = remote.read_page(&page, &columns).await.unwrap();
    assert!(!rows.is_empty());
    assert_eq!(rows, direct.read_page(&page, &columns).await.unwrap());
    let before = direct.queue().len();
    let done = remote.backfill_page(&page).await.unwrap();
    assert_eq!(done.enqueued as usize, rows.len());
    assert!(done.last.is_some());
    let after_page = KeyPage {
        after: done.last.clone(),
        ..page.clone()
    };
    assert_eq!(remote.backfill_page(&after_page).await.unwrap().enqueued, 0);
    // Patient 1's backfill item waits unclaimed: it gets no second one...
    let one = [key("PersonID", 1)];
    let queue_one = || remote.queue_records("tblPatients", &page.keys, &one, None);
    assert_eq!(queue_one().await.unwrap(), 0);
    assert_eq!(direct.queue().len(), before + rows.len());
    // ...until nothing of it waits.
    direct.clear_queue();
    assert_eq!(queue_one().await.unwrap(), 1);
    assert_eq!(queue_one().await.unwrap(), 0);
    assert_eq!(direct.queue().len(), 1);
    // Claimed, it holds no second one back, unless Supabase was seen holding an older clinic
    // version than that item (a late echo): then the item brings the newer one anyway.
    direct.claim(10, Duration::from_secs(60)).await.unwrap();
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let late = remote.queue_records("tblPatients", &page.keys, &one, Some(an_hour_ago));
    assert_eq!(late.await.unwrap(), 0);
    assert_eq!(queue_one().await.unwrap(), 1);
    let tables = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    for names in [&["tblPatients", "tblWork"][..], &["tblAlignerNotes"], &[]] {
        assert_eq!(
            remote.unsettled_in(&tables(names)).await.unwrap(),
            direct.unsettled_in(&tables(names)).await.unwrap(),
            "{names:?}"
        );
    }
    assert!(remote
        .unsettled_in(&tables(&["tblPatients"]))
        .await
        .unwrap());
}

#[tokio::test]
async fn faults_reach_the_caller_as_sql_server_unavailable() {
    let (server, remote) = served().await;
    server.store().set_down(true);
    let down = remote.ping().await.expect_err("down");
    assert!(matches!(down, StoreError::Unavailable(_)), "{down}");
    server.store().set_down(false);
    server.fail_next("claim", 1);
    let failed = remote
        .claim(10, Duration::from_secs(5))
        .await
        .expect_err("failed");
    assert_eq!(failed.class(), ErrorClass::Outage);
    remote
        .claim(10, Duration::from_secs(5))
        .await
        .expect("only once");
    assert_eq!(server.calls("claim"), 2);
    server.set_unreachable(true).await.unwrap();
    let refused = remote.ping().await.expect_err("nothing listens");
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused}");
    server.set_unreachable(false).await.unwrap();
    remote.ping().await.expect("back");
    // A refusal of the double's own keeps its class across the wire.
    server.store().reject_next_applies(1);
    let write = ReverseWrite {
        guard: None,
        table: "tblPatients".to_owned(),
        key: vec![("PersonID".to_owned(), SqlValue::Int(9))],
        action: WriteAction::Delete,
    };
    let rejected = remote.apply(&write).await.expect_err("rejected");
    assert!(matches!(rejected, StoreError::Rejected(_)), "{rejected}");
}
