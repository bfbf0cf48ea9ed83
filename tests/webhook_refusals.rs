//! Who may post `POST /api/sync/webhook` and what bad input gets: a 4xx with a reason, a log
//! line, and nothing written; Standard Webhooks signatures when configured.

mod common;

use common::*;
use serde_json::json;

async fn wait_note(h: &Harness, uid: &str, body: &str) {
    h.wait_store("note applied", |store| {
        note_text(store, uid).as_deref() == Some(body)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_bad_input_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let good = hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(NOTE_A, "x", "2026-11-25T10:00:00+00:00")),
        None,
    );
    let post = |auth: Option<(&'static str, String)>, ct: &'static str, body: String| {
        let mut r = h
            .http
            .post(h.url("/api/sync/webhook"))
            .header("content-type", ct)
            .body(body);
        if let Some((name, value)) = auth {
            r = r.header(name, value);
        }
        r.send()
    };
    let bearer = |s: &str| Some(("authorization", format!("Bearer {s}")));
    // (auth header, content type, body, expected status, expected words in the reason)
    type Case = (
        Option<(&'static str, String)>,
        &'static str,
        String,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        // One reason for every authentication failure: it tells a stranger nothing.
        (
            None,
            "application/json",
            good.to_string(),
            401,
            "not authenticated",
        ),
        (
            bearer("wrong-secret-wrong-secret-wrong"),
            "application/json",
            good.to_string(),
            401,
            "not authenticated",
        ),
        (
            Some(("x-webhook-secret", "nope".into())),
            "application/json",
            good.to_string(),
            401,
            "not authenticated",
        ),
        (
            bearer(WEBHOOK_SECRET),
            "text/plain",
            good.to_string(),
            415,
            "application/json",
        ),
        (
            bearer(WEBHOOK_SECRET),
            "application/json",
            "{\"type\": \"INSERT\", ".into(),
            400,
            "malformed",
        ),
        (
            bearer(WEBHOOK_SECRET),
            "application/json",
            hook("INSERT", "patients", Some(json!({"person_id": 1})), None).to_string(),
            422,
            "not reverse-synced",
        ),
        (
            bearer(WEBHOOK_SECRET),
            "application/json",
            hook("INSERT", "secrets", Some(json!({"id": 1})), None).to_string(),
            422,
            "not reverse-synced",
        ),
        // Only catch-up reads rows "as they are now"; a webhook cannot claim to be one.
        (
            bearer(WEBHOOK_SECRET),
            "application/json",
            hook(
                "UPSERT",
                "aligner_notes",
                Some(note_record(NOTE_A, "x", "2026-11-25T10:00:00+00:00")),
                None,
            )
            .to_string(),
            422,
            "unknown event type",
        ),
    ];
    for (auth, ct, body, status, reason) in cases {
        let r = post(auth, ct, body).await.expect("request");
        assert_eq!(
            r.status().as_u16(),
            status,
            "expected {status} for {reason}"
        );
        let json: serde_json::Value = r.json().await.expect("JSON error body");
        assert!(
            json["reason"].as_str().unwrap_or("").contains(reason),
            "{json}"
        );
    }
    // Oversized: declared over the limit, refused on the header alone. Sent by hand so the
    // client is not still writing a body the server has already refused.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(h.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /api/sync/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WEBHOOK_SECRET}\r\nContent-Type: application/json\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n{{}}"
        );
        tcp.write_all(head.as_bytes()).await.expect("write");
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("too large"), "{answer}");
    }
    // A column the map does not know is schema drift, ignored (tests/reverse_drift.rs); a
    // value SQL Server cannot hold is refused.
    let mut bad_type = note_record(NOTE_A, "x", "2026-11-25T10:00:00+00:00");
    bad_type["aligner_set_id"] = json!("one");
    let (status, body) = h
        .webhook(&hook("INSERT", "aligner_notes", Some(bad_type), None), None)
        .await;
    assert_eq!(status, 422, "{body}");
    let status = h.status().await;
    assert_eq!(status["reverse"]["inbox"]["depth"], json!(0));
    // The 413 is refused by the body-size filter before the handler counts anything.
    assert_eq!(status["reverse"]["state"]["webhooks_rejected"], json!(9));
    assert_eq!(h.sql.apply_counts(), (0, 0), "nothing reached SQL Server");
    // The secret also works in X-Webhook-Secret.
    let r = post(
        Some(("x-webhook-secret", WEBHOOK_SECRET.into())),
        "application/json",
        good.to_string(),
    )
    .await
    .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_signatures_are_accepted_when_configured() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let h = Harness::start_with(Options {
        signing_secret: Some(SECRET),
        ..Options::default()
    })
    .await;
    seed_parents(&h.sql);
    let body = hook(
        "INSERT",
        "aligner_notes",
        Some(note_record(NOTE_A, "signed", "2026-11-25T10:00:00+00:00")),
        None,
    )
    .to_string();
    let send = |ts: i64, body: String, sig_body: &str| {
        let sig = syncbridge::test_support::sign_webhook(SECRET, "msg_1", ts, sig_body.as_bytes())
            .expect("a whsec_ secret");
        h.http
            .post(h.url("/api/sync/webhook"))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        send(now, body.clone(), "tampered")
            .await
            .expect("r")
            .status(),
        401
    );
    assert_eq!(
        send(now - 600, body.clone(), &body)
            .await
            .expect("r")
            .status(),
        401,
        "replayed"
    );
    assert_eq!(
        send(now, body.clone(), &body).await.expect("r").status(),
        200
    );
    wait_note(&h, NOTE_A, "signed").await;
}
