//! The SyncQueue statements: claim, settle, next due time, waiting on writers, releasing
//! this agent's claims after a crash, and counts. Every time is SQL Server's own clock
//! (SYSUTCDATETIME), never the agent's, so clock skew between the two machines cannot make an
//! item due early or late.
//!
//! The claim follows Remus Rusanu's "Using tables as Queues": a short transaction that takes
//! the oldest due rows nobody else holds, stamps them (token, lease) and commits at once, so no
//! lock is held while the agent talks to Supabase; a crashed agent's rows become due again when
//! the lease runs out.

use std::time::Duration;

use tiberius::{FromSql, Query, Row};
use uuid::Uuid;

use super::catalog::quote;
use super::error::SqlResult;
use super::exec::{all_results, first_result, optional_row};
use super::pool::TdsClient;
use super::rows::bucket;
use crate::sqlserver::{
    ClaimToken, QueueId, QueueItem, QueueStats, SettleItem, Settlement, SetupReport, StoreError,
};

/// Items per settle statement: five parameters each, under SQL Server's 2100.
const SETTLE_CHUNK: usize = 400;
/// `LastError` is nvarchar(2000).
const MAX_ERROR_UNITS: usize = 2000;
/// Delays and leases are clamped to ten years: DATEADD takes an int number of seconds.
const MAX_DELAY_MS: u128 = 10 * 365 * 24 * 3600 * 1000;

/// The queue table the statements work on: `[dbo].[SyncQueue]` for the agent, a scratch
/// schema's SyncQueue for the self-test (built by the same `sp_SyncInstallQueue`), so that the
/// self-test runs exactly the agent's statements. The schema name comes from our own code,
/// never from input, and is quoted anyway.
#[derive(Debug, Clone)]
pub(super) struct QueueTable {
    name: String,
    claim: String,
}

