//! An idle agent does nothing: no queries, no timers. Runs the forward worker on paused time,
//! so "an hour later" is exact and instant.

use std::sync::Arc;
use std::time::Duration;

use syncbridge::forward::{ForwardSettings, ForwardWorker};
use syncbridge::mapping::{ResolvedMap, TableMap};
use syncbridge::retry::Backoff;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{KeyPart, RecordKey, SettleItem, Settlement, SqlStore};
use syncbridge::status::Status;
use syncbridge::supabase::PostgrestClient;
use tokio_util::sync::CancellationToken;

async fn worker(store: &MemoryStore) -> ForwardWorker {
    let map = TableMap::sample_clinic();
    let described = syncbridge::app::describe_all(store, &map)
        .await
        .expect("describe");
    let url = url::Url::parse("http://127.0.0.1:9").expect("url");
    let key = secrecy::SecretString::from("sb_secret_unused");
    ForwardWorker {
        store: Arc::new(store.clone()),
        supabase: PostgrestClient::new(
            &url,
            &key,
            syncbridge::config::KeyKind::Secret,
            Duration::from_secs(1),
        )
        .expect("client"),
        map: Arc::new(ResolvedMap::resolve(&map, &described).expect("resolve")),
        settings: ForwardSettings {
            batch_size: 50,
            lease: Duration::from_secs(120),
            max_attempts: 10,
            backoff: Backoff {
                base: Duration::from_secs(2),
                cap: Duration::from_secs(600),
            },
            writer_wait: Duration::from_secs(1),
        },
        status: Arc::new(Status::default()),
    }
}

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
    let (_handle, task) = worker(&store).await.spawn(cancel.clone());
    settle_tasks().await;
    assert_eq!(store.calls("claim"), 1, "one start-up drain");

    tokio::time::advance(Duration::from_secs(3600)).await;
    settle_tasks().await;
    assert_eq!(store.calls("claim"), 1, "an hour idle: no claim");
    assert_eq!(store.calls("next_due_in"), 1, "an hour idle: no scan");

    // An item that failed is due again in 30 s: the worker wakes then, once, by itself.
    let k = RecordKey(
        [("PersonID".to_owned(), KeyPart::Int(1))]
            .into_iter()
            .collect(),
    );
    store.clinic_write("tblPatients", &k, None);
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
