/*
    syncbridge: 06_permissions.sql
    An EXAMPLE of a least-privilege login for the agent. Everything below is commented out:
    applying this file changes nothing. Copy the statements, choose a real password (or use a
    Windows login: CREATE LOGIN [CLINIC\svc-syncbridge] FROM WINDOWS), adjust the table list
    to your SYNC_TABLE_MAP, and run them as sysadmin in the clinic database.

    Targets: SQL Server 2017 (14.x) and later, every edition including Express.

    What the agent does, and the permission each needs:
      - reads the catalog for the mapped tables (names from
        INFORMATION_SCHEMA, types from sys.columns)                           VIEW DEFINITION
      - reads changed rows of every mapped table                              SELECT
      - writes reverse-synced rows (sample map: notes are created and
        edited in the portal, batches get their Days changed there)          INSERT/UPDATE
      - claims, settles and counts queue items                               SELECT, UPDATE
      - reads nothing else; executes no procedure (sp_set_session_context is
        open to every user)
    The agent never needs db_owner, ALTER, DELETE on SyncQueue, or any server-level permission.
    If your table map allows reverse deletes on a table, add GRANT DELETE on that table.
    `syncbridge check --self-test` checks these grants as the agent's login and names any that
    are missing; its scratch objects need a login that may create a schema, tables and
    triggers (db_owner or db_ddladmin): give it one in MSSQL_SELFTEST_CONNECTION_STRING rather
    than widening this login.

    Writers (the clinic's own applications) need no extra permission for the change triggers:
    the triggers, SyncQueue and sp_NotifyAppOfSync share the dbo owner (ownership chaining).
    Only the notification's OLE Automation calls are checked against the writer's own login
    (EXECUTE on master.sys.sp_OACreate, sp_OAMethod, sp_OAGetProperty, sp_OADestroy, or
    sysadmin); a writer without them sends no notification and its items wait for the agent's
    next wake-up. See 04_notify.sql.
*/

/*
USE master;
CREATE LOGIN syncbridge_agent
    WITH PASSWORD = N'<a long random password>', CHECK_POLICY = ON, DEFAULT_DATABASE = [<clinic database>];

USE [<clinic database>];
CREATE USER syncbridge_agent FOR LOGIN syncbridge_agent WITH DEFAULT_SCHEMA = dbo;

-- Catalog reads (describe_table). Per table instead: GRANT VIEW DEFINITION ON dbo.tblPatients TO ...
GRANT VIEW DEFINITION TO syncbridge_agent;

-- Forward sync: the agent loads the changed rows of every mapped table.
GRANT SELECT ON dbo.tblPatients       TO syncbridge_agent;
GRANT SELECT ON dbo.tblWork           TO syncbridge_agent;
GRANT SELECT ON dbo.tblAlignerSets    TO syncbridge_agent;
GRANT SELECT ON dbo.tblAlignerBatches TO syncbridge_agent;
GRANT SELECT ON dbo.tblAlignerNotes   TO syncbridge_agent;

-- Reverse sync (sample map): portal notes are inserted and edited; batch Days are updated.
GRANT INSERT, UPDATE ON dbo.tblAlignerNotes   TO syncbridge_agent;
GRANT UPDATE         ON dbo.tblAlignerBatches TO syncbridge_agent;

-- The queue: claim/settle/release are UPDATEs, next_due_in/stats/wait_for_writers are SELECTs;
-- `syncbridge backfill` and `syncbridge verify --fix` (run with the agent's .env) INSERT items.
GRANT SELECT, INSERT, UPDATE ON dbo.SyncQueue TO syncbridge_agent;
GRANT SELECT         ON dbo.SyncConfig TO syncbridge_agent;

-- Then: MSSQL_CONNECTION_STRING=Server=<host>[\<instance>];Database=<clinic database>;
--       User Id=syncbridge_agent;Password=<...>;TrustServerCertificate=true
*/
