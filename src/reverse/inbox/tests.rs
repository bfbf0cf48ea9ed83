use serde_json::json;

use super::*;
use crate::reverse::event::EventKind;
use crate::sqlserver::Op;

fn open(dir: &std::path::Path) -> Inbox {
    Inbox::open(LocalDb::open(dir).expect("local database")).expect("inbox")
}

fn ev(key: &str, version: Option<i64>) -> NewEvent {
    NewEvent {
        kind: EventKind::Change(Op::Update),
        table: "aligner_notes".to_owned(),
        record_key: key.to_owned(),
        record: json!({"note_text": key}).as_object().cloned(),
        old_record: None,
        version,
    }
}

#[tokio::test]
async fn events_survive_reopening_and_keep_order_per_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let inbox = open(dir.path());
        inbox
            .append(
                vec![ev("a", Some(1)), ev("b", Some(1)), ev("a", Some(2))],
                None,
            )
            .await
            .expect("append");
    }
    let inbox = open(dir.path());
    let due = inbox.due(10).await.expect("due");
    // The second event of record "a" waits for the first.
    let keys: Vec<_> = due
        .iter()
        .map(|e| (e.event.record_key.as_str(), e.event.version))
        .collect();
    assert_eq!(keys, [("a", Some(1)), ("b", Some(1))]);
    assert_eq!(
        due[0].event.record,
        json!({"note_text": "a"}).as_object().cloned()
    );

    inbox.complete(&due[0]).await.expect("complete");
    assert_eq!(
        inbox
            .version_of("aligner_notes", "a")
            .await
            .expect("version"),
        Some(1)
    );
    let due = inbox.due(10).await.expect("due");
    let keys: Vec<_> = due
        .iter()
        .map(|e| (e.event.record_key.as_str(), e.event.version))
        .collect();
    assert_eq!(keys, [("b", Some(1)), ("a", Some(2))]);
    assert_eq!(inbox.stats().await.expect("stats").depth, 2);
}

#[tokio::test]
async fn retries_wait_and_dead_events_stop_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = open(dir.path());
    inbox
        .append(vec![ev("a", Some(1)), ev("a", Some(2))], None)
        .await
        .expect("append");
    let first = inbox.due(10).await.expect("due").remove(0);
    inbox
        .retry(first.id, 60_000, "SQL Server down".into())
        .await
        .expect("retry");
    assert!(
        inbox.due(10).await.expect("due").is_empty(),
        "a waiting event still blocks its record"
    );
    let next = inbox.next_due_in_ms().await.expect("next").expect("some");
    assert!((59_000..=60_000).contains(&next), "{next}");

    inbox.kill(first.id, "refused".into()).await.expect("kill");
    let due = inbox.due(10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event.version, Some(2));
    let stats = inbox.stats().await.expect("stats");
    assert_eq!((stats.depth, stats.dead), (1, 1));
    assert_eq!(
        inbox.dead_events(5).await.expect("dead")[0].error,
        "refused"
    );
    assert_eq!(inbox.revive_dead().await.expect("revive"), 1);
    assert_eq!(inbox.stats().await.expect("stats").dead, 0);
    let first = inbox.due(10).await.expect("due").remove(0);
    assert_eq!(
        (first.event.version, first.attempts),
        (Some(1), 0),
        "revived ahead of its record's later event"
    );
    inbox.kill(first.id, "refused".into()).await.expect("kill");
    assert_eq!(
        inbox.prune_dead(1).await.expect("prune"),
        0,
        "young dead events are kept"
    );
    assert_eq!(
        inbox.prune_dead(-1).await.expect("prune"),
        1,
        "old dead events are pruned"
    );
    assert_eq!(inbox.stats().await.expect("stats").dead, 0);
}

