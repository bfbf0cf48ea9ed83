//! GET and HEAD on a table: filtered, ordered, paginated rows rendered by PostgreSQL's `json_agg`,
//! with PostgREST's `Content-Range` and, for `Prefer: count=exact`, the total and a 206 when the
//! page is not everything.

use axum::http::{header, HeaderName, Method};

use super::error::ApiError;
use super::handler::Context;
use super::reply::{content_range, Reply};
use super::sql;

pub(crate) async fn get(context: &Context<'_>) -> Result<Reply, ApiError> {
    let mut client = context.connection().await?;
    // PostgREST runs reads in a read-only transaction; a trigger or function that writes fails.
    let (transaction, table) = context.begin(&mut client, true).await?;
    let statement = sql::select(&table, &context.query)?;
    let row = context.run(&transaction, &statement).await?;
    let body: String = row.get(0);
    let rows: i64 = row.get(1);
    let total = if context.prefer.count_exact {
        let counted = context
            .run(&transaction, &sql::count(&table, &context.query)?)
            .await?;
        Some(counted.get::<_, i64>(0))
    } else {
        None
    };
    context.commit(transaction).await?;

    let first = context.query.offset.map_or(0, |o| o as i64);
    let status = match total {
        Some(total) if rows < total => 206,
        _ => 200,
    };
    let mut reply = Reply::json(status, body)
        .header(header::CONTENT_RANGE, &content_range(first, rows, total))
        .maybe_header(
            HeaderName::from_static("preference-applied"),
            context.prefer.applied(false, false, true),
        );
    if context.request.method == Method::HEAD {
        reply.body = None;
    }
    Ok(reply)
}
