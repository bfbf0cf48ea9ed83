//! Sending one prepared statement and collecting what it returns, tiberius errors already
//! mapped to [`StoreError`]s. Owns no T-SQL: callers build the [`Query`] and bind its parameters.
//!
//! Each helper reads the whole response before returning, as tiberius' `into_*` collectors do,
//! so the connection is left idle and may go back to the pool.

use tiberius::{Query, Row};

use super::error::SqlResult;
use super::pool::TdsClient;
use crate::sqlserver::StoreError;

/// Every result set of the batch, in order.
pub(super) async fn all_results(
    query: Query<'_>,
    client: &mut TdsClient,
) -> Result<Vec<Vec<Row>>, StoreError> {
    query.query(client).await.sql()?.into_results().await.sql()
}

/// The rows of the batch's first result set (empty if it returned none); later sets are dropped.
pub(super) async fn first_result(
    query: Query<'_>,
    client: &mut TdsClient,
) -> Result<Vec<Row>, StoreError> {
    query
        .query(client)
        .await
        .sql()?
        .into_first_result()
        .await
        .sql()
}

/// The first row of the first result set, if there is one; everything else is dropped.
pub(super) async fn optional_row(
    query: Query<'_>,
    client: &mut TdsClient,
) -> Result<Option<Row>, StoreError> {
    query.query(client).await.sql()?.into_row().await.sql()
}
