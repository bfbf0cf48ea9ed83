//! The HTTP server's edges against slow and greedy clients (issue 6.9): headers, bodies and idle
//! connections each have a deadline, the connection cap holds while the clinic's notify is
//! still answered, secrets are checked before a body is read, and every failed authentication
//! gets the same 401. Spoken over raw TCP, as a hostile client would.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn agent(settings: Vec<(&'static str, &'static str)>) -> Harness {
    Harness::start_with(Options {
        settings,
        ..Options::default()
    })
    .await
}

/// Reads until the agent closes the connection (bounded by [`DEADLINE`]); what it sent and how
/// long after `since` it closed.
async fn until_closed(tcp: &mut TcpStream, since: Instant) -> (String, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_all)
        .await
        .expect("the agent closed the connection");
    (String::from_utf8_lossy(&got).into_owned(), since.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_closed_within_the_header_timeout() {
    let h = agent(vec![("SYNC_HTTP_HEADER_TIMEOUT", "600ms")]).await;
    // Silent: connects and sends nothing.
    let start = Instant::now();
    let mut silent = TcpStream::connect(h.addr).await.expect("connect");
    let (sent, after) = until_closed(&mut silent, start).await;
    assert!(sent.is_empty(), "{sent}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    // Slowloris: a header line every 100 ms, never the blank line that ends them.
    let mut slow = TcpStream::connect(h.addr).await.expect("connect");
    let start = Instant::now();
    slow.write_all(b"POST /api/sync/webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let dribble = async {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, dribble)
        .await
        .expect("bounded");
    let (_, after) = until_closed(&mut slow, start).await;
    assert!(
        after >= Duration::from_millis(500) && after < Duration::from_secs(3),
        "a trickle of header lines does not extend the deadline: closed after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_body_is_answered_408_within_the_request_timeout() {
    let h = agent(vec![("SYNC_HTTP_REQUEST_TIMEOUT", "800ms")]).await;
    let mut tcp = TcpStream::connect(h.addr).await.expect("connect");
    let head = format!(
        "POST /api/sync/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WEBHOOK_SECRET}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"type\": "
    );
    let start = Instant::now();
    tcp.write_all(head.as_bytes()).await.expect("write");
    let (answer, after) = until_closed(&mut tcp, start).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_secs(4),
        "answered after {after:?}"
    );
    assert_eq!(h.status().await["reverse"]["inbox"]["depth"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_lives_for_the_idle_timeout_not_the_header_timeout() {
    let h = agent(vec![
        ("SYNC_HTTP_HEADER_TIMEOUT", "300ms"),
        ("SYNC_HTTP_IDLE_TIMEOUT", "1500ms"),
    ])
    .await;
    let mut tcp = TcpStream::connect(h.addr).await.expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("\"ok\"}") {
        let n = tokio::time::timeout(DEADLINE, tcp.read(&mut buf))
            .await
            .expect("answered")
            .expect("read");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let idle_since = Instant::now();
    let (more, after) = until_closed(&mut tcp, idle_since).await;
    assert!(more.is_empty(), "{more}");
    assert!(
        after >= Duration::from_millis(1300) && after < Duration::from_secs(5),
        "idle connection closed after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_the_clinic_notify_is_still_answered() {
    let h = agent(vec![
        ("SYNC_HTTP_MAX_CONNECTIONS", "16"),
        ("SYNC_HTTP_HEADER_TIMEOUT", "30s"),
    ])
    .await;
    let mut hostile = Vec::new();
    for _ in 0..60 {
        let mut tcp = TcpStream::connect(h.addr).await.expect("connect");
        tcp.write_all(b"GET /health HTTP/1.1\r\n")
            .await
            .expect("write");
        hostile.push(tcp);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for _ in 0..5 {
        let start = Instant::now();
        let r = client
            .post(h.url("/api/sync/queue-notify"))
            .bearer_auth(NOTIFY_TOKEN)
            .send()
            .await
            .expect("notify answered");
        assert_eq!(r.status(), 202);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
    // Which of the 60 are still open: a closed one reads EOF at once, an open one waits.
    let open = futures_util::future::join_all(hostile.iter_mut().map(|tcp| async move {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await,
            Err(_elapsed)
        )
    }))
    .await;
    let open = open.iter().filter(|o| **o).count();
    assert!(open <= 16, "{open} of 60 hostile connections still open");
    assert!(
        open >= 8,
        "only {open} open: the cap, not something else, closed them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_body_is_refused_on_its_headers_without_being_read() {
    // The body limit is above the declared length: only the missing secret can refuse it.
    let h = agent(vec![("SYNC_MAX_BODY_BYTES", "2097152")]).await;
    for (path, auth) in [
        ("/api/sync/webhook", ""),
        (
            "/api/sync/webhook",
            "Authorization: Bearer guess-guess-guess-guess\r\n",
        ),
        ("/api/sync/trigger", ""),
        (
            "/api/sync/retry-failed",
            "Authorization: Bearer guess-guess-guess-guess\r\n",
        ),
    ] {
        let mut tcp = TcpStream::connect(h.addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
        );
        let start = Instant::now();
        // Not one byte of the 1 MiB body is sent: an answer proves it was not waited for.
        tcp.write_all(head.as_bytes()).await.expect("write");
        let (answer, after) = until_closed(&mut tcp, start).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(after < Duration::from_secs(2), "{path}: {after:?}");
    }
    assert_eq!(h.status().await["reverse"]["inbox"]["depth"], json!(0));
}

/// The status and body of a 401, the body as text.
async fn refusal(request: reqwest::RequestBuilder) -> (u16, String) {
    let r = request.send().await.expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authentication_failure_gets_the_same_401() {
    const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let plain = Harness::start().await;
    let signed = Harness::start_with(Options {
        signing_secret: Some(SIGNING),
        ..Options::default()
    })
    .await;
    let note = hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(NOTE_A, "x", "2026-11-25T10:00:00+00:00")),
        None,
    )
    .to_string();
    let now = chrono::Utc::now().timestamp().to_string();
    let mut answers = Vec::new();
    for h in [&plain, &signed] {
        let webhook = || {
            h.http
                .post(h.url("/api/sync/webhook"))
                .header("content-type", "application/json")
                .body(note.clone())
        };
        answers.push(refusal(webhook()).await);
        answers.push(refusal(webhook().bearer_auth("guess-guess-guess-guess")).await);
        answers.push(refusal(webhook().header("x-webhook-secret", "guess")).await);
        answers.push(refusal(webhook().bearer_auth(ADMIN_TOKEN)).await);
        let forged = webhook()
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", now.clone())
            .header(
                "webhook-signature",
                "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            );
        answers.push(refusal(forged).await);
        for (method, path) in [
            ("POST", "/api/sync/queue-notify"),
            ("POST", "/api/sync/trigger"),
            ("GET", "/api/sync/status"),
            ("GET", "/metrics"),
        ] {
            let request = || h.http.request(method.parse().expect("method"), h.url(path));
            answers.push(refusal(request()).await);
            answers.push(refusal(request().bearer_auth(WEBHOOK_SECRET)).await);
            answers.push(refusal(request().header("authorization", "Basic eDp5")).await);
        }
    }
    let expected = (
        401,
        r#"{"error":"Unauthorized","reason":"not authenticated"}"#.to_owned(),
    );
    assert_eq!(answers.len(), 34);
    for answer in &answers {
        assert_eq!(answer, &expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_trickling_its_next_headers_is_closed_within_the_header_timeout() {
    let h = agent(vec![
        ("SYNC_HTTP_HEADER_TIMEOUT", "600ms"),
        ("SYNC_HTTP_IDLE_TIMEOUT", "30s"),
    ])
    .await;
    let mut tcp = TcpStream::connect(h.addr).await.expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(DEADLINE, tcp.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The next request's headers, a line every 100 ms: the idle timeout no longer applies.
    let start = Instant::now();
    tcp.write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("write");
    let dribble = async {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tcp
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, dribble)
        .await
        .expect("bounded");
    let (_, after) = until_closed(&mut tcp, start).await;
    assert!(
        after >= Duration::from_millis(500) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_are_read_a_few_at_a_time_before_their_signature_is_checked() {
    let h = Harness::start_with(Options {
        signing_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        settings: vec![("SYNC_HTTP_REQUEST_TIMEOUT", "30s")],
        ..Options::default()
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let head = format!(
        "POST /api/sync/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nwebhook-id: msg_1\r\nwebhook-timestamp: {now}\r\nwebhook-signature: v1,AAAA\r\nContent-Length: 60000\r\n\r\n{{"
    );
    // Eight signed bodies that never finish hold the eight places...
    let mut holding = Vec::new();
    for _ in 0..8 {
        let mut tcp = TcpStream::connect(h.addr).await.expect("connect");
        tcp.write_all(head.as_bytes()).await.expect("write");
        holding.push(tcp);
    }
    // ...so a ninth is refused on its headers (retrying until the eight have been read as far).
    // A deadline, not a count of tries: on a loaded machine the eight are read slowly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answer = String::new();
    while answer.is_empty() && Instant::now() < deadline {
        let mut tcp = TcpStream::connect(h.addr).await.expect("connect");
        tcp.write_all(head.as_bytes()).await.expect("write");
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
        if let Ok(Ok(n)) = read {
            answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many requests at once"), "{answer}");
    // Once they are gone, signed webhooks are read again (and this forged one refused).
    drop(holding);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    while Instant::now() < deadline {
        let r = h
            .http
            .post(h.url("/api/sync/webhook"))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", "v1,AAAA")
            .body("{}")
            .send()
            .await
            .expect("request");
        status = r.status().as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401);
}
