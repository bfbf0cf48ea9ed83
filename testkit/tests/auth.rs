//! The gateway's API-key checks and PostgREST's JWT checks, and the role each key runs as.

mod common;

use axum::http::Method;
use common::{header, json, send, Env};
use serde_json::json;
use syncbridge_testkit::ApiKeys;

fn note() -> serde_json::Value {
    json!({"aligner_set_id": 1, "note_type": "Doctor", "note_text": "hello"})
}

#[tokio::test]
async fn missing_or_unknown_apikey_is_refused_by_the_gateway() {
    let env = Env::start().await;
    let (status, _, body) = send(env.raw(Method::GET, "/patients")).await;
    assert_eq!(status, 401);
    assert_eq!(
        json(&body),
        json!({"message": "No API key found in request",
               "hint": "No `apikey` request header or url param was found."})
    );

    let stranger = ApiKeys::generate();
    for key in [
        stranger.service_role_jwt(),
        stranger.secret_key(),
        "sb_secret_guess",
    ] {
        let (status, _, body) = send(env.raw(Method::GET, "/patients").header("apikey", key)).await;
        assert_eq!(status, 401);
        assert_eq!(
            json(&body),
            json!({"message": "Invalid API key", "hint": "Double check the provided API key"})
        );
    }
    // Nothing reached the database, but the attempts are in the log.
    assert!(env.api.requests().iter().all(|r| r.status == 401));
}

#[tokio::test]
async fn secret_key_works_alone_and_is_refused_as_a_bearer_token() {
    let env = Env::start().await;
    env.seed_parents().await;
    let secret = env.api.keys().secret_key().to_owned();

    let (status, _, body) = send(
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", &secret)
            .json(&note()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        env.db
            .query_json("SELECT note_text FROM aligner_notes")
            .await
            .expect("query")
            .len(),
        1
    );

    let (status, headers, body) = send(
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", &secret)
            .header("Authorization", format!("Bearer {secret}"))
            .json(&note()),
    )
    .await;
    assert_eq!(status, 401);
    let body = json(&body);
    assert_eq!(body["code"], "PGRST301");
    assert!(header(&headers, "www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer error=\"invalid_token\"")));
    assert_eq!(
        env.db
            .query_json("SELECT note_text FROM aligner_notes")
            .await
            .expect("query")
            .len(),
        1
    );
}

#[tokio::test]
async fn legacy_jwts_must_be_valid_and_signed_by_the_project() {
    let env = Env::start().await;
    let keys = env.api.keys().clone();
    let foreign = ApiKeys::generate().service_role_jwt().to_owned();
    let expired = keys.sign_jwt(&json!({"role": "service_role", "exp": 1_000_000_000}));
    for (token, message) in [
        (foreign.as_str(), "JWT cryptographic operation failed"),
        (expired.as_str(), "JWT expired"),
        ("not-a-jwt", "Expected 3 parts in JWT; got 1"),
    ] {
        let (status, _, body) = send(
            env.raw(Method::GET, "/patients")
                .header("apikey", keys.anon_jwt())
                .header("Authorization", format!("Bearer {token}")),
        )
        .await;
        assert_eq!(status, 401, "{token}");
        assert_eq!(
            json(&body),
            json!({"code": "PGRST301", "details": null, "hint": null, "message": message})
        );
    }
}

#[tokio::test]
async fn anonymous_keys_cannot_write_the_rls_protected_tables() {
    let env = Env::start().await;
    env.seed_parents().await;
    let keys = env.api.keys().clone();
    let anon_requests = [
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", keys.anon_jwt())
            .header("Authorization", format!("Bearer {}", keys.anon_jwt())),
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", keys.publishable_key()),
        // A legacy service_role key without the Authorization header runs as anon.
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", keys.service_role_jwt()),
    ];
    for request in anon_requests {
        let (status, headers, body) = send(request.json(&note())).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(json(&body)["code"], "42501");
        assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    }
    // RLS without policies: anon reads see nothing rather than failing.
    let (status, _, body) = send(
        env.raw(Method::GET, "/patients")
            .header("apikey", keys.publishable_key()),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert_eq!(
        env.db
            .query_json("SELECT 1 FROM aligner_notes")
            .await
            .expect("query")
            .len(),
        0
    );
}

#[tokio::test]
async fn openapi_root_describes_the_tables() {
    let env = Env::start().await;
    let (status, headers, body) = send(env.service(Method::GET, "/")).await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type").is_some_and(|c| c.starts_with("application/openapi+json"))
    );
    let document = json(&body);
    assert_eq!(document["swagger"], "2.0");
    let notes = &document["definitions"]["aligner_notes"];
    assert_eq!(notes["properties"]["note_uid"]["format"], "uuid");
    assert_eq!(notes["properties"]["note_uid"]["type"], "string");
    assert_eq!(
        notes["properties"]["updated_at"]["format"],
        "timestamp with time zone"
    );
    assert_eq!(
        notes["properties"]["created_at"]["format"],
        "timestamp without time zone"
    );
    assert_eq!(notes["properties"]["is_read"]["type"], "boolean");
    let work = &document["definitions"]["work"]["properties"];
    assert_eq!(
        (
            work["total_required"]["format"].as_str(),
            work["total_required"]["type"].as_str()
        ),
        (Some("numeric"), Some("number"))
    );
    assert_eq!(work["currency"]["default"], "IQD");
    let batches = &document["definitions"]["aligner_batches"]["properties"];
    assert_eq!(batches["label_code"]["format"], "bytea");
    assert_eq!(batches["days"]["type"], "integer");
    // PostgREST lists every NOT NULL column, defaults or not.
    assert_eq!(
        notes["required"],
        json!([
            "note_uid",
            "aligner_set_id",
            "note_type",
            "note_text",
            "created_at",
            "is_edited",
            "is_read",
            "updated_at"
        ])
    );
    assert_eq!(notes["properties"]["is_read"]["default"], json!(false));
    assert_eq!(
        notes["properties"]["aligner_set_id"]["description"],
        "Note:\nThis is a Foreign Key to `aligner_sets.aligner_set_id`.<fk table='aligner_sets' column='aligner_set_id'/>"
    );
    assert_eq!(
        notes["properties"]["note_uid"]["description"],
        "Note:\nThis is a Primary Key.<pk/>"
    );
    assert!(document["paths"]["/aligner_notes"].is_object());
}
