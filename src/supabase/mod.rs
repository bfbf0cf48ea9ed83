//! The PostgREST client: the agent's only way into Supabase (never a direct Postgres
//! connection). Owns authentication headers, the short in-process retry for network blips,
//! and PostgREST's request grammar; knows nothing of queues or table maps.

pub mod error;
pub mod filter;

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

pub use error::{ErrorBody, ErrorClass, PostgrestError};

use crate::config::KeyKind;

/// Sent on every write so the Supabase webhook triggers can tell the agent's own writes from the
/// portal's (`sql/supabase/02_webhooks.sql` skips them: no echo back to SQL Server).
pub const ORIGIN_HEADER: &str = "x-syncbridge-origin";

pub type JsonRow = Map<String, Value>;

/// How an upsert treats rows that already exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertMode {
    /// `resolution=merge-duplicates`; with `columns`, only those columns are written.
    Merge { columns: Option<Vec<String>> },
    /// `resolution=ignore-duplicates`: insert new rows, leave existing ones untouched.
    InsertMissing,
}

#[derive(Clone)]
pub struct PostgrestClient {
    http: reqwest::Client,
    rest: Url,
    timeout: Duration,
}

impl std::fmt::Debug for PostgrestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgrestClient")
            .field("rest", &self.rest.as_str())
            .finish_non_exhaustive()
    }
}

