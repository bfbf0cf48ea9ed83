//! The stand-in's test switches: injected failures (once, every n-th), Retry-After, outages,
//! delays that outlast a client's timeout, added latency, refused and reset connections, and
//! the request log.

mod common;

use std::time::{Duration, Instant};

use common::{json, send, Env, WAIT};
use reqwest::{Method, RequestBuilder};
use serde_json::json;
use syncbridge_testkit::ResetPoint;
use tokio::io::AsyncReadExt;

fn patient(id: i32) -> serde_json::Value {
    json!({"person_id": id, "patient_name": "Ada", "patient_guid": "6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c10",
           "date_added": "2024-05-01T09:30:00"})
}

async fn patient_count(env: &Env) -> usize {
    env.rows("SELECT 1 FROM patients").await.len()
}

/// (status, Retry-After header).
async fn status_and_retry_after(request: RequestBuilder) -> (u16, Option<String>) {
    let response = request.send().await.expect("sent");
    let retry_after = response.headers().get("retry-after");
    let retry_after = retry_after.and_then(|v| v.to_str().ok()).map(str::to_owned);
    (response.status().as_u16(), retry_after)
}

#[tokio::test]
async fn injected_failures_answer_without_touching_the_database() {
    let env = Env::start().await;
    env.api.fail_next(2, 429, json!({"message": "slow down"}));
    env.api.set_retry_after(Some(7));
    for _ in 0..2 {
        let (status, body) = send(env.service(Method::POST, "/patients").json(&patient(1))).await;
        assert_eq!(
            (status, json(&body)),
            (429, json!({"message": "slow down"}))
        );
    }
    env.api.fail_next(1, 429, json!({}));
    let post = env.service(Method::POST, "/patients").json(&patient(1));
    assert_eq!(
        status_and_retry_after(post).await,
        (429, Some("7".to_owned()))
    );
    assert_eq!(patient_count(&env).await, 0);
    let post = env.service(Method::POST, "/patients").json(&patient(1));
    assert_eq!(status_and_retry_after(post).await, (201, None));
    assert_eq!(patient_count(&env).await, 1);
    // Retry-After goes only with 429 and 503.
    env.api.fail_next(1, 500, json!({"message": "boom"}));
    let get = env.service(Method::GET, "/patients");
    assert_eq!(status_and_retry_after(get).await, (500, None));
}

