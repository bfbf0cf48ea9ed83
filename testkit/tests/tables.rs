//! The table requests syncbridge sends, answered as PostgREST v12 answers them: upserts with
//! `on_conflict` and both resolutions, PATCH by key, DELETE by single and composite keys,
//! keyset pages, and the errors the agent classifies.

mod common;

use common::{json, send, Env};
use reqwest::Method;
use serde_json::{json, Value};

const MERGE: &str = "resolution=merge-duplicates,return=minimal";
const IGNORE: &str = "resolution=ignore-duplicates,return=minimal";

fn patient(id: i32, name: &str) -> Value {
    json!({"person_id": id, "patient_name": name, "patient_guid": "6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c10",
           "date_added": "2024-05-01T09:30:00.123"})
}

async fn upsert(env: &Env, path: &str, prefer: &str, rows: Value) -> (u16, String) {
    send(
        env.service(Method::POST, path)
            .header("Prefer", prefer)
            .json(&rows),
    )
    .await
}

async fn names(env: &Env) -> Vec<Value> {
    env.rows("SELECT person_id, patient_name FROM patients ORDER BY 1")
        .await
}

#[tokio::test]
async fn upserts_merge_or_ignore_duplicates_with_v12_statuses() {
    let env = Env::start().await;
    let path = "/patients?on_conflict=person_id";
    let new = json!([patient(1, "Ada"), patient(2, "Grace")]);
    assert_eq!(upsert(&env, path, MERGE, new).await, (201, String::new()));
    // Only existing keys: every row merges, and v12 answers 200 instead of 201.
    let existing = json!([patient(1, "Ada L."), patient(2, "Grace H.")]);
    assert_eq!(upsert(&env, path, MERGE, existing).await.0, 200);
    let mixed = json!([patient(2, "Grace"), patient(3, "Edsger")]);
    assert_eq!(upsert(&env, path, MERGE, mixed).await.0, 201);
    // ignore-duplicates inserts the new row and leaves the existing one alone.
    let ignored = json!([patient(1, "Someone else"), patient(4, "Barbara")]);
    assert_eq!(upsert(&env, path, IGNORE, ignored).await.0, 201);
    assert_eq!(
        names(&env).await,
        vec![
            json!({"person_id": 1, "patient_name": "Ada L."}),
            json!({"person_id": 2, "patient_name": "Grace"}),
            json!({"person_id": 3, "patient_name": "Edsger"}),
            json!({"person_id": 4, "patient_name": "Barbara"}),
        ]
    );
    // on_conflict is honoured only with a resolution: a plain insert of a key conflicts.
    let (status, body) = send(env.service(Method::POST, path).json(&patient(1, "x"))).await;
    assert_eq!((status, json(&body)["code"].as_str()), (409, Some("23505")));
}

#[tokio::test]
async fn composite_conflict_targets_and_the_columns_parameter() {
    let env = Env::start().await;
    env.db
        .client()
        .batch_execute(
            "CREATE TABLE visits (id serial PRIMARY KEY, clinic_id int NOT NULL, visit_no int NOT NULL,
                                  note text, fee numeric, UNIQUE (clinic_id, visit_no))",
        )
        .await
        .expect("create table");
    let path = "/visits?on_conflict=clinic_id,visit_no&columns=clinic_id,visit_no,note";
    let first = json!([{"clinic_id": 1, "visit_no": 1, "note": "a", "ignored": true},
                       {"clinic_id": 1, "visit_no": 2}]);
    assert_eq!(upsert(&env, path, MERGE, first).await.0, 201);
    let second = json!([{"clinic_id": 1, "visit_no": 2, "note": "b"}, {"clinic_id": 2, "visit_no": 1, "note": "c"}]);
    assert_eq!(upsert(&env, path, MERGE, second).await.0, 201);
    assert_eq!(
        env.rows("SELECT clinic_id, visit_no, note FROM visits ORDER BY 1, 2")
            .await,
        vec![
            json!({"clinic_id": 1, "visit_no": 1, "note": "a"}),
            json!({"clinic_id": 1, "visit_no": 2, "note": "b"}),
            json!({"clinic_id": 2, "visit_no": 1, "note": "c"}),
        ]
    );
    // Without `columns`, every object must have the same keys.
    let uneven =
        json!([{"clinic_id": 3, "visit_no": 1, "note": "d"}, {"clinic_id": 3, "visit_no": 2}]);
    let (status, body) = upsert(
        &env,
        "/visits?on_conflict=clinic_id,visit_no",
        MERGE,
        uneven,
    )
    .await;
    assert_eq!(
        (status, json(&body)),
        (
            400,
            json!({"code": "PGRST102", "details": null, "hint": null, "message": "All object keys must match"})
        )
    );
    // Numbers reach PostgreSQL as written: no float rounding on the way.
    let exact =
        r#"[{"clinic_id": 4, "visit_no": 1, "note": null, "fee": 12345678901234567890.12345}]"#;
    let (status, _) = send(
        env.service(Method::POST, "/visits?on_conflict=clinic_id,visit_no")
            .header("Prefer", MERGE)
            .header("Content-Type", "application/json")
            .body(exact),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        env.rows("SELECT fee::text AS fee FROM visits WHERE clinic_id = 4")
            .await,
        vec![json!({"fee": "12345678901234567890.12345"})]
    );
}

