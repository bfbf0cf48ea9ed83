/*
    syncbridge: 04_notify.sql
    Push, not poll: when a change trigger (03) queues items, trg_SyncQueue_NotifyApp calls
    sp_NotifyAppOfSync, which POSTs {"source":"sqlserver"} to the agent's queue-notify endpoint
    through OLE Automation (MSXML2.ServerXMLHTTP.6.0).

    Targets: SQL Server 2017 (14.x) and later on Windows, every edition including Express.
    OLE Automation does not exist on SQL Server on Linux: there the procedure returns at once
    and sends nothing. Re-runnable. Needs 02. Enabling the server option needs sysadmin (or
    ALTER SETTINGS); the rest needs only db_owner.

    Timing, and why it is safe: the trigger runs inside the writer's transaction, so the POST
    reaches the agent BEFORE the writer commits. The agent expects that: a claim skips rows
    still locked by an open transaction (READPAST), then waits on that writer's lock
    (wait_for_writers) and claims again once the writer has committed or rolled back.

    The notification must never hurt the writer: an agent that is stopped, slow or
    misconfigured costs the writer's transaction at most about one second (all four timeouts
    together) and never an error. Hence: every HRESULT is checked and the first failure ends
    the attempt; nothing is raised; the COM object is always destroyed; and the whole call is
    inside TRY/CATCH with XACT_ABORT OFF (see the trigger).

    Who may call sp_OA*: sysadmin, or a user granted EXECUTE on master.sys.sp_OACreate,
    sp_OAMethod, sp_OAGetProperty and sp_OADestroy. A writer without that permission simply
    sends no notification (checked up front, so no permission error is ever raised in its
    transaction); its items are picked up on the agent's next wake-up (another notification, a
    retry timer, or the agent's start). The notification also relies on the server option
    'nested triggers' being on (the default): it fires from inside the change triggers.
*/
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- Enable 'Ole Automation Procedures' (an advanced option), restoring 'show advanced options'
-- to what it was. Skipped where the option does not exist or is already on. Without the right
-- to change server options this only prints a warning, so the rest of the file still installs
-- (the procedure then sends nothing until a sysadmin enables the option). RECONFIGURE cannot
-- run inside a transaction: apply this batch on its own, as every GO-separated batch is.
IF @@VERSION NOT LIKE N'%Linux%'
   AND EXISTS (SELECT 1 FROM sys.configurations WHERE name = N'Ole Automation Procedures')
   AND NOT EXISTS (
       SELECT 1 FROM sys.configurations
       WHERE name = N'Ole Automation Procedures' AND CONVERT(int, value_in_use) = 1
   )
BEGIN
    DECLARE @advanced int = (
        SELECT CONVERT(int, value_in_use) FROM sys.configurations WHERE name = N'show advanced options'
    );
    BEGIN TRY
        IF @advanced = 0
        BEGIN
            EXEC sys.sp_configure N'show advanced options', 1;
            RECONFIGURE;
        END;
        EXEC sys.sp_configure N'Ole Automation Procedures', 1;
        RECONFIGURE;
        IF @advanced = 0
        BEGIN
            EXEC sys.sp_configure N'show advanced options', 0;
            RECONFIGURE;
        END;
    END TRY
    BEGIN CATCH
        DECLARE @why nvarchar(2048) = ERROR_MESSAGE();
        PRINT N'WARNING: could not enable ''Ole Automation Procedures'' (needs sysadmin): ' + @why;
    END CATCH;
END;
GO

/*
    Returns, for someone running it by hand (EXEC @rc = dbo.sp_NotifyAppOfSync; SELECT @rc):
      the HTTP status when the agent answered (202/200; 401 means NotifyToken is not the
      agent's SYNC_NOTIFY_TOKEN or SYNC_ADMIN_TOKEN), a negative HRESULT when the call failed (e.g. the agent is
      stopped: connection refused), or 0 when notifying is off (empty NotifyUrl) or impossible
      (OLE Automation off, no permission, Linux).
    Timeouts (milliseconds) resolve/connect/send/receive = 250 each: the agent answers on the
    same machine or LAN in a few milliseconds, and a writer must never wait longer than ~1 s.
    @TargetUrl, when given, is POSTed to instead of SyncConfig's NotifyUrl (with the same token):
    `syncbridge check --self-test` uses it to time a notification that nobody answers.
*/
CREATE OR ALTER PROCEDURE dbo.sp_NotifyAppOfSync
    @TargetUrl nvarchar(4000) = NULL  -- not "Url": variable names ignore case, and @url is taken
