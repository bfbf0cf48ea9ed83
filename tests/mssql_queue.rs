//! `TdsStore`'s SyncQueue side against a real SQL Server (2017+), on `dbo.SyncQueue` filled by the
//! sample tables' triggers: claims, settlements, leases and next-due times, the maintenance
//! procedures, retrying and listing Failed items, and a wait that a writer's commit ends (watched in sys.dm_exec_requests). Two
//! agents claiming at once, READPAST and the lock timeout are the self-test's queue checks
//! (tests/mssql_self_test.rs). Needs MSSQL_TEST_URL: see tests/common/mssql.rs.

mod common;

use std::time::{Duration, Instant};

use common::mssql::{exec, query_int, SqlDb};
use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::sqlserver::{
    QueueId, QueueItem, RetryFilter, SettleItem, Settlement, SqlStore, WriterWait,
};
use uuid::Uuid;

/// `store.claim(limit, lease)`, which must succeed.
async fn claim(store: &TdsStore, limit: usize, lease: Duration) -> Vec<QueueItem> {
    store.claim(limit, lease).await.unwrap()
}

/// `store.wait_for_writers(max_wait)`, which must succeed.
async fn wait_for_writers(store: &TdsStore, max_wait: Duration) -> WriterWait {
    store.wait_for_writers(max_wait).await.unwrap()
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn claim_settle_next_due_and_lease() {
    let db = SqlDb::create().await;
    let store = db.store();
    assert_eq!(store.next_due_in().await.unwrap(), None);
    db.sql("INSERT INTO dbo.tblPatients (PatientName) VALUES (N'A'), (N'B');")
        .await;
    db.sql("UPDATE dbo.tblPatients SET Phone = N'1' WHERE PersonID = 1;")
        .await;
    // Due now (SyncQueue keeps milliseconds, so "now" may round up by one).
    let due_now = |d: Option<Duration>| d.is_some_and(|d| d <= Duration::from_millis(5));
    assert!(due_now(store.next_due_in().await.unwrap()));

    // Limit 1 takes the oldest item and its sibling (same record), not the other record.
    let items = claim(&store, 1, Duration::from_secs(600)).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|i| i.record_id == "{\"PersonID\":1}"));
    assert!(
        due_now(store.next_due_in().await.unwrap()),
        "PersonID 2 is still due"
    );
    let rest = claim(&store, 10, Duration::from_secs(600)).await;
    assert_eq!(rest.len(), 1);
    assert!(
        claim(&store, 10, Duration::from_secs(600)).await.is_empty(),
        "leased items are not due"
    );
    let lease = store.next_due_in().await.unwrap().unwrap();
    assert!(
        lease > Duration::from_secs(590) && lease <= Duration::from_secs(600),
        "{lease:?}"
    );

    let stale = SettleItem {
        id: rest[0].id,
        claim: syncbridge::sqlserver::ClaimToken(Uuid::new_v4()),
        outcome: Settlement::Synced,
    };
    let mut settle: Vec<_> = items
        .iter()
        .map(|i| SettleItem {
            id: i.id,
            claim: i.claim,
            outcome: Settlement::Synced,
        })
        .collect();
    settle.push(stale);
    store.settle(&settle).await.unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        (stats.synced, stats.pending),
        (2, 1),
        "a stale token settles nothing"
    );

    let retry = SettleItem {
        id: rest[0].id,
        claim: rest[0].claim,
        outcome: Settlement::Retry {
            delay: Duration::from_secs(3600),
            error: "e".repeat(3000),
        },
    };
    store.settle(&[retry]).await.unwrap();
    let due = store.next_due_in().await.unwrap().unwrap();
    assert!(due > Duration::from_secs(3590), "{due:?}");
    assert_eq!(
        db.int("SELECT Attempts FROM dbo.SyncQueue WHERE Status = 'Pending';")
            .await,
        1
    );
    assert_eq!(
        db.int("SELECT LEN(LastError) FROM dbo.SyncQueue WHERE Status = 'Pending';")
            .await,
        2000
    );

    // A crashed agent's claims: release_own_claims makes them due at once.
    db.sql("UPDATE dbo.SyncQueue SET NextAttemptAt = SYSUTCDATETIME() WHERE Status = 'Pending';")
        .await;
    let again = claim(&store, 10, Duration::from_secs(600)).await;
    assert_eq!(again[0].attempts, 1);
    assert_eq!(store.release_own_claims().await.unwrap(), 1);
    assert!(due_now(store.next_due_in().await.unwrap()));
    let failed = claim(&store, 10, Duration::from_secs(600)).await;
    store
        .settle(&[SettleItem {
            id: failed[0].id,
            claim: failed[0].claim,
            outcome: Settlement::Failed {
                error: "gave up".into(),
            },
        }])
        .await
        .unwrap();
    assert_eq!(store.queue_stats().await.unwrap().failed, 1);
    assert_eq!(store.next_due_in().await.unwrap(), None);
    db.sql("EXEC dbo.sp_SyncQueueRetryFailed;").await;
    assert_eq!(store.queue_stats().await.unwrap().pending, 1);
    db.sql("UPDATE dbo.SyncQueue SET CreatedAt = DATEADD(DAY, -40, CreatedAt) WHERE Status = 'Synced'; EXEC dbo.sp_SyncQueuePurgeSynced @olderThanDays = 30, @batchSize = 1;").await;
    assert_eq!(store.queue_stats().await.unwrap().synced, 0);
    db.drop_db().await;
}