#[tokio::test]
async fn every_nth_request_fails_until_stopped() {
    let env = Env::start().await;
    env.api.fail_every(2, 500, json!({"message": "flaky"}));
    let mut statuses = Vec::new();
    for id in 1..=6 {
        statuses.push(
            send(env.service(Method::POST, "/patients").json(&patient(id)))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [201, 500, 201, 500, 201, 500]);
    assert_eq!(patient_count(&env).await, 3);
    env.api.fail_every(0, 500, json!({}));
    for _ in 0..2 {
        assert_eq!(send(env.service(Method::GET, "/patients")).await.0, 200);
    }
}

#[tokio::test]
async fn down_answers_503_until_back_up() {
    let env = Env::start().await;
    env.api.set_down(true);
    let (status, body) = send(env.service(Method::POST, "/patients").json(&patient(1))).await;
    assert_eq!(
        (status, json(&body)),
        (503, json!({"message": "upstream unavailable"}))
    );
    env.api.set_retry_after(Some(2));
    let get = env.service(Method::GET, "/patients");
    assert_eq!(
        status_and_retry_after(get).await,
        (503, Some("2".to_owned()))
    );
    assert_eq!(patient_count(&env).await, 0);
    env.api.set_down(false);
    assert_eq!(
        send(env.service(Method::POST, "/patients").json(&patient(1)))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn a_delayed_write_still_commits_after_the_client_timed_out() {
    let env = Env::start().await;
    env.api.delay_next(1, Duration::from_millis(600));
    let result = env
        .service(Method::POST, "/patients")
        .timeout(Duration::from_millis(100))
        .json(&patient(1))
        .send()
        .await;
    assert!(
        result.is_err_and(|err| err.is_timeout()),
        "the client should time out"
    );
    // The server finishes the request anyway; its log entry marks the commit.
    let requests = env
        .api
        .wait_for_requests(1, WAIT)
        .await
        .expect("delayed request finished");
    assert_eq!(requests[0].status, 201);
    assert_eq!(patient_count(&env).await, 1);
    // Only the next request was delayed.
    let get = env
        .service(Method::GET, "/patients")
        .timeout(Duration::from_secs(5));
    assert_eq!(send(get).await.0, 200);
}

#[tokio::test]
async fn latency_is_added_to_every_request_until_cleared() {
    let env = Env::start().await;
    let latency = Duration::from_millis(400);
    env.api.set_latency(latency);
    for _ in 0..2 {
        let started = Instant::now();
        assert_eq!(send(env.service(Method::GET, "/patients")).await.0, 200);
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    }
    env.api.set_down(true);
    env.api.fail_every(1, 500, json!({}));
    env.api.clear_faults();
    let started = Instant::now();
    assert_eq!(send(env.service(Method::GET, "/patients")).await.0, 200);
    assert!(
        started.elapsed() < latency,
        "latency cleared: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unreachable_refuses_connections_and_resets_open_ones_until_back_on_the_same_port() {
    let env = Env::start().await;
    let addr = env.api.addr();
    // A keep-alive connection in the client's pool, and a raw one idling.
    assert_eq!(send(env.service(Method::GET, "/patients")).await.0, 200);
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");

    env.api.set_unreachable(true).await.expect("closed");
    let refused = tokio::net::TcpStream::connect(addr)
        .await
        .expect_err("refused");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let mut buffer = [0_u8; 16];
    let read = tokio::time::timeout(WAIT, idle.read(&mut buffer))
        .await
        .expect("not left hanging");
    assert_eq!(
        read.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionReset)
    );
    // A new client, so no pooled connection can blur "refused" into "reset".
    let key = env.api.keys().secret_key().to_owned();
    let failed = common::client()
        .post(format!("{}/patients", env.api.rest_url()))
        .header("apikey", key)
        .json(&patient(1))
        .send()
        .await;
    assert!(
        failed.is_err_and(|err| err.is_connect()),
        "a refused connection, not an HTTP answer"
    );

    env.api
        .set_unreachable(false)
        .await
        .expect("listening again");
    assert_eq!(env.api.addr(), addr);
    assert_eq!(
        send(env.service(Method::POST, "/patients").json(&patient(1)))
            .await
            .0,
        201
    );
    assert_eq!(patient_count(&env).await, 1);
}

#[tokio::test]
async fn reset_connections_lose_the_answer_before_or_after_the_write() {
    let env = Env::start().await;
    env.api.reset_next(1, ResetPoint::BeforeHandling);
    let lost = env
        .service(Method::POST, "/patients")
        .json(&patient(1))
        .send()
        .await;
    assert!(
        lost.is_err_and(|err| !err.is_timeout()),
        "reset, not answered"
    );
    assert_eq!(patient_count(&env).await, 0);

    env.api.reset_next(1, ResetPoint::AfterHandling);
    let lost = env
        .service(Method::POST, "/patients")
        .json(&patient(2))
        .send()
        .await;
    assert!(
        lost.is_err_and(|err| !err.is_timeout()),
        "reset, not answered"
    );
    // The client cannot tell, but the write committed.
    assert_eq!(
        env.rows("SELECT person_id FROM patients").await,
        [json!({"person_id": 2})]
    );
    let statuses: Vec<u16> = env.api.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [0, 0]);
    assert_eq!(send(env.service(Method::GET, "/patients")).await.0, 200);
}

#[tokio::test]
async fn the_request_log_records_what_was_asked_and_answered() {
    let env = Env::start().await;
    let rows = json!([patient(1), patient(2)]);
    send(
        env.service(Method::POST, "/patients?on_conflict=person_id")
            .header("Prefer", "resolution=merge-duplicates")
            .header("Prefer", "return=minimal")
            .json(&rows),
    )
    .await;
    send(env.service(Method::DELETE, "/patients?person_id=in.(1,2)")).await;
    let log = env.api.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].table()),
        ("POST", "/rest/v1/patients", "patients")
    );
    assert_eq!(
        log[0].query_param("on_conflict").as_deref(),
        Some("person_id")
    );
    assert_eq!(
        log[0].prefer.as_deref(),
        Some("resolution=merge-duplicates, return=minimal")
    );
    assert_eq!((log[0].status, log[0].body_rows), (201, 2));
    assert_eq!(
        log[0].body.as_ref().map(|b| b[1]["person_id"].clone()),
        Some(json!(2))
    );
    assert_eq!(
        (log[1].method.as_str(), log[1].status, log[1].body_rows),
        ("DELETE", 204, 0)
    );
    assert_eq!(log[1].query_param("person_id").as_deref(), Some("in.(1,2)"));
    env.api.clear_requests();
    assert!(env.api.requests().is_empty());
}
