//! An idle worker does nothing: no queries, no timers. Runs the forward worker on paused time,
//! so "an hour later" is exact and instant.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::forward::fixture::{key, worker};
use crate::sqlserver::memory::MemoryStore;
use crate::sqlserver::{SettleItem, Settlement, SqlStore};
use crate::supabase::memory::MemorySupabase;

/// Lets every task run until all are blocked.
async fn settle_tasks() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn idle_means_asleep_and_retries_wake_on_a_one_shot_timer() {
    let store = MemoryStore::sample_clinic();
    let cancel = CancellationToken::new();
    let worker = worker(&store, &MemorySupabase::new(), 50, 10).await;
    let (_handle, task) = worker.spawn(cancel.clone());
    settle_tasks().await;
    assert_eq!(store.calls("claim"), 1, "one start-up drain");

    tokio::time::advance(Duration::from_secs(3600)).await;
    settle_tasks().await;
    assert_eq!(store.calls("claim"), 1, "an hour idle: no claim");
    assert_eq!(store.calls("next_due_in"), 1, "an hour idle: no scan");

    // An item that failed is due again in 30 s: the worker wakes then, once, by itself.
    store.clinic_write("tblPatients", &key("PersonID", 1), None);
    let item = store
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claim")
        .remove(0);
    let retry = Settlement::Retry {
        delay: Duration::from_secs(30),
        error: "test".into(),
    };
    store
        .settle(&[SettleItem {
            id: item.id,
            claim: item.claim,
            outcome: retry,
        }])
        .await
        .expect("settle");
    let before = store.calls("claim");
    _handle.notify();
    settle_tasks().await;
    assert_eq!(
        store.calls("claim"),
        before + 1,
        "the notification drains once; the item is not due yet"
    );
    tokio::time::advance(Duration::from_secs(29)).await;
    settle_tasks().await;
    assert_eq!(store.calls("claim"), before + 1, "not before it is due");
    tokio::time::advance(Duration::from_secs(2)).await;
    settle_tasks().await;
    assert!(store.calls("claim") >= before + 2, "woken when due");
    cancel.cancel();
    task.await.expect("worker stops");
}