#[tokio::test]
async fn versions_only_move_forward_and_watermarks_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = open(dir.path());
    let w = Watermark {
        version: "2026-11-25T10:00:00+00:00".into(),
        key: "[[\"note_uid\",\"x\"]]".into(),
    };
    inbox
        .append(
            vec![ev("a", Some(5))],
            Some(("aligner_notes".into(), w.clone())),
        )
        .await
        .expect("append");
    inbox
        .append(vec![ev("a", Some(3))], None)
        .await
        .expect("append");
    for _ in 0..2 {
        let e = inbox.due(1).await.expect("due").remove(0);
        inbox.complete(&e).await.expect("complete");
    }
    assert_eq!(
        inbox.version_of("aligner_notes", "a").await.expect("v"),
        Some(5)
    );
    assert_eq!(
        inbox.watermarks().await.expect("w"),
        vec![("aligner_notes".to_owned(), w)]
    );
    assert_eq!(inbox.stats().await.expect("stats"), InboxStats::default());
}

#[tokio::test]
async fn appends_are_fsynced_and_completions_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = open(dir.path());
    let pragma = |inbox: &Inbox, name: &'static str| {
        let db = inbox.db.clone();
        async move {
            db.with(move |c| {
                c.query_row(&format!("PRAGMA {name}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
            })
            .await
            .expect("pragma")
        }
    };
    use rusqlite::types::Value as Sql;
    inbox
        .append(vec![ev("a", Some(1))], None)
        .await
        .expect("append");
    assert_eq!(
        pragma(&inbox, "synchronous").await,
        Sql::Integer(2),
        "FULL while appending"
    );
    let e = inbox.due(1).await.expect("due").remove(0);
    inbox.complete(&e).await.expect("complete");
    assert_eq!(
        pragma(&inbox, "synchronous").await,
        Sql::Integer(1),
        "NORMAL for completions"
    );
    assert_eq!(
        pragma(&inbox, "journal_mode").await,
        Sql::Text("wal".into())
    );
}

#[tokio::test]
async fn an_event_of_an_unknown_kind_is_given_up_on_and_blocks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = open(dir.path());
    inbox
        .append(vec![ev("a", Some(1)), ev("a", Some(2))], None)
        .await
        .expect("append");
    inbox
        .db
        .with(|c| c.execute("UPDATE events SET op = 'TRUNCATE' WHERE version = 1", []))
        .await
        .expect("tamper");
    let due = inbox.due(10).await.expect("due");
    assert_eq!(due.len(), 0, "the record's head was buried in this pass");
    let due = inbox.due(10).await.expect("due");
    assert_eq!(
        due.iter().map(|e| e.event.version).collect::<Vec<_>>(),
        [Some(2)]
    );
    let dead = inbox.dead_events(5).await.expect("dead");
    assert_eq!(dead[0].error, "unknown event kind webhook/TRUNCATE");
}

#[tokio::test]
async fn concurrent_webhooks_share_one_commit_keep_their_order_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = open(dir.path());
    let events = (0..200).map(|i| inbox.append_webhook(ev(&format!("k{i}"), Some(i))));
    let ids: Vec<i64> = futures_util::future::join_all(events)
        .await
        .into_iter()
        .map(|r| r.expect("stored"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "stored in arrival order: {ids:?}"
    );
    let commits = inbox
        .group
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..200).contains(&commits),
        "{commits} commits for 200 events"
    );
    drop(inbox);
    let stats = open(dir.path()).stats().await.expect("stats");
    assert_eq!(stats.depth, 200, "every acknowledged event is on disk");
}

#[tokio::test]
async fn a_group_that_fails_to_commit_answers_every_request_with_the_error_and_stores_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = open(dir.path());
    inbox
        .db
        .with(|c| {
            c.execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.record_key = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
        })
        .await
        .expect("trigger");
    // Queued together (one group): the good events before and after the poison one.
    let keys = ["a", "b", "poison", "c"];
    let answers =
        futures_util::future::join_all(keys.map(|k| inbox.append_webhook(ev(k, None)))).await;
    assert!(answers.iter().all(Result::is_err), "{answers:?}");
    assert_eq!(
        inbox.stats().await.expect("stats").depth,
        0,
        "no partial write"
    );
    // The writer goes on with the next group.
    inbox
        .db
        .with(|c| c.execute_batch("DROP TRIGGER refuse"))
        .await
        .expect("drop trigger");
    inbox
        .append_webhook(ev("d", None))
        .await
        .expect("stored after");
    assert_eq!(inbox.stats().await.expect("stats").depth, 1);
}
