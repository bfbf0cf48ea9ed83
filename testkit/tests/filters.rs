//! GET, PATCH and DELETE with PostgREST filters: operators, in-lists, logic trees, ordering,
//! pagination (including the keyset form the agent's catch-up uses) and their errors.

mod common;

use axum::http::Method;
use common::{header, json, send, Env};
use serde_json::{json, Value};

const NOTE_IDS: [&str; 5] = [
    "00000000-0000-0000-0000-000000000001",
    "00000000-0000-0000-0000-000000000002",
    "00000000-0000-0000-0000-000000000003",
    "00000000-0000-0000-0000-000000000004",
    "00000000-0000-0000-0000-000000000005",
];

/// Five notes; 2, 3 and 4 share one updated_at, so keyset pagination must break the tie by key.
async fn seed_notes(env: &Env) {
    env.seed_parents().await;
    let client = env.db.client();
    // Triggers off for this session only, so the fixed updated_at values survive.
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .expect("replica");
    for (i, id) in NOTE_IDS.iter().enumerate() {
        let stamp = match i {
            0 => "2024-06-01 10:00:00.100+00",
            1..=3 => "2024-06-01 10:00:00.200+00",
            _ => "2024-06-01 10:00:00.300+00",
        };
        client
            .execute(
                "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text, updated_at)
                 VALUES ($1::text::uuid, 1, $2, $3, $4::text::timestamptz)",
                &[id, &if i % 2 == 0 { "Lab" } else { "Doctor" }, &format!("note {}", i + 1), &stamp],
            )
            .await
            .expect("insert note");
    }
    client
        .batch_execute("SET session_replication_role = origin")
        .await
        .expect("origin");
}

fn uids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["note_uid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn keyset_pagination_visits_every_row_once() {
    let env = Env::start().await;
    seed_notes(&env).await;
    let mut seen = Vec::new();
    let mut cursor: Option<(String, String)> = None;
    for _page in 0..10 {
        let mut path =
            "/aligner_notes?select=note_uid,updated_at&order=updated_at.asc,note_uid.asc&limit=2"
                .to_owned();
        if let Some((at, uid)) = &cursor {
            // The timestamp carries a '+', which must be percent-encoded in a query string.
            let at = at.replace('+', "%2B");
            path.push_str(&format!(
                "&or=(updated_at.gt.{at},and(updated_at.eq.{at},note_uid.gt.{uid}))"
            ));
        }
        let (status, headers, body) = send(env.service(Method::GET, &path)).await;
        assert_eq!(status, 200, "{body}");
        let rows = json(&body);
        let page = uids(&rows);
        if page.is_empty() {
            assert_eq!(header(&headers, "content-range"), Some("*/*"));
            break;
        }
        assert_eq!(
            header(&headers, "content-range"),
            Some(format!("0-{}/*", page.len() - 1).as_str())
        );
        let last = &rows[page.len() - 1];
        cursor = Some((
            last["updated_at"].as_str().expect("timestamp").to_owned(),
            last["note_uid"].as_str().expect("uid").to_owned(),
        ));
        seen.extend(page);
    }
    assert_eq!(seen, NOTE_IDS);
}

#[tokio::test]
async fn order_limit_offset_select_and_count() {
    let env = Env::start().await;
    seed_notes(&env).await;
    let (status, headers, body) = send(
        env.service(Method::GET, "/aligner_notes?select=note_text&note_type=eq.Lab&order=note_text.desc&limit=2&offset=1")
            .header("Prefer", "count=exact"),
    )
    .await;
    // Lab notes are 1, 3 and 5; descending, skip one, take two.
    assert_eq!(
        json(&body),
        json!([{"note_text": "note 3"}, {"note_text": "note 1"}])
    );
    assert_eq!(status, 206);
    assert_eq!(header(&headers, "content-range"), Some("1-2/3"));
    assert_eq!(header(&headers, "preference-applied"), Some("count=exact"));

    let (status, _, body) = send(env.service(Method::GET, "/aligner_notes?select=nope")).await;
    assert_eq!((status, json(&body)["code"].as_str()), (400, Some("42703")));
    let (status, _, body) = send(env.service(Method::GET, "/aligner_notes?bogus=eq.1")).await;
    assert_eq!(status, 400);
    assert_eq!(
        json(&body)["message"],
        "column aligner_notes.bogus does not exist"
    );
    let (status, _, body) =
        send(env.service(Method::GET, "/aligner_notes?or=(note_text.eq.1")).await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (400, Some("PGRST100"))
    );
}

