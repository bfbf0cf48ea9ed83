//! The double keeps the PostgreSQL behaviour the forward and catch-up rules depend on.

use super::*;
use crate::supabase::Since;

fn row(value: Value) -> JsonRow {
    value.as_object().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_refused_value_fails_its_whole_request() {
    let s = MemorySupabase::new();
    s.refuse_value("t", "v", json!("bad"));
    let rows = [
        row(json!({"id": 1, "v": "ok"})),
        row(json!({"id": 2, "v": "bad"})),
    ];
    let on = ["id".to_owned()];
    let merge = UpsertMode::Merge;
    let e = s
        .upsert("t", &rows, &on, &merge)
        .await
        .expect_err("refused");
    assert_eq!(e.class(), crate::retry::ErrorClass::Rejected);
    assert!(s.rows("t").is_empty(), "all or nothing");
    s.upsert("t", &rows[..1], &on, &merge)
        .await
        .expect("good row alone");
    assert_eq!(s.rows("t"), [rows[0].clone()]);
}

#[tokio::test]
async fn foreign_keys_hold_both_ways() {
    let s = MemorySupabase::new();
    s.add_foreign_key("child", "parent_id", "parent", "id");
    let on = ["id".to_owned()];
    let merge = UpsertMode::Merge;
    let child = [row(json!({"id": 10, "parent_id": 1}))];
    let e = s
        .upsert("child", &child, &on, &merge)
        .await
        .expect_err("no parent");
    assert_eq!(e.class(), crate::retry::ErrorClass::RowRetryable);
    s.upsert("parent", &[row(json!({"id": 1}))], &on, &merge)
        .await
        .expect("parent");
    s.upsert("child", &child, &on, &merge).await.expect("child");
    let parent_key = vec![("id".to_owned(), json!(1))];
    let e = s
        .delete("parent", std::slice::from_ref(&parent_key))
        .await
        .expect_err("still referenced");
    assert_eq!(e.class(), crate::retry::ErrorClass::RowRetryable);
    assert_eq!(s.rows("parent").len(), 1, "all or nothing");
}

#[tokio::test]
async fn pages_follow_the_keyset_and_the_since_filter() {
    let s = MemorySupabase::new();
    let at = |m: u32| format!("2026-11-25T10:{m:02}:00+00:00");
    s.insert_rows(
        "t",
        [(3, 1), (1, 1), (2, 2), (4, 0)].map(|(id, m)| row(json!({"id": id, "v": at(m)}))),
    );
    let mut page = PageRequest {
        order: vec!["v".to_owned(), "id".to_owned()],
        after: Vec::new(),
        since: Some(Since {
            column: "v".to_owned(),
            at: DateTime::parse_from_rfc3339(&at(1)).expect("time"),
        }),
        limit: 2,
    };
    let ids = |rows: Vec<JsonRow>| rows.iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(s.select_page("t", &page).await.expect("page")),
        [json!(1), json!(3)]
    );
    page.after = vec![("v".to_owned(), json!(at(1))), ("id".to_owned(), json!(3))];
    assert_eq!(
        ids(s.select_page("t", &page).await.expect("page")),
        [json!(2)]
    );
}

#[tokio::test]
async fn the_push_takes_newer_clinic_edits_refuses_ties_and_inserts_missing_rows() {
    use crate::supabase::{PushRow, PushTable};
    let db = MemorySupabase::new();
    let (keys, shared) = (vec!["id".to_owned()], vec!["days".to_owned()]);
    let table = PushTable {
        table: "batches",
        keys: &keys,
        shared: &shared,
    };
    let at = |s: i64| chrono::DateTime::from_timestamp(1_764_000_000 + s, 0).expect("time");
    let row = |days: i64, notes: &str| PushRow {
        row: json!({"id": 1, "days": days, "notes": notes})
            .as_object()
            .cloned()
            .expect("object"),
        changed: [("days".to_owned(), at(days))].into_iter().collect(),
    };
    assert!(db
        .push(&table, &[row(10, "a")])
        .await
        .expect("insert")
        .is_empty());
    // Same time as the stored version: the portal keeps it; clinic-owned columns still go.
    let refused = db.push(&table, &[row(10, "b")]).await.expect("tie");
    assert!(refused.is_empty(), "the same value is no refusal");
    let mut tie = row(10, "c");
    tie.row.insert("days".into(), json!(99));
    let refused = db.push(&table, &[tie]).await.expect("tie");
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].column.as_str(), refused[0].value.clone()),
        ("days", json!(10))
    );
    assert_eq!(db.rows("batches")[0]["notes"], json!("c"));
    let refused = db.push(&table, &[row(11, "d")]).await.expect("newer");
    assert!(refused.is_empty());
    assert_eq!(db.rows("batches")[0]["days"], json!(11));
    assert_eq!(
        db.requests()
            .iter()
            .filter(|r| r.kind == RequestKind::Push)
            .count(),
        4
    );
}
