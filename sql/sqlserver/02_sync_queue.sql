/*
    syncbridge: 02_sync_queue.sql
    dbo.SyncQueue, the outbox the change triggers (03) fill and the agent drains, and
    dbo.SyncConfig, where sp_NotifyAppOfSync (04) finds the agent.

    Targets: SQL Server 2017 (14.x) and later, every edition including Express, any database
    compatibility level from 100 up. Re-runnable. A SyncQueue left by the older webhook system
    is kept and given the columns it lacks (NextAttemptAt, ClaimToken, ClaimedBy).

    Row life: Pending -> (claimed: ClaimToken set, NextAttemptAt = end of lease) ->
      Synced | Pending again (retry, NextAttemptAt = now + backoff) | Failed (gave up).
    All times are UTC and come from SQL Server's clock, never the agent's.
*/
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.SyncQueue', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.SyncQueue (
        QueueID       bigint           IDENTITY(1, 1) NOT NULL,
        TableName     sysname          NOT NULL,
        -- The row's key as a JSON object of key columns, e.g. {"PersonID":123}.
        RecordID      nvarchar(450)    NOT NULL,
        Operation     varchar(10)      NOT NULL,
        Status        varchar(10)      NOT NULL CONSTRAINT DF_SyncQueue_Status DEFAULT ('Pending'),
        Attempts      int              NOT NULL CONSTRAINT DF_SyncQueue_Attempts DEFAULT (0),
        CreatedAt     datetime2(3)     NOT NULL CONSTRAINT DF_SyncQueue_CreatedAt DEFAULT (SYSUTCDATETIME()),
        LastAttempt   datetime2(3)     NULL,
        NextAttemptAt datetime2(3)     NOT NULL CONSTRAINT DF_SyncQueue_NextAttemptAt DEFAULT (SYSUTCDATETIME()),
        LastError     nvarchar(2000)   NULL,
        -- Stamped by each claim; an acknowledgement must present it, so a late one cannot
        -- settle a row that another claim took after the lease ran out.
        ClaimToken    uniqueidentifier NULL,
        ClaimedBy     nvarchar(128)    NULL,
        CONSTRAINT PK_SyncQueue PRIMARY KEY CLUSTERED (QueueID),
        CONSTRAINT CK_SyncQueue_Operation CHECK (Operation IN ('INSERT', 'UPDATE', 'DELETE')),
        CONSTRAINT CK_SyncQueue_Status CHECK (Status IN ('Pending', 'Synced', 'Failed'))
    );
END;
GO

-- Upgrade a SyncQueue created by the older webhook system. Each ALTER is its own batch's only
-- reference to the new column, so the batch compiles whether or not the column exists yet.
IF COL_LENGTH(N'dbo.SyncQueue', N'NextAttemptAt') IS NULL
    ALTER TABLE dbo.SyncQueue
        ADD NextAttemptAt datetime2(3) NOT NULL
            CONSTRAINT DF_SyncQueue_NextAttemptAt DEFAULT (SYSUTCDATETIME());
GO
IF COL_LENGTH(N'dbo.SyncQueue', N'ClaimToken') IS NULL
    ALTER TABLE dbo.SyncQueue ADD ClaimToken uniqueidentifier NULL;
GO
IF COL_LENGTH(N'dbo.SyncQueue', N'ClaimedBy') IS NULL
    ALTER TABLE dbo.SyncQueue ADD ClaimedBy nvarchar(128) NULL;
GO

/*
    The index the claim, next_due_in and the stats read: a seek on Status = 'Pending' walks the
    pending rows in QueueID (= FIFO) order and finds NextAttemptAt, TableName and RecordID
    without touching the clustered index, so READPAST skips a locked row at the index key.

    Deliberately NOT a filtered index (WHERE Status = 'Pending'): any INSERT/UPDATE/DELETE on a
    table that has a filtered index fails (error 1934) for a session whose SET options differ
    from the required ones (ANSI_WARNINGS, ARITHABORT, QUOTED_IDENTIFIER, ...). The clinic's
    legacy applications write into this table through the change triggers with whatever SET
    options their drivers use, and a filtered index here would make their ordinary saves fail.
*/
IF NOT EXISTS (
    SELECT 1 FROM sys.indexes
    WHERE object_id = OBJECT_ID(N'dbo.SyncQueue') AND name = N'IX_SyncQueue_Status_QueueID'
)
    CREATE NONCLUSTERED INDEX IX_SyncQueue_Status_QueueID
        ON dbo.SyncQueue (Status, QueueID)
        INCLUDE (NextAttemptAt, TableName, RecordID);
GO

IF OBJECT_ID(N'dbo.SyncConfig', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.SyncConfig (
        Name  sysname        NOT NULL,
        Value nvarchar(4000) NULL,
        CONSTRAINT PK_SyncConfig PRIMARY KEY CLUSTERED (Name)
    );
END;
GO

-- Defaults, inserted only when absent so that a re-run never overwrites a configured value.
-- NotifyToken must be set to the agent's SYNC_NOTIFY_TOKEN (a token that opens queue-notify only;
-- database readers can see this table), or to SYNC_ADMIN_TOKEN when no notify token is set:
--   UPDATE dbo.SyncConfig SET Value = N'<SYNC_NOTIFY_TOKEN>' WHERE Name = N'NotifyToken';
-- An empty NotifyUrl turns the notification off.
IF NOT EXISTS (SELECT 1 FROM dbo.SyncConfig WHERE Name = N'NotifyUrl')
    INSERT INTO dbo.SyncConfig (Name, Value)
    VALUES (N'NotifyUrl', N'http://127.0.0.1:3000/api/sync/queue-notify');
IF NOT EXISTS (SELECT 1 FROM dbo.SyncConfig WHERE Name = N'NotifyToken')
    INSERT INTO dbo.SyncConfig (Name, Value) VALUES (N'NotifyToken', N'change-me');
GO
