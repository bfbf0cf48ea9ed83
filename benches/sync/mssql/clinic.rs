//! The clinic's side of the real-server burst: families (patient → work → aligner set →
//! aligner batch, as in `workload`) written with set-based T-SQL, as the clinic's application
//! would, so that the change triggers (sql/sqlserver/03) queue one item per changed row; and
//! the counts the harness reads back.

use super::sqldb::{connect, query_int, SqlDb};
use crate::workload::TABLES;

/// Families on both sides before the burst; the burst updates each of their four rows.
pub const UPDATED_FAMILIES: i32 = 250;
/// Families the burst inserts.
pub const NEW_FAMILIES: i32 = 1_250;
/// The burst: 5,000 inserts + 1,000 updates.
pub const CHANGES: i64 = 4 * (NEW_FAMILIES as i64 + UPDATED_FAMILIES as i64);
/// Rows each table holds after the burst.
pub const ROWS_PER_TABLE: i64 = NEW_FAMILIES as i64 + UPDATED_FAMILIES as i64;

/// `@P1` new families, one statement per table (each fires its trigger once, for all its
/// rows). A new family's parent is any row without a child yet: in the bench's own database
/// those are exactly the rows the statement before made. The numbers come from a 10⁴-row CTE
/// of VALUES (no catalog view needed), so `@P1` is at most 10,000. Dates are ISO 8601 with a
/// `T` (or plain `yyyy-mm-dd` for `date`), which SET DATEFORMAT and SET LANGUAGE do not change.
const INSERT_FAMILIES: &str = "SET NOCOUNT ON;
WITH d AS (SELECT v FROM (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) AS t (v)),
n AS (
    SELECT TOP (@P1) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS i
    FROM d AS a CROSS JOIN d AS b CROSS JOIN d AS c CROSS JOIN d AS e
)
INSERT INTO dbo.tblPatients (PatientName, Phone, DateOfBirth, IsActive, Notes, DateAdded)
SELECT N'مریض ' + CONVERT(nvarchar(20), n.i) + N' — Patient v0',
       N'0750 123 4567', '1990-02-28', 1,
       N'ملاحظة ' + CONVERT(nvarchar(20), n.i)
           + N': upper and lower arches, attachments on 13-23, review in six weeks; patient asked about whitening. '
           + REPLICATE(N'x', CONVERT(int, n.i % 7) * 20),
       '2026-11-25T09:15:30.123'
FROM n;
INSERT INTO dbo.tblWork (PersonID, TypeOfWork, TotalRequired, Currency, Finished, AdditionTime)
SELECT p.PersonID, N'Aligners', CONVERT(money, 1500000.0000), 'IQD', 0,
       '2026-11-25T09:20:00.000'
FROM dbo.tblPatients AS p
WHERE NOT EXISTS (SELECT 1 FROM dbo.tblWork AS w WHERE w.PersonID = p.PersonID);
INSERT INTO dbo.tblAlignerSets (WorkID, SetSequence, UpperAlignersCount, LowerAlignersCount, SetCost, IsActive, CreationDate)
SELECT w.WorkID, 1, 20, 18, CONVERT(decimal(12, 2), 1250.50), 1,
       '2026-11-25T09:30:00.250+03:00'
FROM dbo.tblWork AS w
WHERE NOT EXISTS (SELECT 1 FROM dbo.tblAlignerSets AS s WHERE s.WorkID = w.WorkID);
INSERT INTO dbo.tblAlignerBatches (AlignerSetID, BatchSequence, UpperAlignerCount, LowerAlignerCount, Days, Notes, LabelCode)
SELECT s.AlignerSetID, 1, 5, 5, 14, N'first batch', 0xDEADBEEF
FROM dbo.tblAlignerSets AS s
WHERE NOT EXISTS (SELECT 1 FROM dbo.tblAlignerBatches AS b WHERE b.AlignerSetID = s.AlignerSetID);";

/// One update of every row of the families whose patient is at most `@P1` (the seeded ones:
/// identities only grow), one statement per table.
const UPDATE_FAMILIES: &str = "SET NOCOUNT ON;
UPDATE dbo.tblPatients
SET PatientName = N'مریض ' + CONVERT(nvarchar(12), PersonID) + N' — Patient v1',
    Notes = N'ملاحظة ' + CONVERT(nvarchar(12), PersonID) + N': reviewed; next aligners in two weeks.'
