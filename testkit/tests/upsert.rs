//! POST: inserts, upserts (merge / ignore duplicates, on_conflict, columns) and the errors
//! PostgREST answers for bad payloads and constraint violations.

mod common;

use axum::http::Method;
use common::{header, json, send, Env};
use serde_json::json;

const UPSERT: &str = "resolution=merge-duplicates,return=minimal";

fn patient(id: i32, name: &str) -> serde_json::Value {
    json!({"person_id": id, "patient_name": name, "patient_guid": "6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c10",
           "date_added": "2024-05-01T09:30:00.123"})
}

#[tokio::test]
async fn merge_duplicates_inserts_then_updates() {
    let env = Env::start().await;
    let rows = json!([patient(1, "Ada"), patient(2, "Grace")]);
    let (status, headers, body) = send(
        env.service(Method::POST, "/patients")
            .header("Prefer", UPSERT)
            .json(&rows),
    )
    .await;
    assert_eq!((status, body.as_str()), (201, ""));
    assert_eq!(
        header(&headers, "preference-applied"),
        Some("resolution=merge-duplicates, return=minimal")
    );
    assert_eq!(header(&headers, "content-range"), Some("*/*"));

    // Only existing keys: every row merges, and PostgREST v12 answers 200 instead of 201.
    let rows = json!([patient(1, "Ada L."), patient(2, "Grace H.")]);
    let (status, _, _) = send(
        env.service(Method::POST, "/patients")
            .header("Prefer", UPSERT)
            .json(&rows),
    )
    .await;
    assert_eq!(status, 200);
    let names = env
        .db
        .query_json("SELECT person_id, patient_name FROM patients ORDER BY 1")
        .await
        .expect("query");
    assert_eq!(
        names,
        vec![
            json!({"person_id": 1, "patient_name": "Ada L."}),
            json!({"person_id": 2, "patient_name": "Grace H."})
        ]
    );

    // One new key among existing ones: something was inserted, so 201.
    let rows = json!([patient(2, "Grace"), patient(3, "Edsger")]);
    let (status, _, _) = send(
        env.service(Method::POST, "/patients")
            .header("Prefer", UPSERT)
            .json(&rows),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn ignore_duplicates_keeps_existing_rows() {
    let env = Env::start().await;
    env.seed_parents().await;
    let rows = json!([patient(1, "Someone else"), patient(2, "Grace")]);
    let (status, headers, body) = send(
        env.service(Method::POST, "/patients")
            .header(
                "Prefer",
                "resolution=ignore-duplicates,return=representation",
            )
            .json(&rows),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json; charset=utf-8")
    );
    // Only the row actually inserted comes back.
    let returned = json(&body);
    assert_eq!(returned.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(returned[0]["patient_name"], "Grace");
    let names = env
        .db
        .query_json("SELECT patient_name FROM patients ORDER BY person_id")
        .await
        .expect("query");
    assert_eq!(
        names,
        vec![
            json!({"patient_name": "Ada"}),
            json!({"patient_name": "Grace"})
        ]
    );
}

#[tokio::test]
async fn representation_renders_values_like_postgres() {
    let env = Env::start().await;
    env.seed_parents().await;
    let work = json!({"work_id": 7, "person_id": 1, "type_of_work": "Braces", "total_required": "1234.5000",
                      "addition_time": "2024-05-02T10:00:00.5"});
    let (status, _, body) = send(
        env.service(Method::POST, "/work")
            .header("Prefer", "return=representation")
            .json(&work),
    )
    .await;
    assert_eq!(status, 201);
    // Exact numeric and ISO timestamps, straight from json_agg.
    assert!(body.contains(r#""total_required":1234.5000"#), "{body}");
    assert!(
        body.contains(r#""addition_time":"2024-05-02T10:00:00.5""#),
        "{body}"
    );
    assert!(
        body.contains(r#""currency":"IQD""#),
        "defaults applied: {body}"
    );

    let mut work = work;
    work["work_id"] = json!(8);
    let (status, headers, body) = send(
        env.service(Method::POST, "/work")
            .header("Prefer", "return=headers-only")
            .json(&work),
    )
    .await;
    assert_eq!((status, body.as_str()), (201, ""));
    assert_eq!(header(&headers, "location"), Some("/work?work_id=eq.8"));
    assert_eq!(
        header(&headers, "preference-applied"),
        Some("return=headers-only")
    );
}

#[tokio::test]
async fn columns_parameter_picks_the_columns_and_allows_uneven_objects() {
    let env = Env::start().await;
    let rows = json!([
        {"person_id": 1, "patient_name": "Ada", "patient_guid": "6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c10",
         "date_added": "2024-05-01T09:30:00", "phone": "0770", "not_a_column": true},
        {"person_id": 2, "patient_name": "Grace", "patient_guid": "6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c11",
         "date_added": "2024-05-01T09:30:00"}
    ]);
    let path = "/patients?columns=person_id,patient_name,patient_guid,date_added,phone";
    let (status, _, body) = send(env.service(Method::POST, path).json(&rows)).await;
    assert_eq!(status, 201, "{body}");
    let phones = env
        .db
        .query_json("SELECT person_id, phone FROM patients ORDER BY 1")
        .await
        .expect("query");
    assert_eq!(
        phones,
        vec![
            json!({"person_id": 1, "phone": "0770"}),
            json!({"person_id": 2, "phone": null})
        ]
    );

    // Without `columns`, PostgREST refuses objects whose keys differ.
    let (status, _, body) = send(env.service(Method::POST, "/patients").json(&rows)).await;
    assert_eq!(status, 400);
    assert_eq!(json(&body)["code"], "PGRST102");
    assert_eq!(json(&body)["message"], "All object keys must match");
}

#[tokio::test]
async fn on_conflict_with_a_composite_key() {
    let env = Env::start().await;
    env.db
        .client()
        .batch_execute(
            "CREATE TABLE visits (id serial PRIMARY KEY, clinic_id int NOT NULL, visit_no int NOT NULL,
                                  note text, UNIQUE (clinic_id, visit_no))",
        )
        .await
        .expect("create table");
    let path = "/visits?on_conflict=clinic_id,visit_no";
    let first = json!([{"clinic_id": 1, "visit_no": 1, "note": "a"}, {"clinic_id": 1, "visit_no": 2, "note": "b"}]);
    let (status, _, _) = send(
        env.service(Method::POST, path)
            .header("Prefer", UPSERT)
            .json(&first),
    )
    .await;
    assert_eq!(status, 201);
    let second = json!([{"clinic_id": 1, "visit_no": 2, "note": "b2"}, {"clinic_id": 2, "visit_no": 1, "note": "c"}]);
    let (status, _, _) = send(
        env.service(Method::POST, path)
            .header("Prefer", UPSERT)
            .json(&second),
    )
    .await;
    assert_eq!(status, 201);
    let rows = env
        .db
        .query_json("SELECT clinic_id, visit_no, note FROM visits ORDER BY 1, 2")
        .await
        .expect("query");
    assert_eq!(
        rows,
        vec![
            json!({"clinic_id": 1, "visit_no": 1, "note": "a"}),
            json!({"clinic_id": 1, "visit_no": 2, "note": "b2"}),
            json!({"clinic_id": 2, "visit_no": 1, "note": "c"}),
        ]
    );
    // on_conflict is only honoured together with a resolution preference: a plain insert conflicts.
    let (status, _, body) = send(env.service(Method::POST, path).json(&second)).await;
    assert_eq!((status, json(&body)["code"].as_str()), (409, Some("23505")));
}

#[tokio::test]
async fn constraint_violations_map_to_postgrest_statuses() {
    let env = Env::start().await;
    env.seed_parents().await;
    let cases = [
        // Foreign key: set 99 does not exist.
        (
            json!({"aligner_set_id": 99, "note_type": "Lab", "note_text": "x"}),
            409,
            "23503",
        ),
        // Check constraint on note_type.
        (
            json!({"aligner_set_id": 1, "note_type": "Nurse", "note_text": "x"}),
            400,
            "23514",
        ),
        // NOT NULL.
        (
            json!({"aligner_set_id": 1, "note_type": "Lab", "note_text": null}),
            400,
            "23502",
        ),
        // Not a uuid.
        (
            json!({"note_uid": "nope", "aligner_set_id": 1, "note_type": "Lab", "note_text": "x"}),
            400,
            "22P02",
        ),
    ];
    for (row, status, code) in cases {
        let (got, _, body) = send(env.service(Method::POST, "/aligner_notes").json(&row)).await;
        let body = json(&body);
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{row} -> {body}"
        );
        assert!(
            body["message"].is_string()
                && body.get("details").is_some()
                && body.get("hint").is_some()
        );
        if code == "23503" {
            let details = body["details"].as_str().unwrap_or_default();
            assert!(details.contains("(aligner_set_id)=(99)"), "{details}");
        }
    }
}

#[tokio::test]
async fn payload_errors() {
    let env = Env::start().await;
    let (status, _, body) = send(
        env.service(Method::POST, "/patients")
            .json(&json!({"person_id": 1, "nickname": "A"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        json(&body),
        json!({"code": "PGRST204", "details": null, "hint": null,
               "message": "Could not find the 'nickname' column of 'patients' in the schema cache"})
    );

    let (status, _, body) = send(env.service(Method::POST, "/nope").json(&json!({"a": 1}))).await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (404, Some("PGRST205"))
    );

    let (status, _, body) = send(
        env.service(Method::POST, "/patients")
            .header("Content-Type", "application/json")
            .body("{\"person_id\":"),
    )
    .await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (400, Some("PGRST102"))
    );

    // An empty array is a valid no-op.
    let (status, _, body) = send(env.service(Method::POST, "/patients").json(&json!([]))).await;
    assert_eq!((status, body.as_str()), (201, ""));
    assert_eq!(
        env.db
            .query_json("SELECT 1 FROM patients")
            .await
            .expect("query")
            .len(),
        0
    );
}
