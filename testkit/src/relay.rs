//! Delivers the Database Webhooks that the test stand-in `supabase_functions.http_request()`
//! queues, doing pg_net's job: after the writing transaction commits, each request is sent over
//! HTTP with its own URL, method, headers and timeout. Every attempt is logged so tests can
//! assert on payloads, and `set_dropping(true)` loses webhooks the way a failing pg_net does.
//! This module only moves queued requests; which rows produce them is decided in SQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::error::{redact_url, Result, TestkitError};

const CHANNEL: &str = "syncbridge_webhooks";
/// What `supabase_functions.http_request` uses when the trigger gives no timeout.
const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// One queued webhook and what became of it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub method: String,
    pub headers: Map<String, Value>,
    /// Supabase's payload `{type, table, schema, record, old_record}`; `Null` for GET hooks.
    pub payload: Value,
    pub outcome: DeliveryOutcome,
}

impl Delivery {
    /// The HTTP status the receiver answered with, if the request was sent and answered.
    pub fn status(&self) -> Option<u16> {
        match &self.outcome {
            DeliveryOutcome::Sent { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What happened to a queued webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Sent and answered.
    Sent { status: u16, body: String },
    /// Sent, but the connection failed or timed out (pg_net records these as errors too).
    Failed { error: String },
    /// Not sent because the relay was set to drop webhooks.
    Dropped,
}

/// Listens for queued webhooks in one database and delivers them. Stops when dropped.
pub struct WebhookRelay {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    log: Mutex<Vec<Delivery>>,
    delivered: watch::Sender<usize>,
    dropping: AtomicBool,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Vec<Delivery>> {
        // A panic while holding the lock cannot leave the Vec half-written; keep using it.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request as the stand-in queues it.
#[derive(Deserialize)]
struct QueuedRequest<'a> {
    url: String,
    method: String,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    params: Map<String, Value>,
    timeout_ms: Option<u64>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

impl WebhookRelay {
    /// Starts listening on the database at `db_url`. Requests queued before the call are
    /// delivered too, as pg_net would after a restart.
    pub async fn start(db_url: &str) -> Result<WebhookRelay> {
        let mut config: Config =
            db_url
                .parse()
                .map_err(|err: tokio_postgres::Error| TestkitError::BadUrl {
                    url: redact_url(db_url),
                    reason: err.to_string(),
                })?;
        config.application_name("syncbridge-testkit-relay");
        let (client, mut connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|source| TestkitError::PgUnreachable {
                    url: redact_url(db_url),
                    source,
                })?;

        // Notifications arrive as connection messages, not query results, so the connection
        // is driven here and each notification becomes a wake-up for the worker.
        let (wake, woken) = mpsc::unbounded_channel();
        let listener = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        if wake.send(()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(%err, "webhook relay connection ended");
                        break;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;

        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            delivered: watch::Sender::new(0),
            dropping: AtomicBool::new(false),
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|err| {
                TestkitError::Io(std::io::Error::other(format!("HTTP client: {err}")))
            })?;
        let worker = tokio::spawn(run_worker(client, woken, Arc::clone(&shared), http));
        Ok(WebhookRelay {
            shared,
            tasks: vec![listener, worker],
        })
    }

    /// Every webhook handled so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.log().clone()
    }

    /// Forgets the deliveries logged so far (counting for `wait_for_deliveries` restarts).
    pub fn clear_deliveries(&self) {
        self.shared.log().clear();
        self.shared.delivered.send_replace(0);
    }

    /// Waits until at least `n` webhooks have been handled (sent, failed or dropped), for at
    /// most `within`.
    pub async fn wait_for_deliveries(&self, n: usize, within: Duration) -> Result<Vec<Delivery>> {
        crate::error::wait_for_count(self.shared.delivered.subscribe(), n, within, || {
            format!("{n} webhook deliveries")
        })
        .await?;
        Ok(self.deliveries())
    }

    /// While `true`, queued webhooks are logged as [`DeliveryOutcome::Dropped`] and not sent.
    pub fn set_dropping(&self, dropping: bool) {
        self.shared.dropping.store(dropping, Ordering::SeqCst);
    }
}

impl Drop for WebhookRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn run_worker(
    client: Client,
    mut woken: mpsc::UnboundedReceiver<()>,
    shared: Arc<Shared>,
    http: reqwest::Client,
) {
    // Drain once up front for requests queued before LISTEN, then once per wake-up; a drain
    // takes everything queued, so wake-ups that pile up meanwhile cost one empty query each.
    loop {
        if let Err(err) = drain(&client, &shared, &http).await {
            tracing::warn!(%err, "webhook relay stopped");
            return;
        }
        if woken.recv().await.is_none() {
            return;
        }
    }
}

async fn drain(client: &Client, shared: &Shared, http: &reqwest::Client) -> Result<()> {
    let rows = client
        .query(
            "DELETE FROM supabase_functions.syncbridge_webhook_queue \
             WHERE id IN (SELECT id FROM supabase_functions.syncbridge_webhook_queue \
                          ORDER BY id FOR UPDATE SKIP LOCKED) \
             RETURNING id, request::text",
            &[],
        )
        .await?;
    let mut queued: Vec<(i64, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    queued.sort_by_key(|(id, _)| *id);
    for (id, text) in queued {
        let delivery = match serde_json::from_str::<QueuedRequest<'_>>(&text) {
            Ok(request) => deliver(http, request, shared.dropping.load(Ordering::SeqCst)).await,
            Err(err) => {
                tracing::warn!(%err, id, "unreadable queued webhook");
                continue;
            }
        };
        let mut log = shared.log();
        log.push(delivery);
        let count = log.len();
        drop(log);
        shared.delivered.send_replace(count);
    }
    Ok(())
}

async fn deliver(http: &reqwest::Client, request: QueuedRequest<'_>, dropping: bool) -> Delivery {
    let payload = request
        .body
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or(Value::Null);
    let outcome = if dropping {
        DeliveryOutcome::Dropped
    } else {
        send(http, &request).await
    };
    tracing::debug!(url = %request.url, ?outcome, "webhook handled");
    Delivery {
        url: request.url,
        method: request.method,
        headers: request.headers,
        payload,
        outcome,
    }
}

async fn send(http: &reqwest::Client, request: &QueuedRequest<'_>) -> DeliveryOutcome {
    let mut url = match url::Url::parse(&request.url) {
        Ok(url) => url,
        Err(err) => {
            return DeliveryOutcome::Failed {
                error: format!("bad url: {err}"),
            }
        }
    };
    if !request.params.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &request.params {
            pairs.append_pair(
                name,
                value
                    .as_str()
                    .map_or(value.to_string(), str::to_owned)
                    .as_str(),
            );
        }
    }
    let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
        Ok(method) => method,
        Err(err) => {
            return DeliveryOutcome::Failed {
                error: format!("bad method: {err}"),
            }
        }
    };
    let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
    let mut builder = http.request(method, url).timeout(timeout);
    for (name, value) in &request.headers {
        if let Some(value) = value.as_str() {
            builder = builder.header(name.as_str(), value);
        }
    }
    // The body goes out exactly as PostgreSQL rendered the jsonb, like pg_net sends it.
    if let Some(body) = request.body.filter(|raw| raw.get() != "null") {
        builder = builder.body(body.get().to_owned());
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => DeliveryOutcome::Sent { status, body },
                Err(err) => DeliveryOutcome::Failed {
                    error: err.to_string(),
                },
            }
        }
        Err(err) => DeliveryOutcome::Failed {
            error: err.to_string(),
        },
    }
}
