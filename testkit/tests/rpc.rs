//! `POST /rest/v1/rpc/<function>` as PostgREST v12 answers it: named (and defaulted) arguments,
//! jsonb in and out, the result shapes (scalar, row, set, void), single-json-parameter calls,
//! errors and their statuses, and the per-request transaction and role.

mod common;

use common::{json, send, Env};
use reqwest::Method;
use serde_json::{json, Value};

const FUNCTIONS: &str = r#"
CREATE FUNCTION add_them(a integer, b integer DEFAULT 10) RETURNS integer
    LANGUAGE sql AS $$ SELECT a + b $$;
CREATE FUNCTION describe(items jsonb, tag text DEFAULT 'none') RETURNS jsonb
    LANGUAGE sql AS $$ SELECT jsonb_build_object('count', jsonb_array_length(items), 'first', items -> 0, 'tag', tag) $$;
CREATE FUNCTION patient(id integer) RETURNS patients
    LANGUAGE sql AS $$ SELECT * FROM patients WHERE person_id = id $$;
CREATE FUNCTION patient_ids(below integer) RETURNS SETOF integer
    LANGUAGE sql AS $$ SELECT person_id FROM patients WHERE person_id < below ORDER BY 1 $$;
CREATE FUNCTION whoami() RETURNS TABLE (db_role text, claim_role text, origin text, path text, method text)
    LANGUAGE sql STABLE AS $$
    SELECT current_user::text, current_setting('request.jwt.claims', true)::json ->> 'role',
           current_setting('request.headers', true)::json ->> 'x-syncbridge-origin',
           current_setting('request.path', true), current_setting('request.method', true) $$;
CREATE FUNCTION echo(jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT $1 $$;
CREATE FUNCTION whole(payload json) RETURNS json LANGUAGE sql AS $$ SELECT payload $$;
CREATE FUNCTION rename(id integer, name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN UPDATE patients SET patient_name = name WHERE person_id = id; END $$;
CREATE FUNCTION rename_then_fail(id integer, code text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE patients SET patient_name = 'changed' WHERE person_id = id;
    RAISE EXCEPTION 'refused %', id USING ERRCODE = code, DETAIL = 'some detail', HINT = 'a hint';
END $$;
CREATE SEQUENCE counter;
CREATE FUNCTION stable_writer() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT nextval('counter') $$;
-- The shape the agent's batched writer takes: rows as jsonb, insert new ones whole, update only
-- some columns of existing ones, report what happened per key.
CREATE FUNCTION write_patients(rows jsonb) RETURNS TABLE (person_id integer, inserted boolean)
    LANGUAGE sql AS $$
    INSERT INTO patients AS p (person_id, patient_name, patient_guid, date_added)
    SELECT r.person_id, r.patient_name, r.patient_guid, r.date_added
    FROM jsonb_to_recordset(rows) AS r(person_id integer, patient_name text, patient_guid uuid, date_added timestamp)
    ON CONFLICT ON CONSTRAINT patients_pkey DO UPDATE SET patient_name = EXCLUDED.patient_name
    RETURNING p.person_id, (p.xmax = 0) $$;
INSERT INTO patients (person_id, patient_name, patient_guid, date_added)
VALUES (1, 'Ada', '6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c10', '2024-05-01 09:30:00'),
       (2, 'Grace', '6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c11', '2024-05-01 09:30:00');
"#;

async fn env() -> Env {
    let env = Env::start().await;
    env.db
        .client()
        .batch_execute(FUNCTIONS)
        .await
        .expect("functions");
    env
}

async fn call(env: &Env, function: &str, args: Value) -> (u16, Value) {
    let (status, body) = send(
        env.service(Method::POST, &format!("/rpc/{function}"))
            .json(&args),
    )
    .await;
    let body = if body.is_empty() {
        Value::Null
    } else {
        json(&body)
    };
    (status, body)
}

async fn names(env: &Env) -> Vec<Value> {
    env.rows("SELECT person_id, patient_name FROM patients ORDER BY 1")
        .await
}

#[tokio::test]
async fn results_are_shaped_by_what_the_function_returns() {
    let env = env().await;
    assert_eq!(
        call(&env, "add_them", json!({"a": 1, "b": 2})).await,
        (200, json!(3))
    );
    assert_eq!(
        call(&env, "add_them", json!({"a": 1})).await,
        (200, json!(11)),
        "default b"
    );
    let (status, row) = call(&env, "patient", json!({"id": 2})).await;
    assert_eq!((status, &row["patient_name"]), (200, &json!("Grace")));
    // A composite function that finds nothing still returns a row: of nulls.
    let (_, missing) = call(&env, "patient", json!({"id": 9})).await;
    assert!(
        missing.is_object() && missing["person_id"].is_null(),
        "{missing}"
    );
    assert_eq!(
        call(&env, "patient_ids", json!({"below": 9})).await,
        (200, json!([1, 2]))
    );
    assert_eq!(
        call(&env, "patient_ids", json!({"below": 0})).await,
        (200, json!([]))
    );
    // void: 204 without a body, and the write committed; Prefer: return= changes nothing.
    let (status, body) = send(
        env.service(Method::POST, "/rpc/rename")
            .header("Prefer", "return=representation")
            .json(&json!({"id": 1, "name": "Ada L."})),
    )
    .await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(
        names(&env).await[0],
        json!({"person_id": 1, "patient_name": "Ada L."})
    );
}

#[tokio::test]
async fn jsonb_arguments_and_results_and_the_batched_writer_shape() {
    let env = env().await;
    let items = json!([{"k": 1, "amount": 2.5, "note": "a \"quoted\" note"}, {"k": 2}]);
    let (status, body) = call(&env, "describe", json!({"items": items, "tag": "t"})).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"count": 2, "first": items[0], "tag": "t"}));
    let rows = json!([
        {"person_id": 2, "patient_name": "Grace H.", "patient_guid": "6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c11", "date_added": "2024-05-01T09:30:00"},
        {"person_id": 3, "patient_name": "Edsger", "patient_guid": "6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c12", "date_added": "2024-05-02T10:00:00"}
    ]);
    let (status, body) = call(&env, "write_patients", json!({"rows": rows})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!([{"person_id": 2, "inserted": false}, {"person_id": 3, "inserted": true}])
    );
    assert_eq!(
        names(&env).await,
        vec![
            json!({"person_id": 1, "patient_name": "Ada"}),
            json!({"person_id": 2, "patient_name": "Grace H."}),
            json!({"person_id": 3, "patient_name": "Edsger"}),
        ]
    );
}

