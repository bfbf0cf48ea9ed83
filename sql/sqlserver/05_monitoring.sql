/*
    syncbridge: 05_monitoring.sql
    Views for watching the queue, and two maintenance procedures: retry what failed, and purge
    what was synced long ago so that the queue does not grow without bound.

    Targets: SQL Server 2017 (14.x) and later, every edition including Express, any database
    compatibility level from 100 up. Re-runnable (CREATE OR ALTER). Needs 02 and 04.
    All times are UTC (SYSUTCDATETIME), like the queue's own columns.
*/
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- One row per status: how many items, and the oldest and newest of them.
CREATE OR ALTER VIEW dbo.vw_SyncQueueStatus
AS
SELECT q.Status,
       COUNT_BIG(*)     AS ItemCount,
       MIN(q.CreatedAt) AS OldestCreatedAt,
       MAX(q.CreatedAt) AS NewestCreatedAt
FROM dbo.SyncQueue AS q
GROUP BY q.Status;
GO

-- The 100 oldest Pending items with their age, oldest first when ordered by QueueID. A large
-- AgeSeconds on the first row means the agent is stopped, failing, or cannot reach Supabase.
-- (A view cannot promise an order: SELECT ... FROM dbo.vw_SyncQueueOldestPending ORDER BY QueueID.)
CREATE OR ALTER VIEW dbo.vw_SyncQueueOldestPending
AS
SELECT TOP (100)
       q.QueueID,
       q.TableName,
       q.RecordID,
       q.Operation,
       q.Attempts,
       q.CreatedAt,
       q.LastAttempt,
       q.NextAttemptAt,
       q.LastError,
       q.ClaimedBy,
       DATEDIFF_BIG(SECOND, q.CreatedAt, SYSUTCDATETIME()) AS AgeSeconds
FROM dbo.SyncQueue AS q
WHERE q.Status = 'Pending'
ORDER BY q.QueueID;
GO

-- The last 100 items the agent gave up on, newest first when ordered by QueueID DESC.
CREATE OR ALTER VIEW dbo.vw_SyncQueueRecentFailures
AS
SELECT TOP (100)
       q.QueueID,
       q.TableName,
       q.RecordID,
       q.Operation,
       q.Attempts,
       q.CreatedAt,
       q.LastAttempt,
       q.LastError
FROM dbo.SyncQueue AS q
WHERE q.Status = 'Failed'
ORDER BY q.QueueID DESC;
GO

/*
    Puts Failed items back in the queue, due now, with a fresh attempt budget (after fixing the
    data or the configuration that made them fail). @TableName limits it to one table,
    @QueueID to one item. `syncbridge retry-failed` sends this same UPDATE itself (the agent's
    login executes no procedure) and then wakes the agent; this procedure notifies it through
    sp_NotifyAppOfSync instead: an UPDATE does not fire the INSERT notification trigger, and an
    idle agent sleeps until told. Returns the number of items reset.
*/
CREATE OR ALTER PROCEDURE dbo.sp_SyncQueueRetryFailed
    @TableName sysname = NULL,
    @QueueID bigint = NULL
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @reset int;

    UPDATE q
    SET Status = 'Pending', Attempts = 0, NextAttemptAt = SYSUTCDATETIME(),
        ClaimToken = NULL, ClaimedBy = NULL
    FROM dbo.SyncQueue AS q
    WHERE q.Status = 'Failed'
      AND (@TableName IS NULL OR q.TableName = @TableName)
      AND (@QueueID IS NULL OR q.QueueID = @QueueID)
    OPTION (RECOMPILE);
    SET @reset = @@ROWCOUNT;

    IF @reset > 0
        EXEC dbo.sp_NotifyAppOfSync;

    SELECT @reset AS ItemsReset;
    RETURN 0;
END;
GO

/*
    Deletes Synced items created more than @olderThanDays days ago, @batchSize rows per
    statement (4,000 by default: under the 5,000 locks at which SQL Server would escalate a
    statement to a table lock, should LOCK_ESCALATION on the queue ever be re-enabled). Each DELETE commits on its own, so locks stay short, the log can be reused
    between batches, and the clinic's writers are never blocked for long. Pending and Failed
    items are never touched. Schedule it (SQL Agent, or Windows Task Scheduler with sqlcmd on
    Express, which has no SQL Agent), e.g. nightly. Returns the number of items deleted.
*/
CREATE OR ALTER PROCEDURE dbo.sp_SyncQueuePurgeSynced
    @olderThanDays int = 30,
    @batchSize int = 4000
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @olderThanDays IS NULL OR @olderThanDays < 0
        THROW 50001, N'@olderThanDays must be zero or more.', 1;
    IF @batchSize IS NULL OR @batchSize < 1
        THROW 50002, N'@batchSize must be at least 1.', 1;

    DECLARE @cutoff datetime2(3) = DATEADD(DAY, -@olderThanDays, SYSUTCDATETIME()),
            @deleted bigint = 0,
            @batch int = @batchSize;

    -- A short batch means nothing older is left.
    WHILE @batch = @batchSize
    BEGIN
        DELETE TOP (@batchSize)
        FROM dbo.SyncQueue
        WHERE Status = 'Synced'
          AND CreatedAt < @cutoff;
        SET @batch = @@ROWCOUNT;
        SET @deleted += @batch;
    END;

    SELECT @deleted AS ItemsDeleted;
    RETURN 0;
END;
GO
