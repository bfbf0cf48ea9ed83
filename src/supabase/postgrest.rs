//! The PostgREST client: [`SupabaseApi`] over HTTP with the service key. Owns authentication
//! headers, the short in-process retry for network blips, and PostgREST's request grammar
//! (with [`super::filter`]).

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::error::{ErrorBody, PostgrestError};
use super::push::{self, PushRow, PushTable, Refused, PUSH_FUNCTION};
use super::{filter, JsonRow, KeyFilter, PageRequest, SupabaseApi, UpsertMode};
use crate::config::KeyKind;

/// Sent on every write so the Supabase webhook triggers can tell the agent's own writes from the
/// portal's (`sql/supabase/02_webhooks.sql` skips them: no echo back to SQL Server).
const ORIGIN_HEADER: &str = "x-syncbridge-origin";

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

/// A header value that `Debug` and logs never show.
fn sensitive(value: &str) -> Result<HeaderValue, PostgrestError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| PostgrestError::KeyNotAHeader)?;
    header.set_sensitive(true);
    Ok(header)
}

impl PostgrestClient {
    pub fn new(
        project_url: &Url,
        key: &SecretString,
        kind: KeyKind,
        timeout: Duration,
    ) -> Result<Self, PostgrestError> {
        let mut headers = HeaderMap::new();
        headers.insert("apikey", sensitive(key.expose_secret())?);
        if kind == KeyKind::LegacyJwt {
            // Legacy service_role keys are JWTs and PostgREST authorizes by the bearer token;
            // the new sb_secret_ keys are not JWTs and must not be sent as one.
            let bearer = sensitive(&format!("Bearer {}", key.expose_secret()))?;
            headers.insert(reqwest::header::AUTHORIZATION, bearer);
        }
        headers.insert(ORIGIN_HEADER, HeaderValue::from_static("clinic"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("syncbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(PostgrestError::Client)?;
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
            .map_err(|source| PostgrestError::TableName {
                table: table.to_owned(),
                source,
            })
    }

    /// Sends with a short in-process retry for blips (two more tries within about a second,
    /// never sooner than a `Retry-After` of up to a second asks); anything longer is the
    /// durable schedule's job.
    async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response, PostgrestError> {
        let once = || async {
            let response = build().send().await.map_err(|e| {
                if e.is_timeout() {
                    PostgrestError::Timeout(self.timeout)
                } else {
                    PostgrestError::Network(e)
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
                e.class().is_retryable()
                    && !matches!(e, PostgrestError::Timeout(_))
                    && e.retry_after().is_none_or(|d| d <= Duration::from_secs(1))
            })
            .adjust(|e: &PostgrestError, wait| {
                wait.map(|w| e.retry_after().map_or(w, |asked| w.max(asked)))
            })
            .notify(|e, wait| tracing::debug!(error = %e, ?wait, "retrying PostgREST request"))
            .await
    }

    /// A write with a JSON body and `Prefer: <prefer>`, its answer discarded. The body is
    /// `Bytes` so that each attempt shares it rather than copying a batch's rows.
    async fn write(
        &self,
        method: Method,
        url: Url,
        query: &[(String, String)],
        prefer: &str,
        body: Bytes,
    ) -> Result<(), PostgrestError> {
        self.send(|| {
            self.http
                .request(method.clone(), url.clone())
                .query(query)
                .header("Prefer", prefer)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<T, PostgrestError> {
        self.send(build)
            .await?
            .json()
            .await
            .map_err(PostgrestError::Decode)
    }
}

#[async_trait]
impl SupabaseApi for PostgrestClient {
    async fn upsert(
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
        let body = Bytes::from(serde_json::to_vec(rows).map_err(PostgrestError::Encode)?);
        let query = [("on_conflict".to_owned(), on_conflict.join(","))];
        let resolution = match mode {
            UpsertMode::Merge => "merge-duplicates",
            UpsertMode::InsertMissing => "ignore-duplicates",
        };
        let prefer = format!("resolution={resolution},return=minimal");
        self.write(Method::POST, url, &query, &prefer, body).await
    }

    async fn update(
        &self,
        table: &str,
        key: &KeyFilter,
        values: &JsonRow,
    ) -> Result<(), PostgrestError> {
        let url = self.table_url(table)?;
        // A top-level `eq.` takes the rest of the value literally (only `in.()` and `or=()`
        // lists unquote), so the raw value goes here, not the quoted form.
        let query: Vec<(String, String)> = key
            .iter()
            .map(|(c, v)| (c.clone(), format!("eq.{}", filter::raw(v))))
            .collect();
        let body = Bytes::from(serde_json::to_vec(values).map_err(PostgrestError::Encode)?);
        self.write(Method::PATCH, url, &query, "return=minimal", body)
            .await
    }

    async fn push(
        &self,
        table: &PushTable<'_>,
        rows: &[PushRow],
    ) -> Result<Vec<Refused>, PostgrestError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let url = self.table_url(&format!("rpc/{PUSH_FUNCTION}"))?;
        let body = Bytes::from(
            serde_json::to_vec(&push::body(table, rows)).map_err(PostgrestError::Encode)?,
        );
        self.get_json(|| {
            self.http
                .request(Method::POST, url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    async fn delete(&self, table: &str, keys: &[KeyFilter]) -> Result<(), PostgrestError> {
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

    async fn select_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Vec<JsonRow>, PostgrestError> {
        let url = self.table_url(table)?;
        let order = page
            .order
            .iter()
            .map(|c| format!("{c}.asc"))
            .collect::<Vec<_>>()
            .join(",");
        let mut query: Vec<(String, String)> = vec![
            ("select".to_owned(), "*".to_owned()),
            ("order".to_owned(), order),
            ("limit".to_owned(), page.limit.to_string()),
        ];
        if let Some(since) = &page.since {
            query.push((
                since.column.clone(),
                format!("gte.{}", since.at.to_rfc3339()),
            ));
        }
        query.extend(filter::after_filter(&page.after));
        self.get_json(|| self.http.request(Method::GET, url.clone()).query(&query))
            .await
    }

    /// PostgREST's OpenAPI description (`GET /rest/v1/`).
    async fn schema(&self) -> Result<Value, PostgrestError> {
        let url = self.rest.clone();
        self.get_json(|| {
            self.http
                .request(Method::GET, url.clone())
                .header("Accept", "application/openapi+json")
        })
        .await
    }
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