AS
BEGIN
    SET NOCOUNT ON;
    -- Restored when the procedure returns. With it OFF, an error caught below does not doom
    -- the caller's transaction.
    SET XACT_ABORT OFF;

    DECLARE @url nvarchar(4000),
            @token nvarchar(4000),
            @auth nvarchar(4000),
            @obj int = NULL,
            @hr int = 0,
            @status int = NULL,
            @result int = 0;

    BEGIN TRY
        SET @url = @TargetUrl;
        IF @url IS NULL
            SELECT @url = Value FROM dbo.SyncConfig WHERE Name = N'NotifyUrl';
        SELECT @token = Value FROM dbo.SyncConfig WHERE Name = N'NotifyToken';

        IF NULLIF(LTRIM(RTRIM(@url)), N'') IS NOT NULL
           AND @@VERSION NOT LIKE N'%Linux%'
           AND EXISTS (
               SELECT 1 FROM sys.configurations
               WHERE name = N'Ole Automation Procedures' AND CONVERT(int, value_in_use) = 1
           )
           AND HAS_PERMS_BY_NAME(N'master.sys.sp_OACreate', N'OBJECT', N'EXECUTE') = 1
        BEGIN
            SET @auth = N'Bearer ' + ISNULL(@token, N'');
            EXEC @hr = sys.sp_OACreate N'MSXML2.ServerXMLHTTP.6.0', @obj OUTPUT;
            -- setTimeouts must come before open.
            IF @hr = 0
                EXEC @hr = sys.sp_OAMethod @obj, N'setTimeouts', NULL, 250, 250, 250, 250;
            IF @hr = 0
                EXEC @hr = sys.sp_OAMethod @obj, N'open', NULL, N'POST', @url, N'false';
            IF @hr = 0
                EXEC @hr = sys.sp_OAMethod @obj, N'setRequestHeader', NULL,
                    N'Content-Type', N'application/json';
            IF @hr = 0
                EXEC @hr = sys.sp_OAMethod @obj, N'setRequestHeader', NULL,
                    N'Authorization', @auth;
            IF @hr = 0
                EXEC @hr = sys.sp_OAMethod @obj, N'send', NULL, N'{"source":"sqlserver"}';
            IF @hr = 0
                EXEC @hr = sys.sp_OAGetProperty @obj, N'status', @status OUTPUT;
            SET @result = CASE WHEN @hr <> 0 THEN @hr ELSE ISNULL(@status, 0) END;
        END;
    END TRY
    BEGIN CATCH
        -- Swallowed on purpose: a failed notification only delays the sync until the agent's
        -- next wake-up, whereas an error here would fail the clinic's own save.
        SET @result = -1;
    END CATCH;

    IF @obj IS NOT NULL
    BEGIN
        BEGIN TRY
            EXEC sys.sp_OADestroy @obj;
        END TRY
        BEGIN CATCH
            SET @obj = NULL;
        END CATCH;
    END;

    RETURN @result;
END;
GO

CREATE OR ALTER TRIGGER dbo.trg_SyncQueue_NotifyApp
ON dbo.SyncQueue
AFTER INSERT
AS
BEGIN
    SET NOCOUNT ON;
    -- An INSERT ... SELECT that produced no rows still fires the trigger: nothing to announce.
    IF NOT EXISTS (SELECT 1 FROM inserted) RETURN;

    -- Triggers run with XACT_ABORT ON by default, so any run-time error in here would roll
    -- back and doom the writer's whole transaction: the clinic's save would fail because the
    -- agent is down. With XACT_ABORT OFF a caught error leaves the transaction committable.
    SET XACT_ABORT OFF;

    -- Once per statement, however many rows it queued. The POST happens before the writer
    -- commits; the agent then waits on the writer's lock (see the header of this file).
    BEGIN TRY
        EXEC dbo.sp_NotifyAppOfSync;
    END TRY
    BEGIN CATCH
        RETURN;
    END CATCH;
END;
GO
