/*
    syncbridge: 03_change_triggers.sql
    One AFTER INSERT, UPDATE, DELETE trigger per synced table, writing one dbo.SyncQueue row per
    changed row. Set-based: inserted/deleted hold every row of the statement (a multi-row UPDATE
    queues one item per row), and a statement that changed nothing queues nothing.

    Targets: SQL Server 2017 (14.x) and later (SESSION_CONTEXT needs 2016+), every edition
    including Express, any database compatibility level from 100 up (Microsoft documents only
    OPENJSON as needing level 130; FOR JSON is not gated). Re-runnable (CREATE OR ALTER).
    Needs 01 and 02.

    - RecordID is the row's key as JSON, built by FOR JSON PATH, WITHOUT_ARRAY_WRAPPER from the
      key columns, e.g. {"PersonID":123}; a composite key lists every key column the same way:
      (SELECT i.WorkID, i.ToothNo FOR JSON PATH, WITHOUT_ARRAY_WRAPPER) -> {"WorkID":5,"ToothNo":11}.
      A uniqueidentifier key renders as the upper-case string SQL Server converts it to.
    - Operation: a row in inserted whose key is also in deleted is an UPDATE, otherwise an
      INSERT; a row in deleted whose key is not in inserted is a DELETE. So an UPDATE that
      changes a key queues DELETE (old key) + INSERT (new key), and a MERGE is classified row by
      row.
    - The agent marks each of its connections with SESSION_CONTEXT(N'syncbridge') = 1 (read
      only). Its writes are reverse-synced changes that came from Supabase; queueing them would
      send them straight back (an echo, and with two writers a ping-pong), so the trigger
      returns at once for such a session.

    To add a table: copy a trigger; change the table name (three places), the key columns of
    the two FOR JSON lists, and the two key comparisons (every key column, joined with AND).
    tblAlignerNotes is keyed by NoteUID, its sync key, not by the clinic-local NoteID.
*/
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

CREATE OR ALTER TRIGGER dbo.trg_tblPatients_SyncQueue
ON dbo.tblPatients
AFTER INSERT, UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    -- The agent's own (reverse-sync) writes must not echo back to Supabase.
    IF SESSION_CONTEXT(N'syncbridge') IS NOT NULL RETURN;
    -- An UPDATE or DELETE that matched no row still fires the trigger: queue nothing.
    IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN;

    INSERT INTO dbo.SyncQueue (TableName, RecordID, Operation)
    SELECT N'tblPatients', c.RecordID, c.Operation
    FROM (
        SELECT 1 AS Seq,
               (SELECT d.PersonID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER) AS RecordID,
               'DELETE' AS Operation
        FROM deleted AS d
        WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i.PersonID = d.PersonID)
        UNION ALL
        SELECT 2,
               (SELECT i.PersonID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER),
               CASE WHEN EXISTS (SELECT 1 FROM deleted AS d WHERE d.PersonID = i.PersonID)
                    THEN 'UPDATE' ELSE 'INSERT' END
        FROM inserted AS i
    ) AS c
    ORDER BY c.Seq;  -- deletes of old keys get the lower QueueIDs
END;
GO

CREATE OR ALTER TRIGGER dbo.trg_tblWork_SyncQueue
ON dbo.tblWork
AFTER INSERT, UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    -- The agent's own (reverse-sync) writes must not echo back to Supabase.
    IF SESSION_CONTEXT(N'syncbridge') IS NOT NULL RETURN;
    -- An UPDATE or DELETE that matched no row still fires the trigger: queue nothing.
    IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN;

    INSERT INTO dbo.SyncQueue (TableName, RecordID, Operation)
    SELECT N'tblWork', c.RecordID, c.Operation
    FROM (
        SELECT 1 AS Seq,
               (SELECT d.WorkID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER) AS RecordID,
               'DELETE' AS Operation
        FROM deleted AS d
        WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i.WorkID = d.WorkID)
        UNION ALL
        SELECT 2,
               (SELECT i.WorkID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER),
               CASE WHEN EXISTS (SELECT 1 FROM deleted AS d WHERE d.WorkID = i.WorkID)
                    THEN 'UPDATE' ELSE 'INSERT' END
        FROM inserted AS i
    ) AS c
    ORDER BY c.Seq;  -- deletes of old keys get the lower QueueIDs