#[tokio::test]
async fn values_render_as_postgres_to_json_does() {
    let env = Env::start().await;
    env.seed_parents().await;
    env.db
        .client()
        .batch_execute(
            "INSERT INTO aligner_batches (aligner_batch_id, aligner_set_id, batch_sequence, days, manufacture_date, label_code)
             VALUES (5, 1, 1, 14, '2024-06-02', '\\x0aff'::bytea);
             UPDATE aligner_sets SET set_cost = 1500.50 WHERE aligner_set_id = 1;",
        )
        .await
        .expect("seed");
    let (_, _, body) = send(env.service(
        Method::GET,
        "/aligner_batches?aligner_batch_id=eq.5&select=days,manufacture_date,label_code,notes",
    ))
    .await;
    assert_eq!(
        body,
        r#"[{"days":14,"manufacture_date":"2024-06-02","label_code":"\\x0aff","notes":null}]"#
    );
    let (_, _, body) =
        send(env.service(Method::GET, "/aligner_sets?select=set_cost,is_active")).await;
    assert_eq!(body, r#"[{"set_cost":1500.50,"is_active":true}]"#);
}

#[tokio::test]
async fn delete_with_in_and_or_filters() {
    let env = Env::start().await;
    seed_notes(&env).await;
    let in_list = format!(
        "/aligner_notes?note_uid=in.({},\"{}\")",
        NOTE_IDS[0], NOTE_IDS[1]
    );
    let (status, headers, body) = send(env.service(Method::DELETE, &in_list)).await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(header(&headers, "content-range"), Some("*/*"));

    let (status, _, body) = send(
        env.service(
            Method::DELETE,
            "/aligner_notes?or=(note_text.eq.note%203,and(note_type.eq.Lab,note_text.like.*5))",
        )
        .header("Prefer", "return=representation"),
    )
    .await;
    assert_eq!(status, 200);
    let mut deleted = uids(&json(&body));
    deleted.sort();
    assert_eq!(deleted, vec![NOTE_IDS[2], NOTE_IDS[4]]);
    let left = env
        .db
        .query_json("SELECT note_text FROM aligner_notes")
        .await
        .expect("query");
    assert_eq!(left, vec![json!({"note_text": "note 4"})]);

    // pg-safeupdate: no filter, no delete.
    let (status, _, body) = send(env.service(Method::DELETE, "/aligner_notes")).await;
    assert_eq!(status, 400);
    assert_eq!(
        json(&body),
        json!({"code": "21000", "details": null, "hint": null, "message": "DELETE requires a WHERE clause"})
    );
    assert_eq!(
        env.db
            .query_json("SELECT 1 FROM aligner_notes")
            .await
            .expect("query")
            .len(),
        1
    );
}

#[tokio::test]
async fn patch_updates_only_filtered_rows() {
    let env = Env::start().await;
    seed_notes(&env).await;
    let (status, headers, body) = send(
        env.service(Method::PATCH, "/aligner_notes?note_type=eq.Doctor")
            .json(&json!({"is_read": true})),
    )
    .await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(header(&headers, "content-range"), Some("0-1/*"));
    let read = env
        .db
        .query_json("SELECT note_text FROM aligner_notes WHERE is_read ORDER BY note_text")
        .await
        .expect("query");
    assert_eq!(
        read,
        vec![
            json!({"note_text": "note 2"}),
            json!({"note_text": "note 4"})
        ]
    );

    let (status, _, body) = send(
        env.service(
            Method::PATCH,
            &format!("/aligner_notes?note_uid=eq.{}", NOTE_IDS[0]),
        )
        .header("Prefer", "return=representation")
        .json(&json!({"note_text": "edited", "is_edited": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)[0]["note_text"], "edited");

    let (status, _, body) = send(
        env.service(Method::PATCH, "/aligner_notes")
            .json(&json!({"is_read": false})),
    )
    .await;
    assert_eq!((status, json(&body)["code"].as_str()), (400, Some("21000")));
    let (status, _, body) = send(
        env.service(Method::PATCH, "/aligner_notes?note_type=eq.Lab")
            .json(&json!({"colour": "red"})),
    )
    .await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (400, Some("PGRST204"))
    );
}
