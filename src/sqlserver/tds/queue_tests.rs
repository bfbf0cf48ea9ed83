//! Unit tests of the queue statements' shapes and of the values they bind (no SQL Server).

use tiberius::ColumnData;

use super::*;

#[test]
fn settle_matches_on_id_and_token_for_every_slot() {
    let sql = settle_sql("[dbo].[SyncQueue]", 2);
    assert!(sql.contains("(CAST(@P1 AS bigint), CAST(@P2 AS uniqueidentifier), CAST(@P3 AS char(1)), CAST(@P4 AS bigint), CAST(@P5 AS nvarchar(2000)))"), "{sql}");
    assert!(sql.contains("(CAST(@P6 AS bigint)"), "{sql}");
    assert!(!sql.contains("@P11"), "{sql}");
    assert!(sql.contains("FROM [dbo].[SyncQueue] AS q"), "{sql}");
    assert!(
        sql.contains("ON s.QueueID = q.QueueID AND s.Token = q.ClaimToken"),
        "{sql}"
    );
    assert!(sql.contains("ClaimToken = NULL"), "{sql}");
}

#[test]
fn the_queue_table_is_quoted_and_defaults_to_dbo() {
    assert_eq!(QueueTable::default().name(), "[dbo].[SyncQueue]");
    let scratch = QueueTable::in_schema("syncbridge_selftest_x");
    assert_eq!(scratch.name(), "[syncbridge_selftest_x].[SyncQueue]");
    assert!(scratch
        .claim
        .contains("FROM [syncbridge_selftest_x].[SyncQueue] AS q"));
    assert!(!scratch.claim.contains("dbo."));
}

#[test]
fn claim_uses_the_queue_hints_and_server_time() {
    let sql = claim_sql("[dbo].[SyncQueue]");
    let hints = "ROWLOCK, READPAST, UPDLOCK, READCOMMITTEDLOCK";
    assert_eq!(sql.matches(hints).count(), 2, "both reads: {sql}");
    assert!(sql.contains("SYSUTCDATETIME()"));
    assert!(sql.contains("OUTPUT inserted.QueueID"));
    // OUTPUT without INTO is refused on a table with triggers (SyncQueue has one).
    assert_eq!(
        sql.matches("OUTPUT ").count(),
        sql.matches("INTO @claimed").count()
    );
    assert!(sql.contains("UPPER(Operation)"), "{sql}");
}

#[test]
fn the_claim_is_driven_by_its_indexes_and_grows_with_the_batch_only() {
    let sql = claim_sql("[dbo].[SyncQueue]");
    // The oldest due rows in index order: no sort, no clustered scan over Synced rows.
    assert!(
        sql.contains("WITH (INDEX(IX_SyncQueue_Status_QueueID), ROWLOCK"),
        "{sql}"
    );
    assert!(sql.contains("ORDER BY q.QueueID"), "{sql}");
    // Siblings: the claimed records drive one seek each into the record index.
    assert!(
        sql.contains("FROM @records AS r\nINNER LOOP JOIN [dbo].[SyncQueue] AS q WITH (ROWLOCK"),
        "{sql}"
    );
    assert!(
        sql.contains("ON q.TableName = r.TableName AND q.RecordID = r.RecordID"),
        "{sql}"
    );
    assert!(
        !sql.contains("EXISTS"),
        "no per-row probe of the records: {sql}"
    );
    // Both indexes exist where the claim expects them.
    let script = include_str!("../../../sql/sqlserver/02_sync_queue.sql");
    for index in [
        "IX_SyncQueue_Status_QueueID ON ' + @q + N'\n            (Status, QueueID) INCLUDE (NextAttemptAt, TableName, RecordID)",
        "IX_SyncQueue_Record ON ' + @q + N'\n            (TableName, RecordID) INCLUDE (Status, NextAttemptAt, ClaimToken)",
    ] {
        assert!(script.contains(index), "{index}");
    }
}

#[test]
fn errors_fit_last_error() {
    assert_eq!(truncate_error("short"), "short");
    let long = "خطأ".repeat(1000);
    let cut = truncate_error(&long);
    assert_eq!(cut.encode_utf16().count(), 2000);
    // Astral characters take two units and are never split.
    let emoji = "😀".repeat(1500);
    assert_eq!(truncate_error(&emoji).encode_utf16().count(), 2000);
}

#[test]
fn delays_are_clamped_to_what_dateadd_takes() {
    assert_eq!(millis(Duration::from_millis(1500)), 1500);
    assert!(millis(Duration::from_secs(u64::MAX)) / 1000 < i64::from(i32::MAX));
}

#[test]
fn typed_nulls_pad_unused_slots() {
    // Padding binds these; they must encode as typed NULLs, never as missing parameters.
    assert_eq!(
        tiberius::IntoSql::into_sql(None::<i64>),
        ColumnData::I64(None)
    );
    assert_eq!(
        tiberius::IntoSql::into_sql(None::<Uuid>),
        ColumnData::Guid(None)
    );
}

#[test]
fn unsettled_in_seeks_the_pending_rows_with_typed_names_and_never_waits() {
    let sql = unsettled_in_sql("[dbo].[SyncQueue]", 2);
    assert!(
        sql.contains(
            "WITH (INDEX(IX_SyncQueue_Status_QueueID), ROWLOCK, READPAST, READCOMMITTEDLOCK)"
        ),
        "{sql}"
    );
    assert!(
        sql.contains(
            "q.Status = 'Pending' AND q.TableName IN (CAST(@P1 AS sysname), CAST(@P2 AS sysname))"
        ),
        "{sql}"
    );
    assert!(!sql.contains("@P3"), "{sql}");
    assert!(sql.contains("EXISTS"), "{sql}");
}
