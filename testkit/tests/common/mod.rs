//! Shared setup for the testkit's own integration tests: a database, the PostgREST stand-in and
//! an HTTP client that speaks to it the way the agent does, plus a webhook receiver.
#![allow(dead_code)] // each test binary uses a different subset

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Response};
use reqwest::RequestBuilder;
use serde_json::Value;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tokio::sync::mpsc;

/// Generous: a loaded CI machine can be slow, and the wait ends as soon as the condition holds.
pub const WAIT: Duration = Duration::from_secs(10);

/// Fields drop in order: the server goes before the database it serves.
pub struct Env {
    pub api: FakePostgrest,
    pub http: reqwest::Client,
    pub db: TestDb,
}

impl Env {
    pub async fn start() -> Env {
        let db = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        let api = FakePostgrest::start(db.url(), ApiKeys::generate())
            .await
            .expect("PostgREST stand-in");
        Env {
            db,
            api,
            http: client(),
        }
    }

    /// A request with the legacy service_role JWT in `apikey` and `Authorization`.
    pub fn service(&self, method: Method, path_and_query: &str) -> RequestBuilder {
        let key = self.api.keys().service_role_jwt();
        self.raw(method, path_and_query)
            .header("apikey", key)
            .header("Authorization", format!("Bearer {key}"))
    }

    /// A request with no credentials at all.
    pub fn raw(&self, method: Method, path_and_query: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path_and_query}", self.api.rest_url()))
    }

    /// Patient 1 -> work 1 -> aligner set 1, the parents every aligner row needs.
    pub async fn seed_parents(&self) {
        self.db
            .client()
            .batch_execute(
                "INSERT INTO patients (person_id, patient_name, patient_guid, date_added)
                     VALUES (1, 'Ada', '6f1c1d9e-3a52-4c33-9d0b-5b8a3f2b7c10', '2024-05-01 09:30:00');
                 INSERT INTO work (work_id, person_id, type_of_work, addition_time)
                     VALUES (1, 1, 'Aligners', '2024-05-01 09:31:00');
                 INSERT INTO aligner_sets (aligner_set_id, work_id, set_sequence, creation_date)
                     VALUES (1, 1, 1, '2024-05-01 09:32:00+00');",
            )
            .await
            .expect("seed parents");
    }

    /// `sql`'s rows as JSON objects.
    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        self.db.query_json(sql).await.expect("query")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// Sends and returns (status, body text).
pub async fn send(request: RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body read");
    (status, body)
}

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// A request received by [`Receiver`].
#[derive(Debug)]
pub struct Received {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A tiny HTTP server standing in for the agent's webhook endpoint; answers 200 to everything.
pub struct Receiver {
    pub url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let (tx, requests) = mpsc::unbounded_channel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/api/sync/webhook",
            listener.local_addr().expect("addr")
        );
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send(Received {
                                method: parts.method,
                                headers: parts.headers,
                                body,
                            });
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service),
                );
            }
        });
        Receiver {
            url,
            requests,
            server,
        }
    }

    /// The next request, waiting at most [`WAIT`].
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("a webhook within the deadline")
            .expect("receiver running")
    }

    /// Requests already received and not yet taken.
    pub fn take_pending(&mut self) -> usize {
        let mut count = 0;
        while self.requests.try_recv().is_ok() {
            count += 1;
        }
        count
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
