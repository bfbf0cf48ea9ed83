//! What triggers see of a PostgREST request, and the Database Webhooks of
//! `sql/supabase/02_webhooks.sql` delivered by the relay in Supabase's payload shape.

mod common;

use common::{json, send, Env, Receiver, WAIT};
use reqwest::Method;
use serde_json::{json, Value};
use syncbridge_testkit::{DeliveryOutcome, WebhookRelay};

const SECRET: &str = "s3cret \"quoted\"";

#[tokio::test]
async fn triggers_see_the_request_as_postgrest_publishes_it() {
    let env = Env::start().await;
    env.db
        .client()
        .batch_execute(
            "CREATE TABLE probe (id int PRIMARY KEY, origin text, method text, path text, db_role text, claim_role text,
                                 is_agent boolean);
             CREATE FUNCTION probe_capture() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 NEW.origin := current_setting('request.headers', true)::json ->> 'x-syncbridge-origin';
                 NEW.method := current_setting('request.method', true);
                 NEW.path := current_setting('request.path', true);
                 NEW.db_role := current_user;
                 NEW.claim_role := current_setting('request.jwt.claims', true)::json ->> 'role';
                 NEW.is_agent := public.syncbridge_request_is_agent();
                 RETURN NEW;
             END $$;
             CREATE TRIGGER probe_capture BEFORE INSERT ON probe FOR EACH ROW EXECUTE FUNCTION probe_capture();",
        )
        .await
        .expect("probe table");
    let (status, body) = send(
        env.service(Method::POST, "/probe")
            .header("X-Syncbridge-Origin", "clinic")
            .json(&json!({"id": 1})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = send(env.service(Method::POST, "/probe").json(&json!({"id": 2}))).await;
    assert_eq!(status, 201);
    let rows = env
        .db
        .query_json("SELECT * FROM probe ORDER BY id")
        .await
        .expect("query");
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "origin": "clinic", "method": "POST", "path": "/probe", "db_role": "service_role",
                   "claim_role": "service_role", "is_agent": true}),
            json!({"id": 2, "origin": null, "method": "POST", "path": "/probe", "db_role": "service_role",
                   "claim_role": "service_role", "is_agent": false}),
        ]
    );
    // Settings are transaction-local: outside a request nothing is left behind.
    let leftover = env
        .db
        .query_json("SELECT public.syncbridge_request_is_agent() AS is_agent")
        .await
        .expect("query");
    assert_eq!(leftover, vec![json!({"is_agent": false})]);
}

fn note(text: &str) -> Value {
    json!({"aligner_set_id": 1, "note_type": "Doctor", "note_text": text})
}

#[tokio::test]
async fn webhooks_arrive_in_supabase_shape_and_skip_the_agents_own_writes() {
    let env = Env::start().await;
    env.seed_parents().await;
    env.db
        .client()
        .batch_execute("INSERT INTO aligner_batches (aligner_batch_id, aligner_set_id, batch_sequence, days) VALUES (3, 1, 1, 10)")
        .await
        .expect("batch");
    let mut receiver = Receiver::start().await;
    let relay = WebhookRelay::start(env.db.url()).await.expect("relay");
    env.db
        .install_webhooks(&receiver.url, SECRET)
        .await
        .expect("install webhooks");

    // The agent's own write carries its origin header and must not echo back...
    let (status, _) = send(
        env.service(Method::POST, "/aligner_notes")
            .header("x-syncbridge-origin", "clinic")
            .json(&note("from clinic")),
    )
    .await;
    assert_eq!(status, 201);
    // ...while a portal write does. Queue order is write order, so the first delivery seen
    // proves the agent's write produced none.
    let (status, _) = send(
        env.service(Method::POST, "/aligner_notes")
            .json(&note("from portal")),
    )
    .await;
    assert_eq!(status, 201);

    let received = receiver.next().await;
    assert_eq!(received.method, Method::POST);
    assert_eq!(
        received
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer s3cret \"quoted\"")
    );
    assert_eq!(
        received
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let payload: Value = serde_json::from_slice(&received.body).expect("JSON body");
    assert_eq!(payload["type"], "INSERT");
    assert_eq!(payload["table"], "aligner_notes");
    assert_eq!(payload["schema"], "public");
    assert_eq!(payload["old_record"], Value::Null);
    assert_eq!(payload["record"]["note_text"], "from portal");
    assert!(
        payload["record"]["note_uid"].is_string() && payload["record"]["updated_at"].is_string()
    );
    assert_eq!(
        payload.as_object().map(|o| o.len()),
        Some(5),
        "exactly Supabase's keys: {payload}"
    );

    // A batch update carries old and new rows.
    let (status, _) = send(
        env.service(Method::PATCH, "/aligner_batches?aligner_batch_id=eq.3")
            .json(&json!({"days": 21})),
    )
    .await;
    assert_eq!(status, 204);
    let update: Value = serde_json::from_slice(&receiver.next().await.body).expect("JSON");
    assert_eq!(
        (update["type"].as_str(), update["table"].as_str()),
        (Some("UPDATE"), Some("aligner_batches"))
    );
    assert_eq!(
        (
            update["old_record"]["days"].as_i64(),
            update["record"]["days"].as_i64()
        ),
        (Some(10), Some(21))
    );

    // A delete carries only the old row.
    let (status, _) =
        send(env.service(Method::DELETE, "/aligner_notes?note_text=eq.from%20portal")).await;
    assert_eq!(status, 204);
    let delete: Value = serde_json::from_slice(&receiver.next().await.body).expect("JSON");
    assert_eq!(delete["type"], "DELETE");
    assert_eq!(delete["record"], Value::Null);
    assert_eq!(delete["old_record"]["note_text"], "from portal");

    let deliveries = relay
        .wait_for_deliveries(3, WAIT)
        .await
        .expect("three deliveries");
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries
        .iter()
        .all(|d| d.status() == Some(200) && d.url == receiver.url));
    assert_eq!(deliveries[0].payload["record"]["note_text"], "from portal");
    assert_eq!(receiver.take_pending(), 0);
}