impl QueueTable {
    pub(super) fn in_schema(schema: &str) -> Self {
        let name = format!("{}.[SyncQueue]", quote(schema));
        let claim = claim_sql(&name);
        Self { name, claim }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

impl Default for QueueTable {
    fn default() -> Self {
        Self::in_schema("dbo")
    }
}

/// The claim: two statements in one short transaction.
///
/// 1. The oldest due items, through IX_SyncQueue_Status_QueueID (forced: its (Status, QueueID)
///    order is the FIFO order, so TOP/ORDER BY stops after `limit` rows with no sort; a plan
///    that scanned the clustered index in QueueID order would first read every Synced row).
/// 2. Their siblings, the other due items of the same records, so the worker coalesces them:
///    one seek per claimed record into IX_SyncQueue_Record, the records driving the join
///    (LOOP JOIN fixes that order; the table variable has no statistics, and a plan that read
///    every Pending row per record made a claim cost batch size × queue length). That index
///    is not forced: on a queue whose 02 script was not re-run the claim still works, only
///    slower, and `check --self-test` names the missing index.
///
/// Hints on both reads of SyncQueue, one reason each:
/// - READPAST: skip rows another transaction has locked (a writer that has not committed yet,
///   or a concurrent claim) instead of waiting for it: two claims never block each other and
///   never return the same row.
/// - UPDLOCK: take update locks while reading, so two claims cannot both read a row as
///   free and then convert to the same write (the classic conversion deadlock).
/// - ROWLOCK: lock single rows, not pages; READPAST only skips row locks, and a page lock
///   would hide (or block on) a neighbour's unrelated rows.
/// - READCOMMITTEDLOCK: READPAST is refused under READ_COMMITTED_SNAPSHOT unless the statement
///   reads with locks; harmless where RCSI is off.
///
/// The records are copied out of @claimed first so that the second statement does not read the
/// table it outputs into. OUTPUT always goes INTO a table variable: OUTPUT without INTO is
/// refused on a table with triggers (SyncQueue has one). Operation is upper-cased on the way
/// out: the CHECK constraint compares under the column's collation, so `insert` passes it.
pub(super) fn claim_sql(queue: &str) -> String {
    const HINTS: &str = "ROWLOCK, READPAST, UPDLOCK, READCOMMITTEDLOCK";
    format!(
        "\
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @now datetime2(7) = SYSUTCDATETIME();
DECLARE @until datetime2(7) = DATEADD(MILLISECOND, CAST(@P4 % 1000 AS int), DATEADD(SECOND, CAST(@P4 / 1000 AS int), @now));
DECLARE @claimed TABLE (
    QueueID bigint NOT NULL PRIMARY KEY,
    TableName sysname NOT NULL,
    RecordID nvarchar(450) NOT NULL,
    Operation varchar(10) NOT NULL,
    Attempts int NOT NULL,
    CreatedAt datetime2(3) NOT NULL
);
DECLARE @records TABLE (TableName sysname NOT NULL, RecordID nvarchar(450) NOT NULL);
BEGIN TRANSACTION;

WITH due AS (
    SELECT TOP (@P1) q.QueueID, q.TableName, q.RecordID, q.Operation, q.Attempts, q.CreatedAt,
           q.ClaimToken, q.ClaimedBy, q.LastAttempt, q.NextAttemptAt
    FROM {queue} AS q WITH (INDEX(IX_SyncQueue_Status_QueueID), {HINTS})
    WHERE q.Status = 'Pending' AND q.NextAttemptAt <= @now
    ORDER BY q.QueueID
)
UPDATE due
SET ClaimToken = @P2, ClaimedBy = @P3, LastAttempt = @now, NextAttemptAt = @until
OUTPUT inserted.QueueID, inserted.TableName, inserted.RecordID, inserted.Operation, inserted.Attempts, inserted.CreatedAt
INTO @claimed (QueueID, TableName, RecordID, Operation, Attempts, CreatedAt);

INSERT INTO @records (TableName, RecordID) SELECT DISTINCT TableName, RecordID FROM @claimed;

UPDATE q
SET ClaimToken = @P2, ClaimedBy = @P3, LastAttempt = @now, NextAttemptAt = @until
OUTPUT inserted.QueueID, inserted.TableName, inserted.RecordID, inserted.Operation, inserted.Attempts, inserted.CreatedAt
INTO @claimed (QueueID, TableName, RecordID, Operation, Attempts, CreatedAt)
FROM @records AS r
INNER LOOP JOIN {queue} AS q WITH ({HINTS})
    ON q.TableName = r.TableName AND q.RecordID = r.RecordID
WHERE q.Status = 'Pending' AND q.NextAttemptAt <= @now
  AND (q.ClaimToken IS NULL OR q.ClaimToken <> @P2);

COMMIT TRANSACTION;

SELECT QueueID, TableName, RecordID, UPPER(Operation) AS Operation, Attempts, CreatedAt
FROM @claimed ORDER BY QueueID;"
    )
}

pub(super) async fn claim(
    client: &mut TdsClient,
    queue: &QueueTable,
    limit: usize,
    lease: Duration,
    agent: &str,
) -> Result<Vec<QueueItem>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let token = Uuid::new_v4();
    let mut query = Query::new(queue.claim.as_str());
    query.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    query.bind(token);
    query.bind(agent.to_owned());
    query.bind(millis(lease));
    let rows = first_result(query, client).await?;
    rows.iter()
        .map(|row| {
            Ok(QueueItem {
                id: QueueId(get::<i64>(row, 0)?),
                table: get::<&str>(row, 1)?.to_owned(),
                record_id: get::<&str>(row, 2)?.to_owned(),
                operation: get::<&str>(row, 3)?.to_owned(),
                attempts: u32::try_from(get::<i32>(row, 4)?).unwrap_or(0),
                claim: ClaimToken(token),
                created_at: get::<chrono::NaiveDateTime>(row, 5)?.and_utc(),
            })
        })
        .collect()
}

/// One statement per chunk of outcomes, every kind at once: the outcomes arrive as a VALUES
/// list of parameters and are joined to the queue on (QueueID, ClaimToken), so an item whose
/// token no longer matches (its lease ran out and another claim took it) is left alone.
pub(super) async fn settle(
    client: &mut TdsClient,
    queue: &QueueTable,
    items: &[SettleItem],
) -> Result<(), StoreError> {
    for chunk in items.chunks(SETTLE_CHUNK) {
        let slots = bucket(chunk.len(), SETTLE_CHUNK);
        let mut query = Query::new(settle_sql(queue.name(), slots));
        for item in chunk {
            let (kind, delay, error) = match &item.outcome {
                Settlement::Synced => ("S", None, None),
                Settlement::Retry { delay, error } => {
                    ("R", Some(millis(*delay)), Some(error.as_str()))
                }
                Settlement::Failed { error } => ("F", None, Some(error.as_str())),
                Settlement::Release { delay, error } => {
                    ("L", Some(millis(*delay)), error.as_deref())
                }
            };
            query.bind(item.id.0);
            query.bind(item.claim.0);
            query.bind(kind);
            query.bind(delay);
            query.bind(error.map(truncate_error));
        }
        for _ in chunk.len()..slots {
            query.bind(None::<i64>);
            query.bind(None::<Uuid>);
            query.bind(None::<&str>);
            query.bind(None::<i64>);
            query.bind(None::<String>);
        }
        query.execute(client).await.sql()?;
    }
    Ok(())
}

/// Synced: done, no error. Retry (R): one more attempt counted, due after the delay. Failed
/// (F): one more attempt, given up. Release (L): due after the delay, attempts untouched, the
/// previous error kept unless a new one is given. Every outcome clears the claim token.
pub(super) fn settle_sql(queue: &str, slots: usize) -> String {
    let values = (0..slots)
        .map(|i| {
            let p = |n: usize| format!("@P{}", i * 5 + n);
            format!(
                "(CAST({} AS bigint), CAST({} AS uniqueidentifier), CAST({} AS char(1)), CAST({} AS bigint), CAST({} AS nvarchar(2000)))",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            )
        })
        .collect::<Vec<_>>()
        .join(",\n    ");
    format!(
        "SET NOCOUNT ON;
DECLARE @now datetime2(7) = SYSUTCDATETIME();
UPDATE q
SET Status = CASE s.Kind WHEN 'S' THEN 'Synced' WHEN 'F' THEN 'Failed' ELSE q.Status END,
    Attempts = q.Attempts + CASE WHEN s.Kind IN ('R', 'F') THEN 1 ELSE 0 END,
    LastError = CASE WHEN s.Kind = 'S' THEN NULL WHEN s.Kind = 'L' AND s.Error IS NULL THEN q.LastError ELSE s.Error END,
    NextAttemptAt = CASE WHEN s.Kind IN ('R', 'L')
        THEN DATEADD(MILLISECOND, CAST(s.DelayMs % 1000 AS int), DATEADD(SECOND, CAST(s.DelayMs / 1000 AS int), @now))
        ELSE q.NextAttemptAt END,
    ClaimToken = NULL
FROM {queue} AS q
JOIN (VALUES
    {values}
) AS s (QueueID, Token, Kind, DelayMs, Error)
    ON s.QueueID = q.QueueID AND s.Token = q.ClaimToken;"
    )
}

/// Milliseconds until the earliest Pending item is due (clamped at zero), or `None`. READPAST
/// skips items a writer has not committed yet, as a claim would: `wait_for_writers` deals with
/// those. READCOMMITTEDLOCK because READPAST requires locking reads under RCSI.
pub(super) async fn next_due_in(
    client: &mut TdsClient,
    queue: &QueueTable,
) -> Result<Option<Duration>, StoreError> {
    let sql = format!(
        "SELECT DATEDIFF_BIG(MILLISECOND, SYSUTCDATETIME(), MIN(q.NextAttemptAt)) AS DueInMs
FROM {} AS q WITH (READCOMMITTEDLOCK, READPAST, ROWLOCK)
WHERE q.Status = 'Pending';",
        queue.name()
    );
    let row = optional_row(Query::new(sql), client).await?;
    let ms = match row {
        Some(row) => row.try_get::<i64, _>(0).sql()?,
        None => None,
    };
    Ok(ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
}

/// Whether any of `tables` (as the change triggers spell `TableName`) has a Pending item,
/// claimed or not, due or not: one EXISTS, so it stops at the first such row.
///
/// Through IX_SyncQueue_Status_QueueID (forced, as the claim forces it): a seek on
/// Status = 'Pending' with TableName, which the index includes, checked on each pending row, so
/// the cost is bounded by the pending rows, the queue's working set. IX_SyncQueue_Record
/// would seek on TableName instead, but then walk every row that table ever queued (Synced ones
/// included, until purged), which grows without bound.
///
/// READPAST (with ROWLOCK, and READCOMMITTEDLOCK because READPAST requires locking reads under
/// RCSI): a row a writer has not committed yet, or a claim holds for its few milliseconds, is
/// skipped instead of waited on. Missing one only means the refused row is charged an attempt,
/// as it was before this check existed. The names are typed parameters, compared under the
/// column's collation as the claim compares them.
pub(super) async fn unsettled_in(
    client: &mut TdsClient,
    queue: &QueueTable,
    tables: &[String],
) -> Result<bool, StoreError> {
    if tables.is_empty() {
        return Ok(false);
    }
    let sql = unsettled_in_sql(queue.name(), tables.len());
    let mut query = Query::new(sql);
    for table in tables {
        query.bind(table.as_str());
    }
    let row = optional_row(query, client).await?;
    Ok(row.map(|r| get::<i32>(&r, 0)).transpose()? == Some(1))
}

pub(super) fn unsettled_in_sql(queue: &str, tables: usize) -> String {
    let names = (1..=tables)
        .map(|i| format!("CAST(@P{i} AS sysname)"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT CASE WHEN EXISTS (
    SELECT 1
    FROM {queue} AS q WITH (INDEX(IX_SyncQueue_Status_QueueID), ROWLOCK, READPAST, READCOMMITTEDLOCK)
    WHERE q.Status = 'Pending' AND q.TableName IN ({names})
) THEN 1 ELSE 0 END AS Unsettled;"
    )
}

/// The trigger notifies before its writer commits, so a claim can come up empty while the new
/// rows still sit in an open transaction. Find the oldest due Pending row including
/// uncommitted ones (READUNCOMMITTED sees them); if there is one, read it again with a locking
/// read, which blocks until its writer commits or rolls back, or until `max_wait` (lock
/// timeout 1222, caught in T-SQL: a normal outcome here). READCOMMITTEDLOCK makes the read
/// block even where READ_COMMITTED_SNAPSHOT would serve the last committed version instead.
pub(super) async fn wait_for_writers(
    client: &mut TdsClient,
    queue: &QueueTable,
    max_wait: Duration,
) -> Result<bool, StoreError> {
    let queue = queue.name();
    let find = format!(
        "SELECT TOP (1) q.QueueID
FROM {queue} AS q WITH (READUNCOMMITTED)
WHERE q.Status = 'Pending' AND q.NextAttemptAt <= SYSUTCDATETIME()
ORDER BY q.QueueID;"
    );
    let found = optional_row(Query::new(find), client).await?;
    let Some(id) = found.map(|row| get::<i64>(&row, 0)).transpose()? else {
        return Ok(false);
    };
    // SET LOCK_TIMEOUT takes a literal, not a parameter: the number is ours, not input.
    let wait_ms = millis(max_wait).max(1);
    let sql = format!(
        "SET NOCOUNT ON;
DECLARE @seen int = 0;
SET LOCK_TIMEOUT {wait_ms};
BEGIN TRY
    SELECT @seen = COUNT(*) FROM {queue} WITH (READCOMMITTEDLOCK) WHERE QueueID = @P1;
END TRY
BEGIN CATCH
    IF ERROR_NUMBER() <> 1222
    BEGIN
        SET LOCK_TIMEOUT -1;
        THROW;
    END;
END CATCH;
SET LOCK_TIMEOUT -1;
SELECT @seen AS Seen;"
    );
    let mut query = Query::new(sql);
    query.bind(id);
    all_results(query, client).await?;
    Ok(true)
}

/// Items this agent claimed before it stopped become due now. READPAST: rows a writer holds
/// are never this agent's claims, so they are skipped rather than waited for.
pub(super) async fn release_own_claims(
    client: &mut TdsClient,
    queue: &QueueTable,
    agent: &str,
) -> Result<u64, StoreError> {
    let sql = format!(
        "SET NOCOUNT ON;
UPDATE q
SET NextAttemptAt = SYSUTCDATETIME(), ClaimToken = NULL
FROM {} AS q WITH (ROWLOCK, READPAST, READCOMMITTEDLOCK)
WHERE q.Status = 'Pending' AND q.ClaimedBy = @P1 AND q.ClaimToken IS NOT NULL;
SELECT @@ROWCOUNT AS Released;",
        queue.name()
    );
    let mut query = Query::new(sql);
    query.bind(agent.to_owned());
    let row = optional_row(query, client).await?;
    let released = row.map(|r| get::<i32>(&r, 0)).transpose()?.unwrap_or(0);
    Ok(u64::try_from(released).unwrap_or(0))
}

/// Counts per status and the age of the oldest Pending item, skipping rows locked by open
/// transactions (they are not committed, so not yet queued) instead of waiting on them. The
/// statuses are compared by SQL Server, under the column's collation, as the claim compares
/// them: the agent never matches the text of a status itself.
pub(super) async fn stats(
    client: &mut TdsClient,
    queue: &QueueTable,
) -> Result<QueueStats, StoreError> {
    let queue = queue.name();
    let sql = format!(
        "SET NOCOUNT ON;
SELECT COUNT_BIG(CASE WHEN q.Status = 'Pending' THEN 1 END) AS Pending,
       COUNT_BIG(CASE WHEN q.Status = 'Synced' THEN 1 END) AS Synced,
       COUNT_BIG(CASE WHEN q.Status = 'Failed' THEN 1 END) AS Failed
FROM {queue} AS q WITH (READCOMMITTEDLOCK, READPAST, ROWLOCK);
SELECT TOP (1) DATEDIFF_BIG(SECOND, q.CreatedAt, SYSUTCDATETIME()) AS AgeSeconds
FROM {queue} AS q WITH (READCOMMITTEDLOCK, READPAST, ROWLOCK)
WHERE q.Status = 'Pending'
ORDER BY q.QueueID;"
    );
    let results = all_results(Query::new(sql), client).await?;
    let mut stats = QueueStats::default();
    let mut sets = results.into_iter();
    if let Some(row) = sets.next().and_then(|rows| rows.into_iter().next()) {
        let count = |i| get::<i64>(&row, i).map(|n| u64::try_from(n).unwrap_or(0));
        (stats.pending, stats.synced, stats.failed) = (count(0)?, count(1)?, count(2)?);
    }
    if let Some(row) = sets.next().and_then(|rows| rows.into_iter().next()) {
        stats.oldest_pending_age_secs = Some(u64::try_from(get::<i64>(&row, 0)?).unwrap_or(0));
    }
    Ok(stats)
}

/// The notification set-up and the installed change triggers (see `sql/sqlserver/03`, `04`).
pub(super) async fn setup_report(client: &mut TdsClient) -> Result<SetupReport, StoreError> {
    const SQL: &str = "\
SET NOCOUNT ON;
SELECT CONVERT(int, c.value_in_use) AS InUse
FROM sys.configurations AS c
WHERE c.name = N'Ole Automation Procedures';
SELECT s.Value FROM dbo.SyncConfig AS s WHERE s.Name = N'NotifyUrl';
SELECT OBJECT_SCHEMA_NAME(t.parent_id) + N'.' + OBJECT_NAME(t.parent_id) AS TableName
FROM sys.triggers AS t
WHERE t.is_disabled = 0 AND t.parent_class = 1
  AND t.name = N'trg_' + OBJECT_NAME(t.parent_id) + N'_SyncQueue';";
    let mut sets = all_results(Query::new(SQL), client).await?.into_iter();
    let mut report = SetupReport::default();
    if let Some(row) = sets.next().and_then(|rows| rows.into_iter().next()) {
        report.ole_automation = get::<i32>(&row, 0)? == 1;
    }
    if let Some(row) = sets.next().and_then(|rows| rows.into_iter().next()) {
        report.notify_url = row
            .try_get::<&str, _>(0)
            .sql()?
            .map(str::to_owned)
            .filter(|u| !u.trim().is_empty());
    }
    for row in sets.next().unwrap_or_default() {
        report
            .tables_with_trigger
            .push(get::<&str>(&row, 0)?.to_owned());
    }
    Ok(report)
}

/// A non-NULL value of the expected type, or a Rejected error naming the column.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get::<T, _>(idx).sql()?.ok_or_else(|| {
        StoreError::Rejected(format!("SyncQueue returned NULL in result column {idx}"))
    })
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis().min(MAX_DELAY_MS)).unwrap_or(i64::MAX)
}

/// At most 2000 UTF-16 code units (nvarchar(2000)), cut on a character boundary.
pub(super) fn truncate_error(error: &str) -> String {
    let mut units = 0;
    error
        .chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= MAX_ERROR_UNITS
        })
        .collect()
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