async fn seed_tags(env: &Env) {
    env.db
        .client()
        .batch_execute(
            "CREATE TABLE tags (code text, lang text, label text, PRIMARY KEY (code, lang));
             INSERT INTO tags VALUES ('plain', 'en', 'one'), ('a,b (c)', 'en', 'two'),
                                     ('say \"hi\"', 'en', 'three'), ('plain', 'ar', 'four'),
                                     ('back\\slash', 'en', 'five');",
        )
        .await
        .expect("tags");
}

async fn labels(env: &Env) -> Vec<String> {
    env.rows("SELECT label FROM tags ORDER BY label")
        .await
        .iter()
        .filter_map(|row| row["label"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn patch_by_key_takes_the_value_literally() {
    let env = Env::start().await;
    seed_tags(&env).await;
    let patch = |key: &str, label: &str| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &format!("eq.{key}"))
            .append_pair("lang", "eq.en")
            .finish();
        env.service(Method::PATCH, &format!("/tags?{query}"))
            .header("Prefer", "return=minimal")
            .json(&json!({"label": label}))
    };
    assert_eq!(send(patch("a,b (c)", "TWO")).await, (204, String::new()));
    assert_eq!(send(patch("say \"hi\"", "THREE")).await.0, 204);
    // No row matches: still 204, nothing inserted.
    assert_eq!(send(patch("missing", "X")).await.0, 204);
    assert_eq!(labels(&env).await, ["THREE", "TWO", "five", "four", "one"]);

    let (status, body) = send(
        env.service(Method::PATCH, "/tags?code=eq.plain")
            .json(&json!({"colour": "red"})),
    )
    .await;
    assert_eq!(
        json(&body),
        json!({"code": "PGRST204", "details": null, "hint": null,
               "message": "Could not find the 'colour' column of 'tags' in the schema cache"})
    );
    assert_eq!(status, 400);
    // pg-safeupdate: no filter, no update.
    let (status, body) = send(
        env.service(Method::PATCH, "/tags")
            .json(&json!({"label": "all"})),
    )
    .await;
    assert_eq!(
        (status, json(&body)["message"].as_str()),
        (400, Some("UPDATE requires a WHERE clause"))
    );
}

#[tokio::test]
async fn delete_by_single_and_composite_keys_with_quoted_values() {
    let env = Env::start().await;
    seed_tags(&env).await;
    let (status, body) = send(env.service(
        Method::DELETE,
        "/tags?or=(and(code.eq.%22a,b%20(c)%22,lang.eq.en),and(code.eq.plain,lang.eq.ar))",
    ))
    .await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(labels(&env).await, ["five", "one", "three"]);
    let (status, _) = send(env.service(
        Method::DELETE,
        "/tags?code=in.(%22say%20%5C%22hi%5C%22%22,%22back%5C%5Cslash%22)",
    ))
    .await;
    assert_eq!(status, 204);
    assert_eq!(labels(&env).await, ["one"]);
    let (status, body) = send(env.service(Method::DELETE, "/tags")).await;
    assert_eq!(
        (status, json(&body)),
        (
            400,
            json!({"code": "21000", "details": null, "hint": null, "message": "DELETE requires a WHERE clause"})
        )
    );
}

#[tokio::test]
async fn keyset_pages_visit_every_row_once_in_order() {
    let env = Env::start().await;
    env.seed_parents().await;
    // Triggers off for this session, so the fixed updated_at values (three tied) survive.
    env.db
        .client()
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text, updated_at)
             SELECT ('00000000-0000-0000-0000-00000000000' || i)::uuid, 1, 'Lab', 'note ' || i,
                    '2024-06-01 10:00:00+00'::timestamptz + make_interval(secs => least(i, 3) * 0.1)
             FROM generate_series(1, 5) AS i;
             SET session_replication_role = origin;",
        )
        .await
        .expect("notes");
    let mut seen = Vec::new();
    let mut after: Option<(String, String)> = None;
    for _page in 0..10 {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("select", "*")
            .append_pair("order", "updated_at.asc,note_uid.asc")
            .append_pair("limit", "2")
            .append_pair("updated_at", "gte.2024-06-01T10:00:00.1+00:00");
        if let Some((at, uid)) = &after {
            // Quoted as the agent quotes values inside or=(...).
            let keyset =
                format!("(updated_at.gt.\"{at}\",and(updated_at.eq.\"{at}\",note_uid.gt.{uid}))");
            query.append_pair("or", &keyset);
        }
        let (status, body) =
            send(env.service(Method::GET, &format!("/aligner_notes?{}", query.finish()))).await;
        assert_eq!(status, 200, "{body}");
        let rows = json(&body);
        let Some(last) = rows.as_array().and_then(|r| r.last()).cloned() else {
            break;
        };
        let text = |key: &str| last[key].as_str().map(str::to_owned).unwrap_or_default();
        after = Some((text("updated_at"), text("note_uid")));
        seen.extend(
            rows.as_array()
                .into_iter()
                .flatten()
                .map(|r| r["note_text"].clone()),
        );
    }
    assert_eq!(
        Value::Array(seen),
        json!(["note 1", "note 2", "note 3", "note 4", "note 5"])
    );
    // Values render as PostgreSQL's to_json renders them.
    let (_, body) = send(env.service(
        Method::GET,
        "/aligner_sets?select=aligner_set_id,creation_date,is_active",
    ))
    .await;
    assert_eq!(
        body,
        r#"[{"aligner_set_id":1,"creation_date":"2024-05-01T09:32:00+00:00","is_active":true}]"#
    );
}