#[tokio::test]
async fn the_whole_body_goes_to_a_single_json_parameter() {
    let env = env().await;
    let body = json!({"any": ["json", 1]});
    assert_eq!(call(&env, "echo", body.clone()).await, (200, body.clone()));
    // A named json parameter takes the whole body only with the (deprecated) preference.
    let (status, answer) = send(
        env.service(Method::POST, "/rpc/whole")
            .header("Prefer", "params=single-object")
            .json(&body),
    )
    .await;
    assert_eq!((status, json(&answer)), (200, body));
    assert_eq!(
        call(&env, "whole", json!({"payload": {"a": 1}})).await,
        (200, json!({"a": 1}))
    );
}

#[tokio::test]
async fn unknown_functions_and_raised_errors_answer_in_postgrest_shape() {
    let env = env().await;
    assert_eq!(
        call(&env, "nope", json!({})).await,
        (
            404,
            json!({"code": "PGRST202", "hint": null,
                     "message": "Could not find the function public.nope without parameters in the schema cache",
                     "details": "Searched for the function public.nope without parameters or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache."})
        )
    );
    let (status, body) = call(&env, "add_them", json!({"b": 1, "c": 2})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("PGRST202")));
    assert_eq!(
        body["message"],
        "Could not find the function public.add_them(b, c) in the schema cache"
    );
    assert_eq!(
        body["hint"],
        "Perhaps you meant to call the function public.add_them(a, b)"
    );

    for (code, status) in [
        ("P0001", 400),
        ("PT409", 409),
        ("23505", 409),
        ("XX000", 500),
    ] {
        let (got, body) = call(&env, "rename_then_fail", json!({"id": 1, "code": code})).await;
        assert_eq!(
            (got, body),
            (
                status,
                json!({"code": code, "message": "refused 1", "details": "some detail", "hint": "a hint"})
            )
        );
    }
    // A STABLE function runs read-only, as PostgREST runs it.
    let (status, body) = call(&env, "stable_writer", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (405, Some("25006")));
    // Nothing the failed calls did was kept.
    assert_eq!(names(&env).await.len(), 2);
    assert_eq!(names(&env).await[0]["patient_name"], "Ada");
    let (status, body) = send(
        env.service(Method::POST, "/rpc/add_them?a=eq.1")
            .json(&json!({"a": 1})),
    )
    .await;
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (400, Some("PGRST127"))
    );
}

#[tokio::test]
async fn calls_run_as_the_callers_role_with_the_request_published() {
    let env = env().await;
    let (status, body) = send(
        env.service(Method::POST, "/rpc/whoami")
            .header("x-syncbridge-origin", "clinic")
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        json!([{"db_role": "service_role", "claim_role": "service_role", "origin": "clinic",
                "path": "/rpc/whoami", "method": "POST"}])
    );
    // An empty body calls the function without arguments, as the anonymous role here.
    let anon = env.api.keys().anon_jwt().to_owned();
    let (status, body) = send(
        env.raw(Method::POST, "/rpc/whoami")
            .header("apikey", &anon)
            .header("Authorization", format!("Bearer {anon}")),
    )
    .await;
    assert_eq!(
        (status, json(&body)[0]["db_role"].as_str()),
        (200, Some("anon"))
    );
    // sql/supabase revokes the webhook installer from the API roles: 42501, 401 for anon.
    let (status, body) = send(
        env.raw(Method::POST, "/rpc/syncbridge_install_webhooks")
            .header("apikey", &anon)
            .header("Authorization", format!("Bearer {anon}"))
            .json(&json!({"webhook_url": "http://x", "webhook_secret": "s"})),
    )
    .await;
    assert_eq!((status, json(&body)["code"].as_str()), (401, Some("42501")));
}
