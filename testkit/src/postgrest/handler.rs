//! One `/rest/v1` request from authentication to answer: the gateway checks, routing to the
//! OpenAPI root, a table or an RPC, and the per-request transaction that first publishes the
//! request to SQL as PostgREST does (`request.method`, `request.path`, `request.headers`,
//! `request.jwt.claims`, `role`, `search_path`), so triggers and functions can read them.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::{Map, Value};
use tokio_postgres::{Client, Row, Transaction};

use super::auth::{authenticate, Caller};
use super::error::ApiError;
use super::pool::PooledClient;
use super::reply::{Prefer, Reply};
use super::{openapi, rpc, table, ServerState};

/// A request as the handlers see it (body fully read).
pub(crate) struct ApiRequest {
    pub method: Method,
    /// Full path, e.g. `/rest/v1/patients`.
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Everything a table or RPC handler needs about the request.
pub(crate) struct Context<'a> {
    pub state: &'a ServerState,
    pub request: &'a ApiRequest,
    pub caller: Caller,
    pub prefer: Prefer,
    /// The path PostgREST sees behind the gateway, e.g. `/patients` or `/rpc/f`.
    pub resource_path: String,
}

/// One statement and its text parameters ($1, $2, ...); it returns exactly one row.
#[derive(Debug)]
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<String>,
}

pub(crate) async fn respond(state: &ServerState, request: &ApiRequest) -> Reply {
    match route(state, request).await {
        Ok(reply) => reply,
        Err(err) => err.into(),
    }
}

async fn route(state: &ServerState, request: &ApiRequest) -> Result<Reply, ApiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let caller = authenticate(&state.keys, &request.headers, now)?;
    let accept = request.headers.get("accept").and_then(|v| v.to_str().ok());
    if accept.is_some_and(|a| a.contains("vnd.pgrst")) {
        return Err(ApiError::not_implemented(
            "application/vnd.pgrst.* media types",
        ));
    }
    let resource = request.path.strip_prefix("/rest/v1").unwrap_or_default();
    let resource = resource.trim_start_matches('/');
    let method = request.method.clone();
    if resource.is_empty() {
        return match method {
            Method::GET => openapi::document(state).await,
            _ => Err(unsupported_method(&method)),
        };
    }
    let context = Context {
        state,
        request,
        caller,
        prefer: Prefer::parse(&request.headers),
        resource_path: format!("/{resource}"),
    };
    if let Some(function) = resource.strip_prefix("rpc/") {
        return match method {
            Method::POST => rpc::call(&context, &decode_segment(function)).await,
            Method::GET => Err(ApiError::not_implemented("GET on /rpc (use POST)")),
            _ => Err(unsupported_method(&method)),
        };
    }
    if resource.contains('/') {
        let message = "Invalid path specified in request URL";
        return Err(ApiError::pgrst(404, "PGRST125", message));
    }
    let name = decode_segment(resource);
    match method {
        Method::GET => table::read(&context, &name).await,
        Method::POST => table::create(&context, &name).await,
        Method::PATCH => table::update(&context, &name).await,
        Method::DELETE => table::delete(&context, &name).await,
        Method::PUT | Method::HEAD => Err(ApiError::not_implemented("PUT and HEAD")),
        _ => Err(unsupported_method(&method)),
    }
}

fn unsupported_method(method: &Method) -> ApiError {
    ApiError::pgrst(
        405,
        "PGRST117",
        format!("Unsupported HTTP method: {method}"),
    )
}

/// Percent-decodes a path segment; in a path `+` is a plus, not a space.
fn decode_segment(segment: &str) -> String {
    let encoded = format!("s={}", segment.replace('+', "%2B"));
    url::form_urlencoded::parse(encoded.as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default()
}

impl Context<'_> {
    /// A pooled connection, or PostgREST's answer when the database cannot be reached.
    pub async fn connection(&self) -> Result<PooledClient, ApiError> {
        self.state.pool.get().await.map_err(|err| {
            let message = "Database connection error. Retrying the connection.".to_owned();
            ApiError::full(503, "PGRST000", message, Some(err.to_string()), None)
        })
    }

    /// Starts the request's transaction and publishes the request to it.
    pub async fn begin<'c>(
        &self,
        client: &'c mut Client,
        read_only: bool,
    ) -> Result<Transaction<'c>, ApiError> {
        let transaction = client
            .build_transaction()
            .read_only(read_only)
            .start()
            .await
            .map_err(|err| self.db_error(err))?;
        self.publish_request(&transaction).await?;
        Ok(transaction)
    }

    /// What PostgREST sets before the main statement: transaction-local, so it vanishes at
    /// commit and cannot leak to the next request on the same connection.
    async fn publish_request(&self, transaction: &Transaction<'_>) -> Result<(), ApiError> {
        let mut headers = Map::new();
        for (name, value) in &self.request.headers {
            // PostgREST moves cookies to request.cookies; everything else keeps its
            // lower-case name, last value winning.
            if name.as_str() != "cookie" {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
        let headers = Value::Object(headers).to_string();
        let claims = self.caller.claims.to_string();
        transaction
            .execute(
                "SELECT set_config('search_path', '\"public\", \"extensions\"', true), \
                        set_config('request.method', $1, true), \
                        set_config('request.path', $2, true), \
                        set_config('request.headers', $3, true), \
                        set_config('request.cookies', '{}', true), \
                        set_config('request.jwt.claims', $4, true), \
                        set_config('role', $5, true)",
                &[
                    &self.request.method.as_str(),
                    &self.resource_path,
                    &headers,
                    &claims,
                    &self.caller.role,
                ],
            )
            .await
            .map_err(|err| self.db_error(err))?;
        Ok(())
    }

    pub async fn run(
        &self,
        transaction: &Transaction<'_>,
        statement: &Statement,
    ) -> Result<Row, ApiError> {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = statement
            .params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        tracing::trace!(sql = %statement.sql, "PostgREST stand-in statement");
        transaction
            .query_one(statement.sql.as_str(), &params)
            .await
            .map_err(|err| self.db_error(err))
    }

    pub async fn commit(&self, transaction: Transaction<'_>) -> Result<(), ApiError> {
        transaction.commit().await.map_err(|err| self.db_error(err))
    }

    pub fn db_error(&self, err: tokio_postgres::Error) -> ApiError {
        ApiError::from_db(&err, self.caller.authenticated())
    }

    /// The body as text, which goes to PostgreSQL verbatim (so numbers keep their precision).
    pub fn body_text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.request.body)
            .map_err(|_| ApiError::invalid_body("Empty or invalid json"))
    }
}