END;
GO

CREATE OR ALTER TRIGGER dbo.trg_tblAlignerSets_SyncQueue
ON dbo.tblAlignerSets
AFTER INSERT, UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    -- The agent's own (reverse-sync) writes must not echo back to Supabase.
    IF SESSION_CONTEXT(N'syncbridge') IS NOT NULL RETURN;
    -- An UPDATE or DELETE that matched no row still fires the trigger: queue nothing.
    IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN;

    INSERT INTO dbo.SyncQueue (TableName, RecordID, Operation)
    SELECT N'tblAlignerSets', c.RecordID, c.Operation
    FROM (
        SELECT 1 AS Seq,
               (SELECT d.AlignerSetID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER) AS RecordID,
               'DELETE' AS Operation
        FROM deleted AS d
        WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i.AlignerSetID = d.AlignerSetID)
        UNION ALL
        SELECT 2,
               (SELECT i.AlignerSetID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER),
               CASE WHEN EXISTS (SELECT 1 FROM deleted AS d WHERE d.AlignerSetID = i.AlignerSetID)
                    THEN 'UPDATE' ELSE 'INSERT' END
        FROM inserted AS i
    ) AS c
    ORDER BY c.Seq;  -- deletes of old keys get the lower QueueIDs
END;
GO

CREATE OR ALTER TRIGGER dbo.trg_tblAlignerBatches_SyncQueue
ON dbo.tblAlignerBatches
AFTER INSERT, UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    -- The agent's own (reverse-sync) writes must not echo back to Supabase.
    IF SESSION_CONTEXT(N'syncbridge') IS NOT NULL RETURN;
    -- An UPDATE or DELETE that matched no row still fires the trigger: queue nothing.
    IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN;

    INSERT INTO dbo.SyncQueue (TableName, RecordID, Operation)
    SELECT N'tblAlignerBatches', c.RecordID, c.Operation
    FROM (
        SELECT 1 AS Seq,
               (SELECT d.AlignerBatchID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER) AS RecordID,
               'DELETE' AS Operation
        FROM deleted AS d
        WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i.AlignerBatchID = d.AlignerBatchID)
        UNION ALL
        SELECT 2,
               (SELECT i.AlignerBatchID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER),
               CASE WHEN EXISTS (SELECT 1 FROM deleted AS d WHERE d.AlignerBatchID = i.AlignerBatchID)
                    THEN 'UPDATE' ELSE 'INSERT' END
        FROM inserted AS i
    ) AS c
    ORDER BY c.Seq;  -- deletes of old keys get the lower QueueIDs
END;
GO

CREATE OR ALTER TRIGGER dbo.trg_tblAlignerNotes_SyncQueue
ON dbo.tblAlignerNotes
AFTER INSERT, UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    -- The agent's own (reverse-sync) writes must not echo back to Supabase.
    IF SESSION_CONTEXT(N'syncbridge') IS NOT NULL RETURN;
    -- An UPDATE or DELETE that matched no row still fires the trigger: queue nothing.
    IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN;

    INSERT INTO dbo.SyncQueue (TableName, RecordID, Operation)
    SELECT N'tblAlignerNotes', c.RecordID, c.Operation
    FROM (
        SELECT 1 AS Seq,
               (SELECT d.NoteUID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER) AS RecordID,
               'DELETE' AS Operation
        FROM deleted AS d
        WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i.NoteUID = d.NoteUID)
        UNION ALL
        SELECT 2,
               (SELECT i.NoteUID FOR JSON PATH, WITHOUT_ARRAY_WRAPPER),
               CASE WHEN EXISTS (SELECT 1 FROM deleted AS d WHERE d.NoteUID = i.NoteUID)
                    THEN 'UPDATE' ELSE 'INSERT' END
        FROM inserted AS i
    ) AS c
    ORDER BY c.Seq;  -- deletes of old keys get the lower QueueIDs
END;
GO