/// Claims every due item and settles each `Failed` with its own error.
async fn fail_all(store: &TdsStore) {
    let items = claim(store, 100, Duration::from_secs(600)).await;
    let settled: Vec<SettleItem> = items
        .iter()
        .map(|i| SettleItem {
            id: i.id,
            claim: i.claim,
            outcome: Settlement::Failed {
                error: format!("failed {}", i.id.0),
            },
        })
        .collect();
    store.settle(&settled).await.unwrap();
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn retry_failed_resets_what_the_filter_selects_and_recent_failures_lists_them() {
    let db = SqlDb::create().await;
    let store = db.store();
    db.sql("INSERT INTO dbo.tblPatients (PatientName) VALUES (N'A'), (N'B'), (N'C');")
        .await;
    db.sql("INSERT INTO dbo.tblWork (PersonID, TypeOfWork) VALUES (1, N'Aligners');")
        .await;
    fail_all(&store).await;
    let failed = store.recent_failures(10).await.unwrap();
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(failed.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(failed[0].table, "tblWork");
    assert_eq!(
        failed[0].error.as_deref(),
        Some(&*format!("failed {}", failed[0].id.0))
    );
    assert_eq!(
        (failed[0].attempts, failed[0].operation.as_str()),
        (1, "INSERT")
    );
    assert!(failed[0].last_attempt.is_some());
    assert_eq!(store.recent_failures(2).await.unwrap().len(), 2);

    // One item by id, then a table in another case (the column's collation decides), then the rest.
    let one = RetryFilter {
        table: None,
        id: Some(failed[3].id),
    };
    assert_eq!(store.retry_failed(&one).await.unwrap(), 1);
    let table = RetryFilter {
        table: Some("TBLWORK".into()),
        id: None,
    };
    assert_eq!(store.retry_failed(&table).await.unwrap(), 1);
    let none = RetryFilter {
        table: Some("tblWork".into()),
        id: Some(QueueId(i64::MAX)),
    };
    assert_eq!(store.retry_failed(&none).await.unwrap(), 0);
    assert_eq!(store.queue_stats().await.unwrap().pending, 2);
    assert_eq!(
        db.int("SELECT COUNT(*) FROM dbo.SyncQueue WHERE Status = 'Pending' AND Attempts = 0 AND ClaimToken IS NULL AND NextAttemptAt <= SYSUTCDATETIME();")
            .await,
        2
    );
    assert_eq!(
        store.retry_failed(&RetryFilter::default()).await.unwrap(),
        2
    );
    assert_eq!(store.queue_stats().await.unwrap().failed, 0);
    assert_eq!(claim(&store, 100, Duration::from_secs(60)).await.len(), 4);
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn wait_for_writers_waits_for_an_open_transaction() {
    let db = SqlDb::create().await;
    let store = db.store();
    assert_eq!(
        wait_for_writers(&store, Duration::from_secs(5)).await,
        WriterWait::Idle
    );

    let mut writer = db.connect().await;
    let writer_spid = query_int(&mut writer, "SELECT @@SPID;").await;
    exec(
        &mut writer,
        "BEGIN TRANSACTION; INSERT INTO dbo.tblPatients (PatientName) VALUES (N'uncommitted');",
    )
    .await;
    assert!(
        claim(&store, 10, Duration::from_secs(60)).await.is_empty(),
        "uncommitted rows are skipped"
    );
    let started = Instant::now();
    // Commit only once the store is really blocked on the writer's lock.
    let blocked = format!(
        "SELECT COUNT(*) FROM sys.dm_exec_requests
         WHERE blocking_session_id = {writer_spid} AND wait_type LIKE 'LCK%' AND session_id <> @@SPID;"
    );
    let commit = async {
        db.wait_int("the store waiting on the writer's lock", &blocked, |n| {
            n > 0
        })
        .await;
        exec(&mut writer, "COMMIT TRANSACTION;").await;
    };
    let (waited, ()) = tokio::join!(store.wait_for_writers(Duration::from_secs(20)), commit);
    assert_eq!(waited.unwrap(), WriterWait::Waited);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(claim(&store, 10, Duration::from_secs(60)).await.len(), 1);

    // A writer that stays open: the wait ends at max_wait, still as Waited.
    exec(
        &mut writer,
        "BEGIN TRANSACTION; INSERT INTO dbo.tblPatients (PatientName) VALUES (N'slow');",
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        wait_for_writers(&store, Duration::from_millis(300)).await,
        WriterWait::Waited
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    exec(&mut writer, "ROLLBACK TRANSACTION;").await;
    assert_eq!(
        wait_for_writers(&store, Duration::from_secs(5)).await,
        WriterWait::Idle
    );
    drop(writer);
    drop(store);
    db.drop_db().await;
}

#[tokio::test]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn unsettled_in_sees_pending_and_claimed_items_of_the_named_tables_only() {
    let db = SqlDb::create().await;
    let store = db.store();
    let tables = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert!(!store.unsettled_in(&tables(&["tblPatients"])).await.unwrap());
    db.sql("INSERT INTO dbo.tblPatients (PatientName) VALUES (N'A');")
        .await;
    assert!(store.unsettled_in(&tables(&["tblPatients"])).await.unwrap());
    // Names compare under the column's collation, as the claim compares them.
    assert!(store
        .unsettled_in(&tables(&["tblWork", "TBLPATIENTS"]))
        .await
        .unwrap());
    assert!(!store.unsettled_in(&tables(&["tblWork"])).await.unwrap());
    // Claimed (another agent's lease) is still unsettled; Synced is not.
    let items = claim(&store, 10, Duration::from_secs(600)).await;
    assert!(store.unsettled_in(&tables(&["tblPatients"])).await.unwrap());
    let done: Vec<_> = items
        .iter()
        .map(|i| SettleItem {
            id: i.id,
            claim: i.claim,
            outcome: Settlement::Synced,
        })
        .collect();
    store.settle(&done).await.unwrap();
    assert!(!store.unsettled_in(&tables(&["tblPatients"])).await.unwrap());
    assert!(!store.unsettled_in(&[]).await.unwrap());
    db.drop_db().await;
}
