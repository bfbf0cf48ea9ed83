//! One `/rest/v1` request from authentication to answer: the gateway checks, routing by method,
//! and the per-request transaction that first publishes the request to SQL as PostgREST does
//! (`request.headers`, `request.method`, `request.path`, `request.jwt.claims`, role), so triggers
//! can read them. The reads and writes themselves live in `read` and `write`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value};
use tokio_postgres::{Client, Row, Transaction};

use super::auth::{authenticate, Caller};
use super::error::ApiError;
use super::query::QueryParams;
use super::reply::{Prefer, Reply};
use super::schema::{load_table, Table};
use super::sql::Statement;
use super::{openapi, query, read, write, ServerState};

/// A request as the handlers see it (body fully read).
pub(crate) struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Everything a read or write needs about the request.
pub(crate) struct Context<'a> {
    pub state: &'a ServerState,
    pub request: &'a ApiRequest,
    pub caller: Caller,
    pub table_name: String,
    pub query: QueryParams,
    pub prefer: Prefer,
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
        .map_or(0, |d| d.as_secs() as i64);
    let caller = authenticate(&state.keys, &request.headers, &request.query, now)?;
    let resource = request.path.strip_prefix("/rest/v1").unwrap_or_default();
    let resource = resource.strip_prefix('/').unwrap_or(resource);
    if resource.is_empty() {
        return match request.method {
            Method::GET | Method::HEAD => openapi::document(state, request).await,
            _ => Err(ApiError::pgrst(
                405,
                "PGRST117",
                format!("Unsupported HTTP method: {}", request.method),
            )),
        };
    }
    if resource.starts_with("rpc/") {
        return Err(ApiError::not_implemented("RPC calls (/rpc/...)"));
    }
    if resource.contains('/') {
        return Err(ApiError::pgrst(
            404,
            "PGRST125",
            "Invalid path specified in request URL",
        ));
    }
    let accept = request
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("vnd.pgrst") {
        return Err(ApiError::not_implemented(
            "application/vnd.pgrst.* media types",
        ));
    }
    // Percent-decode the path segment; in a path '+' is a plus, not a space.
    let encoded = format!("t={}", resource.replace('+', "%2B"));
    let table_name = url::form_urlencoded::parse(encoded.as_bytes())
        .next()
        .map(|(_, name)| name.into_owned())
        .unwrap_or_default();
    let context = Context {
        state,
        request,
        caller,
        table_name,
        query: query::parse(&request.query)?,
        prefer: Prefer::parse(&request.headers),
    };
    match request.method {
        Method::GET | Method::HEAD => read::get(&context).await,
        Method::POST => write::create(&context).await,
        Method::PATCH => write::update(&context).await,
        Method::DELETE => write::delete(&context).await,
        _ => Err(ApiError::pgrst(
            405,
            "PGRST117",
            format!("Unsupported HTTP method: {}", request.method),
        )),
    }
}

impl Context<'_> {
    /// Starts the request's transaction, looks the table up, and sets the request settings.
    pub async fn begin<'c>(
        &self,
        client: &'c mut Client,
        read_only: bool,
    ) -> Result<(Transaction<'c>, Table), ApiError> {
        let transaction = client
            .build_transaction()
            .read_only(read_only)
            .start()
            .await
            .map_err(|err| self.db_error(err))?;
        let table = load_table(&transaction, &self.table_name)
            .await
            .map_err(|err| self.db_error(err))?
            .ok_or_else(|| ApiError::table_not_found(&self.table_name))?;
        self.publish_request(&transaction).await?;
        Ok((transaction, table))
    }

    /// What PostgREST sets before running the statement: transaction-local, so it vanishes at
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
        let path = format!("/{}", self.table_name);
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
                    &path,
                    &headers,
                    &claims,
                    &self.caller.role,
                ],
            )
            .await
            .map_err(|err| self.db_error(err))?;
        Ok(())
    }

    /// Runs a built statement, which always returns exactly one row.
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
        tracing::trace!(sql = %statement.sql, "fake PostgREST statement");
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

    /// A pooled connection, or PostgREST's answer when the database cannot be reached.
    pub async fn connection(&self) -> Result<super::pool::PooledClient, ApiError> {
        self.state.pool.get().await.map_err(|err| {
            ApiError::full(
                503,
                "PGRST000",
                "Database connection error. Retrying the connection.".to_owned(),
                Some(err.to_string()),
                None,
            )
        })
    }
}
