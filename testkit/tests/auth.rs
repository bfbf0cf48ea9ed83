//! The gateway's API-key checks, PostgREST's JWT checks, the role each key runs as, and the
//! OpenAPI root document `syncbridge check` reads.

mod common;

use common::{json, send, Env};
use reqwest::Method;
use serde_json::json;
use syncbridge_testkit::ApiKeys;

fn note() -> serde_json::Value {
    json!({"aligner_set_id": 1, "note_type": "Doctor", "note_text": "hello"})
}

async fn notes(env: &Env) -> usize {
    env.rows("SELECT 1 FROM aligner_notes").await.len()
}

#[tokio::test]
async fn missing_or_unknown_apikey_is_refused_by_the_gateway() {
    let env = Env::start().await;
    let (status, body) = send(env.raw(Method::GET, "/patients")).await;
    assert_eq!(
        (status, json(&body)),
        (
            401,
            json!({"message": "No API key found in request",
                     "hint": "No `apikey` request header or url param was found."})
        )
    );
    let stranger = ApiKeys::generate();
    for key in [
        stranger.service_role_jwt(),
        stranger.secret_key(),
        "sb_secret_guess",
    ] {
        let (status, body) = send(env.raw(Method::GET, "/patients").header("apikey", key)).await;
        assert_eq!(
            (status, json(&body)),
            (
                401,
                json!({"message": "Invalid API key", "hint": "Double check the provided API key"})
            )
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
    let (status, body) = send(
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", &secret)
            .json(&note()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", &secret)
            .header("Authorization", format!("Bearer {secret}"))
            .json(&note()),
    )
    .await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (401, Some("PGRST301"))
    );
    assert_eq!(notes(&env).await, 1);
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
        let (status, body) = send(
            env.raw(Method::GET, "/patients")
                .header("apikey", keys.anon_jwt())
                .header("Authorization", format!("Bearer {token}")),
        )
        .await;
        assert_eq!(
            (status, json(&body)),
            (
                401,
                json!({"code": "PGRST301", "details": null, "hint": null, "message": message})
            ),
            "{token}"
        );
    }
}

#[tokio::test]
async fn anonymous_requests_meet_row_level_security() {
    let env = Env::start().await;
    env.seed_parents().await;
    let keys = env.api.keys().clone();
    let anon_requests = [
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", keys.anon_jwt())
            .header("Authorization", format!("Bearer {}", keys.anon_jwt())),
        // A legacy service_role key without the Authorization header runs as anon.
        env.raw(Method::POST, "/aligner_notes")
            .header("apikey", keys.service_role_jwt()),
    ];
    for request in anon_requests {
        let (status, body) = send(request.json(&note())).await;
        assert_eq!(
            (status, json(&body)["code"].as_str()),
            (401, Some("42501")),
            "{body}"
        );
    }
    // RLS without policies: anonymous reads see nothing rather than failing.
    let (status, body) = send(
        env.raw(Method::GET, "/patients")
            .header("apikey", keys.anon_jwt()),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert_eq!(notes(&env).await, 0);
}

#[tokio::test]
async fn openapi_root_describes_every_column() {
    let env = Env::start().await;
    let response = env.service(Method::GET, "/").send().await.expect("sent");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    assert_eq!(
        content_type,
        Some("application/openapi+json; charset=utf-8")
    );
    let document: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(document["swagger"], "2.0");
    let notes = &document["definitions"]["aligner_notes"];
    let property = |table: &str, column: &str| {
        let p = &document["definitions"][table]["properties"][column];
        (
            p["format"].as_str().map(str::to_owned),
            p["type"].as_str().map(str::to_owned),
        )
    };
    let expect =
        |format: &str, kind: Option<&str>| (Some(format.to_owned()), kind.map(str::to_owned));
    assert_eq!(
        property("aligner_notes", "note_uid"),
        expect("uuid", Some("string"))
    );
    assert_eq!(
        property("aligner_notes", "updated_at"),
        expect("timestamp with time zone", Some("string"))
    );
    assert_eq!(
        property("aligner_notes", "created_at"),
        expect("timestamp without time zone", Some("string"))
    );
    assert_eq!(
        property("aligner_notes", "is_read"),
        expect("boolean", Some("boolean"))
    );
    assert_eq!(
        property("work", "total_required"),
        expect("numeric", Some("number"))
    );
    assert_eq!(
        property("aligner_batches", "days"),
        expect("integer", Some("integer"))
    );
    assert_eq!(
        property("aligner_batches", "label_code"),
        expect("bytea", Some("string"))
    );
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
            "updated_at",
            "sync_versions"
        ])
    );
    let (status, _) = send(env.raw(Method::GET, "/")).await;
    assert_eq!(status, 401, "the root needs an API key too");
}