#[tokio::test]
async fn dropping_loses_webhooks_like_a_failing_pg_net() {
    let env = Env::start().await;
    env.seed_parents().await;
    let mut receiver = Receiver::start().await;
    let relay = WebhookRelay::start(env.db.url()).await.expect("relay");
    env.db
        .install_webhooks(&receiver.url, SECRET)
        .await
        .expect("install webhooks");

    relay.set_dropping(true);
    let (status, _) = send(
        env.service(Method::POST, "/aligner_notes")
            .json(&note("lost")),
    )
    .await;
    assert_eq!(status, 201);
    let dropped = relay
        .wait_for_deliveries(1, WAIT)
        .await
        .expect("dropped delivery logged");
    assert_eq!(dropped[0].outcome, DeliveryOutcome::Dropped);
    assert_eq!(dropped[0].payload["record"]["note_text"], "lost");

    relay.set_dropping(false);
    let (status, _) = send(
        env.service(Method::POST, "/aligner_notes")
            .json(&note("kept")),
    )
    .await;
    assert_eq!(status, 201);
    // The first thing the receiver ever gets is the second note: the first was never sent.
    let payload: Value = serde_json::from_slice(&receiver.next().await.body).expect("JSON");
    assert_eq!(payload["record"]["note_text"], "kept");

    // A rolled-back write queues nothing, as with pg_net.
    let client = env.db.client();
    client.batch_execute("BEGIN; INSERT INTO aligner_notes (aligner_set_id, note_type, note_text) VALUES (1, 'Lab', 'rolled back'); ROLLBACK;")
        .await
        .expect("rollback");
    client.batch_execute("INSERT INTO aligner_notes (aligner_set_id, note_type, note_text) VALUES (1, 'Lab', 'committed')")
        .await
        .expect("insert");
    let payload = json(&String::from_utf8_lossy(&receiver.next().await.body));
    assert_eq!(payload["record"]["note_text"], "committed");
    // The relay logs a delivery once the receiver has answered, so wait for it rather than read.
    let deliveries = relay
        .wait_for_deliveries(3, WAIT)
        .await
        .expect("three handled");
    assert_eq!(deliveries.len(), 3);
    assert_eq!(deliveries[2].status(), Some(200));
}

#[tokio::test]
async fn payloads_beyond_notify_limits_are_delivered_whole() {
    let env = Env::start().await;
    env.seed_parents().await;
    let mut receiver = Receiver::start().await;
    let _relay = WebhookRelay::start(env.db.url()).await.expect("relay");
    env.db
        .install_webhooks(&receiver.url, SECRET)
        .await
        .expect("install webhooks");

    // NOTIFY payloads stop at 8000 bytes; a long doctor's note must still go through.
    let long_text = "x".repeat(20_000);
    let (status, body) = send(
        env.service(Method::POST, "/aligner_notes")
            .json(&note(&long_text)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let payload: Value = serde_json::from_slice(&receiver.next().await.body).expect("JSON");
    assert_eq!(
        payload["record"]["note_text"].as_str().map(str::len),
        Some(20_000)
    );
}
