//! The `Failed` items of SyncQueue: putting them back (`syncbridge retry-failed`) and listing
//! the newest with their errors (`syncbridge status`). The reset is the statement of
//! `dbo.sp_SyncQueueRetryFailed` (`sql/sqlserver/05_monitoring.sql`), sent directly: the
//! agent's login may UPDATE SyncQueue but executes no procedure, and the caller wakes the agent
//! itself instead of going through `sp_NotifyAppOfSync`.

use chrono::{DateTime, NaiveDateTime, Utc};
use tiberius::Query;

use super::error::SqlResult;
use super::exec::{first_result, optional_row};
use super::pool::TdsClient;
use super::queue::{get, QueueTable};
use crate::sqlserver::{FailedItem, QueueId, RetryFilter, StoreError};

/// Failed → Pending, no attempts made, due now (SQL Server's clock), claim cleared. Each
/// condition is skipped when its parameter is NULL; RECOMPILE lets the optimizer seek on
/// QueueID when one is given instead of planning for "any item". TableName is compared under
/// the column's collation, as the claim compares it. `LastError` is kept: it says why the item
/// failed until its next attempt replaces it.
fn retry_sql(queue: &str) -> String {
    format!(
        "SET NOCOUNT ON;
UPDATE q
SET Status = 'Pending', Attempts = 0, NextAttemptAt = SYSUTCDATETIME(),
    ClaimToken = NULL, ClaimedBy = NULL
FROM {queue} AS q
WHERE q.Status = 'Failed'
  AND (@P1 IS NULL OR q.TableName = @P1)
  AND (@P2 IS NULL OR q.QueueID = @P2)
OPTION (RECOMPILE);
SELECT @@ROWCOUNT AS ItemsReset;"
    )
}

pub(super) async fn retry(
    client: &mut TdsClient,
    queue: &QueueTable,
    filter: &RetryFilter,
) -> Result<u64, StoreError> {
    let sql = retry_sql(queue.name());
    let mut query = Query::new(sql);
    query.bind(filter.table.clone());
    query.bind(filter.id.map(|id| id.0));
    let row = optional_row(query, client).await?;
    let reset = row.map(|r| get::<i32>(&r, 0)).transpose()?.unwrap_or(0);
    Ok(u64::try_from(reset).unwrap_or(0))
}

/// The newest Failed items through IX_SyncQueue_Status_QueueID (a backward seek on Status =
/// 'Failed'); READPAST: a row another session holds is not waited for, it is listed next time.
pub(super) async fn recent(
    client: &mut TdsClient,
    queue: &QueueTable,
    limit: usize,
) -> Result<Vec<FailedItem>, StoreError> {
    let sql = format!(
        "SELECT TOP (@P1) q.QueueID, q.TableName, q.RecordID, UPPER(q.Operation) AS Operation,
       q.Attempts, q.LastError, q.LastAttempt
FROM {} AS q WITH (READCOMMITTEDLOCK, READPAST, ROWLOCK)
WHERE q.Status = 'Failed'
ORDER BY q.QueueID DESC;",
        queue.name()
    );
    let mut query = Query::new(sql);
    query.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows = first_result(query, client).await?;
    rows.iter()
        .map(|row| {
            Ok(FailedItem {
                id: QueueId(get::<i64>(row, 0)?),
                table: get::<&str>(row, 1)?.to_owned(),
                record_id: get::<&str>(row, 2)?.to_owned(),
                operation: get::<&str>(row, 3)?.to_owned(),
                attempts: u32::try_from(get::<i32>(row, 4)?).unwrap_or(0),
                error: row.try_get::<&str, _>(5).sql()?.map(str::to_owned),
                last_attempt: row
                    .try_get::<NaiveDateTime, _>(6)
                    .sql()?
                    .map(|t| DateTime::<Utc>::from_naive_utc_and_offset(t, Utc)),
            })
        })
        .collect()
}
