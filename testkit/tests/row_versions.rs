//! `sql/supabase/04_row_versions.sql` (and the row-version rule of `syncbridge_push` in
//! 03_versions.sql) over real PostgreSQL, through PostgREST-shaped requests: a clinic write
//! older than the row's `synced_at` is skipped (upsert and push), equal or newer ones apply, and
//! a portal write (anon, authenticated) cannot move `synced_at`.

mod common;

use common::{send, Env};
use reqwest::Method;
use serde_json::{json, Value};

const MERGE: &str = "resolution=merge-duplicates,return=minimal";
const T9: &str = "2026-01-01T09:00:00Z";
const T10: &str = "2026-01-01T10:00:00Z";
const T11: &str = "2026-01-01T11:00:00Z";

fn patient(id: i64, name: &str, synced_at: &str) -> Value {
    json!({"person_id": id, "patient_name": name, "synced_at": synced_at,
           "patient_guid": format!("6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c{id:02}"),
           "date_added": "2024-05-01T09:30:00"})
}

async fn upsert(env: &Env, rows: Value) {
    let (status, body) = send(
        env.service(Method::POST, "/patients?on_conflict=person_id")
            .header("Prefer", MERGE)
            .json(&rows),
    )
    .await;
    // 201 when a row was inserted, 200 when every row merged (as PostgREST answers).
    assert!(status == 201 || status == 200, "{status}: {body}");
}

/// (name, synced_at's hour) of every patient, by id.
async fn patients(env: &Env) -> Vec<Value> {
    env.rows(
        "SELECT person_id, patient_name, extract(hour FROM synced_at AT TIME ZONE 'UTC')::bigint AS v \
         FROM patients ORDER BY 1",
    )
    .await
}

/// The hour of one of the times above, as `patients` reads it back.
fn hour(rfc3339: &str) -> i64 {
    rfc3339[11..13].parse().expect("an hour")
}

#[tokio::test]
async fn an_upsert_older_than_the_row_is_skipped_and_an_equal_or_newer_one_applies() {
    let env = Env::start().await;
    upsert(
        &env,
        json!([
            patient(1, "a", T10),
            patient(2, "b", T10),
            patient(3, "c", T10)
        ]),
    )
    .await;
    // One request, as the agent sends a batch: row 1 late (older), row 2 a resend of the same
    // change, row 3 newer, row 4 new. The skipped row must not stop the others.
    upsert(
        &env,
        json!([
            patient(1, "late", T9),
            patient(2, "resent", T10),
            patient(3, "newer", T11),
            patient(4, "d", T9)
        ]),
    )
    .await;
    assert_eq!(
        patients(&env).await,
        [
            json!({"person_id": 1, "patient_name": "a", "v": hour(T10)}),
            json!({"person_id": 2, "patient_name": "resent", "v": hour(T10)}),
            json!({"person_id": 3, "patient_name": "newer", "v": hour(T11)}),
            json!({"person_id": 4, "patient_name": "d", "v": hour(T9)}),
        ]
    );
}

#[tokio::test]
async fn a_push_older_than_the_row_changes_nothing_of_it() {
    let env = Env::start().await;
    env.seed_parents().await;
    let batch = |days: i64, notes: &str, at: &str| {
        json!({"row": {"aligner_batch_id": 1, "aligner_set_id": 1, "batch_sequence": 1,
                       "days": days, "notes": notes, "synced_at": at},
               "changed": {"days": at}})
    };
    let push = |row: Value| {
        let env = &env;
        async move {
            let (status, body) = send(env.service(Method::POST, "/rpc/syncbridge_push").json(
                &json!({"p_table": "aligner_batches", "p_keys": ["aligner_batch_id"],
                        "p_shared": ["days"], "p_rows": [row]}),
            ))
            .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let row = || async {
        env.rows(
            "SELECT days, notes, extract(hour FROM synced_at AT TIME ZONE 'UTC')::bigint AS v FROM aligner_batches",
        )
        .await
    };
    push(batch(14, "first", T10)).await;
    // Late: older than the row, its shared column included (its own version is older too, but
    // the row's clinic version alone decides).
    push(batch(21, "late", T9)).await;
    assert_eq!(
        row().await,
        [json!({"days": 14, "notes": "first", "v": hour(T10)})]
    );
    push(batch(28, "newer", T11)).await;
    assert_eq!(
        row().await,
        [json!({"days": 28, "notes": "newer", "v": hour(T11)})]
    );
}

#[tokio::test]
async fn a_portal_write_cannot_move_the_row_version() {
    let env = Env::start().await;
    upsert(&env, json!([patient(1, "a", T10)])).await;
    // The portal's own policies (01_schema.sql leaves them to it): let both API roles write.
    env.db
        .client()
        .batch_execute(
            "CREATE POLICY portal_writes ON patients FOR ALL TO anon, authenticated \
             USING (true) WITH CHECK (true)",
        )
        .await
        .expect("policy");
    let keys = env.api.keys();
    let future = "2099-01-01T00:00:00Z";
    for (n, role) in [(2, "anon"), (3, "authenticated")] {
        let token = keys.sign_jwt(&json!({"role": role, "exp": 4_000_000_000_i64}));
        let as_portal = |method: Method, path: &str| {
            env.raw(method, path)
                .header("apikey", keys.anon_jwt())
                .header("Authorization", format!("Bearer {token}"))
        };
        let (status, body) = send(
            as_portal(Method::PATCH, "/patients?person_id=eq.1")
                .json(&json!({"patient_name": role, "synced_at": future})),
        )
        .await;
        assert_eq!(status, 204, "{role}: {body}");
        let (status, body) =
            send(as_portal(Method::POST, "/patients").json(&patient(n, role, future))).await;
        assert_eq!(status, 201, "{role}: {body}");
        let rows = patients(&env).await;
        assert_eq!(
            rows[0],
            json!({"person_id": 1, "patient_name": role, "v": hour(T10)}),
            "{role}: the edit is kept, the clinic's version is not moved"
        );
        assert_eq!(
            rows[n as usize - 1],
            json!({"person_id": n, "patient_name": role, "v": null}),
            "{role}: a portal insert starts without a clinic version"
        );
    }
    // So the clinic's next change still lands.
    upsert(&env, json!([patient(1, "clinic", T11)])).await;
    assert_eq!(patients(&env).await[0]["patient_name"], json!("clinic"));
}