WHERE PersonID <= @P1;
UPDATE dbo.tblWork SET Finished = 1 WHERE PersonID <= @P1;
UPDATE s SET UpperAlignersCount = s.UpperAlignersCount + 1
FROM dbo.tblAlignerSets AS s
JOIN dbo.tblWork AS w ON w.WorkID = s.WorkID
WHERE w.PersonID <= @P1;
UPDATE b SET Days = b.Days + 1, Notes = N'second look'
FROM dbo.tblAlignerBatches AS b
JOIN dbo.tblAlignerSets AS s ON s.AlignerSetID = b.AlignerSetID
JOIN dbo.tblWork AS w ON w.WorkID = s.WorkID
WHERE w.PersonID <= @P1;";

/// Runs `sql` with `@P1` = `n` on a new clinic connection (no session context: the triggers
/// queue what it changes).
async fn exec_with(db: &SqlDb, sql: &str, n: i32) {
    let mut c = connect(&db.config).await;
    c.execute(sql, &[&n])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

/// The families that exist before the burst, with the queue items they caused removed (they
/// are seeded on the Supabase side directly).
pub async fn seed(db: &SqlDb) {
    exec_with(db, INSERT_FAMILIES, UPDATED_FAMILIES).await;
    db.sql("DELETE FROM dbo.SyncQueue;").await;
    for (table, _) in TABLES {
        let n = db.int(&format!("SELECT COUNT(*) FROM dbo.{table};")).await;
        assert_eq!(n, i64::from(UPDATED_FAMILIES), "seeded rows in {table}");
    }
}

/// The burst, as the clinic writes it: the updates of the seeded families, then the new
/// families. Checks that the triggers queued exactly one Pending item per changed row.
pub async fn write_burst(db: &SqlDb) {
    let mut c = connect(&db.config).await;
    let seeded = query_int(&mut c, "SELECT MAX(PersonID) FROM dbo.tblPatients;").await;
    let seeded = i32::try_from(seeded).expect("PersonID is an int");
    drop(c);
    exec_with(db, UPDATE_FAMILIES, seeded).await;
    exec_with(db, INSERT_FAMILIES, NEW_FAMILIES).await;
    let queued = db
        .rows(
            "SELECT COUNT_BIG(*),
                    ISNULL(SUM(CASE WHEN Operation = 'INSERT' THEN 1 ELSE 0 END), 0),
                    ISNULL(SUM(CASE WHEN Operation = 'UPDATE' THEN 1 ELSE 0 END), 0)
             FROM dbo.SyncQueue WHERE Status = 'Pending';",
        )
        .await;
    let row = queued.first().expect("one row");
    let all = row.get::<i64, _>(0).unwrap_or(0);
    let inserts = row.get::<i32, _>(1).unwrap_or(0);
    let updates = row.get::<i32, _>(2).unwrap_or(0);
    assert_eq!(
        (all, inserts, updates),
        (CHANGES, 4 * NEW_FAMILIES, 4 * UPDATED_FAMILIES),
        "Pending items (all, INSERT, UPDATE) after the burst"
    );
}

/// (Synced, Failed) items in dbo.SyncQueue, on the harness's one observer connection.
pub async fn settled(db: &SqlDb) -> (i64, i64) {
    let rows = db
        .rows(
            "SELECT ISNULL(SUM(CASE WHEN Status = 'Synced' THEN 1 ELSE 0 END), 0),
                    ISNULL(SUM(CASE WHEN Status = 'Failed' THEN 1 ELSE 0 END), 0)
             FROM dbo.SyncQueue;",
        )
        .await;
    let row = rows.first().expect("one row");
    let n = |i: usize| i64::from(row.get::<i32, _>(i).unwrap_or(0));
    (n(0), n(1))
}

/// Up to five queue items that have an error, for a failure's message.
pub async fn errors(db: &SqlDb) -> Vec<Vec<Option<String>>> {
    db.strings(
        "SELECT TOP (5) TableName, RecordID, Status, LastError FROM dbo.SyncQueue
         WHERE LastError IS NOT NULL ORDER BY QueueID;",
    )
    .await
}

/// Rows in `table` (a name of [`TABLES`]).
pub async fn count(db: &SqlDb, table: &str) -> i64 {
    db.int(&format!("SELECT COUNT(*) FROM dbo.{table};")).await
}