impl PostgrestClient {
    pub fn new(
        project_url: &Url,
        key: &SecretString,
        kind: KeyKind,
        timeout: Duration,
    ) -> Result<Self, PostgrestError> {
        let invalid = |_| {
            PostgrestError::Decode(
                "the service key contains characters not allowed in a header".to_owned(),
            )
        };
        let mut headers = HeaderMap::new();
        let mut apikey = HeaderValue::from_str(key.expose_secret()).map_err(invalid)?;
        apikey.set_sensitive(true);
        headers.insert("apikey", apikey);
        if kind == KeyKind::LegacyJwt {
            // Legacy service_role keys are JWTs and PostgREST authorizes by the bearer token;
            // the new sb_secret_ keys are not JWTs and must not be sent as one.
            let mut bearer = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(invalid)?;
            bearer.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, bearer);
        }
        headers.insert(ORIGIN_HEADER, HeaderValue::from_static("clinic"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("syncbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PostgrestError::Network(e.to_string()))?;
        let mut rest = project_url.clone();
        rest.set_path(&format!(
            "{}/rest/v1/",
            project_url.path().trim_end_matches('/')
        ));
        Ok(Self {
            http,
            rest,
            timeout,
        })
    }

    fn table_url(&self, table: &str) -> Result<Url, PostgrestError> {
        self.rest
            .join(table)
            .map_err(|e| PostgrestError::Decode(format!("bad table name {table:?}: {e}")))
    }

    /// Sends with a short in-process retry for blips (two more tries within about a second);
    /// anything longer is the durable schedule's job.
    async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response, PostgrestError> {
        let once = || async {
            let response = build().send().await.map_err(|e| {
                if e.is_timeout() {
                    PostgrestError::Timeout(self.timeout)
                } else {
                    PostgrestError::Network(without_url(&e))
                }
            })?;
            if response.status().is_success() {
                return Ok(response);
            }
            Err(error_from(response).await)
        };
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(800))
            .with_max_times(2)
            .with_jitter();
        once.retry(policy)
            .when(|e: &PostgrestError| {
                e.is_retryable()
                    && !matches!(e, PostgrestError::Timeout(_))
                    && e.retry_after().is_none_or(|d| d <= Duration::from_secs(1))
            })
            .notify(|e, wait| tracing::debug!(error = %e, ?wait, "retrying PostgREST request"))
            .await
    }

    /// Upserts `rows` into `table` in one request (`on_conflict` = the key columns).
    pub async fn upsert(
        &self,
        table: &str,
        rows: &[JsonRow],
        on_conflict: &[String],
        mode: &UpsertMode,
    ) -> Result<(), PostgrestError> {
        if rows.is_empty() {
            return Ok(());
        }
        let url = self.table_url(table)?;
        let body = serde_json::to_vec(rows).map_err(|e| PostgrestError::Decode(e.to_string()))?;
        let mut query = vec![("on_conflict".to_owned(), on_conflict.join(","))];
        let resolution = match mode {
            UpsertMode::Merge { columns } => {
                if let Some(cols) = columns {
                    query.push(("columns".to_owned(), cols.join(",")));
                }
                "merge-duplicates"
            }
            UpsertMode::InsertMissing => "ignore-duplicates",
        };
        let prefer = format!("resolution={resolution},return=minimal");
        self.send(|| {
            self.http
                .request(Method::POST, url.clone())
                .query(&query)
                .header("Prefer", &prefer)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Updates one row, identified by its key, with `values`; never inserts. Answers success
    /// when no row matched (PostgREST's 204), which the caller rules out by inserting first.
    pub async fn update(
        &self,
        table: &str,
        key: &[(String, Value)],
        values: &JsonRow,
    ) -> Result<(), PostgrestError> {
        let url = self.table_url(table)?;
        // A top-level `eq.` takes the rest of the value literally (only `in.()` and `or=()`
        // lists unquote), so the raw value goes here, not the quoted form.
        let query: Vec<(String, String)> = key
            .iter()
            .map(|(c, v)| (c.clone(), format!("eq.{}", filter::raw(v))))
            .collect();
        let body = serde_json::to_vec(values).map_err(|e| PostgrestError::Decode(e.to_string()))?;
        self.send(|| {
            self.http
                .request(Method::PATCH, url.clone())
                .query(&query)
                .header("Prefer", "return=minimal")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Deletes the rows with these keys (each `(column, value)` pairs in key order).
    pub async fn delete(
        &self,
        table: &str,
        keys: &[Vec<(String, Value)>],
    ) -> Result<(), PostgrestError> {
        if keys.is_empty() {
            return Ok(());
        }
        let url = self.table_url(table)?;
        let query = filter::keys_filter(keys);
        self.send(|| {
            self.http
                .request(Method::DELETE, url.clone())
                .query(&query)
                .header("Prefer", "return=minimal")
        })
        .await
        .map(drop)
    }

    /// One keyset page: rows ordered by `order` (ascending), strictly after `after` when given,
    /// with `extra` filters, at most `limit`.
    pub async fn select_page(
        &self,
        table: &str,
        order: &[String],
        after: &[(String, Value)],
        extra: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<JsonRow>, PostgrestError> {
        let url = self.table_url(table)?;
        let mut query: Vec<(String, String)> = vec![
            ("select".to_owned(), "*".to_owned()),
            (
                "order".to_owned(),
                order
                    .iter()
                    .map(|c| format!("{c}.asc"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("limit".to_owned(), limit.to_string()),
        ];
        query.extend(extra.iter().cloned());
        query.extend(filter::after_filter(after));
        let response = self
            .send(|| self.http.request(Method::GET, url.clone()).query(&query))
            .await?;
        response
            .json()
            .await
            .map_err(|e| PostgrestError::Decode(without_url(&e)))
    }

    /// PostgREST's OpenAPI description (`GET /rest/v1/`), used by `syncbridge check`.
    pub async fn openapi(&self) -> Result<Value, PostgrestError> {
        let url = self.rest.clone();
        let response = self
            .send(|| {
                self.http
                    .request(Method::GET, url.clone())
                    .header("Accept", "application/openapi+json")
            })
            .await?;
        response
            .json()
            .await
            .map_err(|e| PostgrestError::Decode(without_url(&e)))
    }
}

fn without_url(e: &reqwest::Error) -> String {
    // The URL has no secret in it, but the message reads better without the query string.
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn error_from(response: reqwest::Response) -> PostgrestError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
        message: Some(if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text.chars().take(500).collect()
        }),
        ..ErrorBody::default()
    });
    PostgrestError::Status {
        status: status.as_u16(),
        body,
        retry_after: retry_after.filter(|_| {
            matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
        }),
    }
}
