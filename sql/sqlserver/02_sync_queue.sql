/*
    syncbridge: 02_sync_queue.sql
    dbo.SyncQueue, the outbox the change triggers (03) fill and the agent drains, and
    dbo.SyncConfig, where sp_NotifyAppOfSync (04) finds the agent.

    Targets: SQL Server 2017 (14.x) and later, every edition including Express, any database
    compatibility level from 100 up. Re-runnable. A SyncQueue left by the older webhook system
    is kept and given the columns and indexes it lacks (NextAttemptAt, ClaimToken, ClaimedBy).

    Row life: Pending -> (claimed: ClaimToken set, NextAttemptAt = end of lease) ->
      Synced | Pending again (retry, NextAttemptAt = now + backoff) | Failed (gave up).
    All times are UTC and come from SQL Server's clock, never the agent's.
*/
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

/*
    dbo.sp_SyncInstallQueue creates <schema>.SyncQueue when it is missing, gives an existing one
    (e.g. the older webhook system's) the columns it lacks, and creates the two indexes the
    agent's statements are written for. The agent's queue is dbo.SyncQueue; `syncbridge check
    --self-test` builds its scratch queue with this same procedure, so the queue it tests is the
    queue the agent uses. Each statement is dynamic SQL: a batch that names a column only gets
    compiled after the column exists, and the schema name goes through QUOTENAME.
*/
CREATE OR ALTER PROCEDURE dbo.sp_SyncInstallQueue
    @Schema sysname = N'dbo'
AS
BEGIN
    SET NOCOUNT ON;
    IF SCHEMA_ID(@Schema) IS NULL
        THROW 50010, N'sp_SyncInstallQueue: no such schema', 1;
    DECLARE @q nvarchar(300) = QUOTENAME(@Schema) + N'.[SyncQueue]';
    DECLARE @sql nvarchar(max);

    IF OBJECT_ID(@q, N'U') IS NULL
    BEGIN
        SET @sql = N'CREATE TABLE ' + @q + N' (
            QueueID       bigint           IDENTITY(1, 1) NOT NULL,
            TableName     sysname          NOT NULL,
            -- The row''s key as a JSON object of key columns, e.g. {"PersonID":123}.
            RecordID      nvarchar(450)    NOT NULL,
            Operation     varchar(10)      NOT NULL,
            Status        varchar(10)      NOT NULL CONSTRAINT DF_SyncQueue_Status DEFAULT (''Pending''),
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
            CONSTRAINT CK_SyncQueue_Operation CHECK (Operation IN (''INSERT'', ''UPDATE'', ''DELETE'')),
            CONSTRAINT CK_SyncQueue_Status CHECK (Status IN (''Pending'', ''Synced'', ''Failed''))
        );';
        EXEC sys.sp_executesql @sql;
    END;

    -- Upgrade a SyncQueue created by the older webhook system.
    IF COL_LENGTH(@q, N'NextAttemptAt') IS NULL
    BEGIN
        SET @sql = N'ALTER TABLE ' + @q + N' ADD NextAttemptAt datetime2(3) NOT NULL
            CONSTRAINT DF_SyncQueue_NextAttemptAt DEFAULT (SYSUTCDATETIME());';
        EXEC sys.sp_executesql @sql;
    END;
    IF COL_LENGTH(@q, N'ClaimToken') IS NULL
    BEGIN
        SET @sql = N'ALTER TABLE ' + @q + N' ADD ClaimToken uniqueidentifier NULL;';
        EXEC sys.sp_executesql @sql;
    END;
    IF COL_LENGTH(@q, N'ClaimedBy') IS NULL
    BEGIN
        SET @sql = N'ALTER TABLE ' + @q + N' ADD ClaimedBy nvarchar(128) NULL;';
        EXEC sys.sp_executesql @sql;
    END;

    /*
        The claim's index: a seek on Status = 'Pending' walks the pending rows in QueueID
        (= FIFO) order and finds NextAttemptAt, TableName and RecordID without touching the
        clustered index, so READPAST skips a locked row at the index key. next_due_in and the
        stats read it too.

        Deliberately NOT a filtered index (WHERE Status = 'Pending'): any INSERT/UPDATE/DELETE
        on a table that has a filtered index fails (error 1934) for a session whose SET options
        differ from the required ones (ANSI_WARNINGS, ARITHABORT, QUOTED_IDENTIFIER, ...). The
        clinic's legacy applications write into this table through the change triggers with
        whatever SET options their drivers use, and a filtered index here would make their
        ordinary saves fail. (An index on a computed column has the same requirement, which is
        why the record index below keys the plain columns.)
    */
    IF NOT EXISTS (
        SELECT 1 FROM sys.indexes
        WHERE object_id = OBJECT_ID(@q) AND name = N'IX_SyncQueue_Status_QueueID'
    )
    BEGIN
        SET @sql = N'CREATE NONCLUSTERED INDEX IX_SyncQueue_Status_QueueID ON ' + @q + N'
            (Status, QueueID) INCLUDE (NextAttemptAt, TableName, RecordID);';
        EXEC sys.sp_executesql @sql;
    END;

    /*
        The record index: the claim's second statement takes the other due items of the records
        it just claimed (sibling coalescing) with one seek per record here. Without it that
        statement read every Pending row for every claimed record, so a claim's cost grew with
        batch size times queue length (87 ms for 50 items, 1.7 s for 500 on a real engine).
        Key size: sysname (256 bytes) + nvarchar(450) (900 bytes) = 1,156 bytes, under the
        1,700-byte limit of a nonclustered key (SQL Server 2016 and later). The included
        columns are what the claim filters on, so the seek needs no other lookup until it
        updates the row.
    */
    IF NOT EXISTS (
        SELECT 1 FROM sys.indexes
        WHERE object_id = OBJECT_ID(@q) AND name = N'IX_SyncQueue_Record'
    )
    BEGIN
        SET @sql = N'CREATE NONCLUSTERED INDEX IX_SyncQueue_Record ON ' + @q + N'
            (TableName, RecordID) INCLUDE (Status, NextAttemptAt, ClaimToken);';
        EXEC sys.sp_executesql @sql;
    END;

    /*
        No lock escalation on the queue. A statement holding about 5,000 locks on one table
        escalates to a table lock, kept until its transaction ends: one clinic UPDATE of 6,000
        rows (its trigger inserts 6,000 queue rows) would then block every other save's trigger
        and the agent's claim, which READPAST cannot skip past a table lock. Row locks on a
        queue cost a little memory; blocking the clinic costs its working day.
    */
    IF EXISTS (
        SELECT 1 FROM sys.tables
        WHERE object_id = OBJECT_ID(@q) AND lock_escalation_desc <> N'DISABLE'
    )
    BEGIN
        SET @sql = N'ALTER TABLE ' + @q + N' SET (LOCK_ESCALATION = DISABLE);';
        EXEC sys.sp_executesql @sql;
    END;
END;
GO

EXEC dbo.sp_SyncInstallQueue;
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
