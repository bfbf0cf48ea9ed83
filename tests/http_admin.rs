//! The HTTP surface outside the sync paths: who may call what, and the shape of refusals.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_probes_answer_and_admin_endpoints_need_the_token() {
    let h = Harness::start().await;
    let get = |path: &str| h.http.get(h.url(path)).send();
    let r = get("/health").await.expect("health");
    assert_eq!(r.status(), 200);
    let r = get("/api/sync/queue-notify").await.expect("probe");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["success"],
        json!(true)
    );

    for (method, path) in [
        ("POST", "/api/sync/queue-notify"),
        ("POST", "/api/sync/trigger"),
        ("GET", "/api/sync/status"),
        ("POST", "/api/sync/retry-failed"),
        ("GET", "/metrics"),
    ] {
        // The notify token (readable in SQL Server's SyncConfig) opens queue-notify only.
        let notify_only = (path != "/api/sync/queue-notify").then_some(NOTIFY_TOKEN);
        for token in [
            None,
            Some("wrong-token-wrong-token-wrong"),
            Some(WEBHOOK_SECRET),
            notify_only,
        ] {
            let mut req = h
                .http
                .request(method.parse().expect("method"), h.url(path))
                .json(&json!({}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("request");
            assert_eq!(r.status(), 401, "{method} {path} with {token:?}");
            let body: serde_json::Value = r.json().await.expect("json");
            assert_eq!(body["reason"], json!("not authenticated"), "{body}");
        }
    }
    assert_eq!(
        h.status().await["forward"]["state"]["notifications"],
        json!(0),
        "refused notifications did nothing"
    );
    assert_eq!(h.notify().await, 202, "the notify token opens queue-notify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_validates_its_body_and_reports_what_it_did() {
    let h = Harness::start().await;
    h.sql
        .clinic_write("tblPatients", &key("PersonID", 1), Some(patient(1, "A")));
    let post = |body: &str| {
        h.http
            .post(h.url("/api/sync/trigger"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    for bad in [
        r#"{"direction":"sideways"}"#,
        "not json",
        r#"{"direction":"both","extra":1}"#,
    ] {
        let r = post(bad).await.expect("trigger");
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(
        h.sql.queue()[0].status,
        "Pending",
        "refused triggers drained nothing"
    );
    let report = h.trigger("both").await;
    assert_eq!(
        report["result"]["sql_to_postgres"]["items_synced"],
        json!(1),
        "{report}"
    );
    assert_eq!(
        report["result"]["sql_to_postgres"]["rows_upserted"],
        json!(1)
    );
    assert!(
        report["result"]["postgres_to_sql"]["tables"].as_u64() == Some(2),
        "{report}"
    );
    // An empty body means the old default, sql-to-postgres.
    let r = post("").await.expect("trigger");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(h.url("/api/sync/nothing-here"))
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["reason"],
        json!("no such endpoint")
    );
    let r = h
        .http
        .delete(h.url("/api/sync/webhook"))
        .send()
        .await
        .expect("405");
    assert_eq!(r.status(), 405);
    assert!(r.json::<serde_json::Value>().await.expect("json")["reason"].is_string());
    let r = h
        .http
        .post(h.url("/api/sync/trigger"))
        .bearer_auth(ADMIN_TOKEN)
        .body("x".repeat(5000))
        .send()
        .await
        .expect("413");
    assert_eq!(r.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_queue_inbox_and_watermarks() {
    let h = Harness::start().await;
    h.sql.enqueue_raw("tblNope", r#"{"X":1}"#, "INSERT");
    h.notify().await;
    h.wait_synced().await;
    let s = h.status().await;
    assert_eq!(s["forward"]["queue"]["failed"], json!(1), "{s}");
    assert_eq!(s["forward"]["queue"]["pending"], json!(0));
    assert_eq!(s["forward"]["state"]["notifications"], json!(1));
    assert_eq!(s["reverse"]["inbox"]["depth"], json!(0));
    assert!(s["reverse"]["inbox"]["oldest_unapplied_age_secs"].is_null());
    assert!(s["reverse"]["catchup_watermarks"].is_object());
    assert!(s["agent"]["version"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_not_buffered_before_the_token_is_checked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let mut tcp = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    // A chunked body that never ends: the answer must not wait for it.
    let head = "POST /api/sync/trigger HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n10\r\n0123456789abcdef\r\n";
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(DEADLINE, tcp.read(&mut answer))
        .await
        .expect("answered without the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}