#[tokio::test]
async fn refusals_carry_postgrest_codes_and_change_nothing() {
    let env = Env::start().await;
    env.seed_parents().await;
    let note =
        |set: i64, kind: &str| json!({"aligner_set_id": set, "note_type": kind, "note_text": "x"});
    for (row, status, code) in [
        (note(99, "Lab"), 409, "23503"),
        (note(1, "Nurse"), 400, "23514"),
        (
            json!({"note_uid": "nope", "aligner_set_id": 1, "note_type": "Lab", "note_text": "x"}),
            400,
            "22P02",
        ),
        (
            json!({"aligner_set_id": 1, "note_type": "Lab", "nickname": "x"}),
            400,
            "PGRST204",
        ),
    ] {
        let (got, body) = upsert(&env, "/aligner_notes?on_conflict=note_uid", MERGE, row).await;
        let body = json(&body);
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        assert!(
            body.get("details").is_some()
                && body.get("hint").is_some()
                && body["message"].is_string()
        );
    }
    let (_, body) = upsert(&env, "/aligner_notes", MERGE, note(99, "Lab")).await;
    let details = json(&body)["details"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(details.contains("(aligner_set_id)=(99)"), "{details}");
    for (method, path, status, code) in [
        (Method::POST, "/nope", 404, "PGRST205"),
        (Method::GET, "/aligner_notes?bogus=eq.1", 400, "42703"),
        (
            Method::GET,
            "/aligner_notes?note_text=like.x*",
            400,
            "PGRST127",
        ),
        (
            Method::GET,
            "/aligner_notes?or=(note_text.eq.1",
            400,
            "PGRST100",
        ),
    ] {
        let (got, body) = send(env.service(method, path).json(&json!({"a": 1}))).await;
        assert_eq!(
            (got, json(&body)["code"].as_str()),
            (status, Some(code)),
            "{path}"
        );
    }
    let (status, body) = send(
        env.service(Method::POST, "/aligner_notes")
            .header("Prefer", "return=representation")
            .json(&note(1, "Lab")),
    )
    .await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (400, Some("PGRST127"))
    );
    let (status, body) = send(
        env.service(Method::POST, "/aligner_notes")
            .header("Content-Type", "application/json")
            .body("{\"note_text\":"),
    )
    .await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (400, Some("PGRST102"))
    );
    assert!(env.rows("SELECT 1 FROM aligner_notes").await.is_empty());
}
