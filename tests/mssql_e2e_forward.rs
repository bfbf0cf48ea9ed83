//! End to end against a real SQL Server (2017+), clinic to Supabase: the real agent with the
//! tiberius store sends what the clinic's applications write (every value exactly; updates and
//! deletes too), and a notification sent before the writer commits is not lost. Needs
//! MSSQL_TEST_URL and PG_TEST_URL: see tests/common/mssql.rs.

mod common;

use common::mssql::{exec, query_int, SqlDb, ARABIC, KURDISH};
use common::wait_for;
use common::E2e;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn clinic_inserts_updates_and_deletes_reach_supabase_exactly() {
    let e = E2e::start(SqlDb::create().await).await;

    // A clinic application saves a new case: four rows, parents first, each statement
    // committed on its own. The fresh database's identities start at 1.
    e.sql
        .sql(&format!(
            "INSERT INTO dbo.tblPatients (PatientName, Phone, DateOfBirth, IsActive, PatientGUID, Notes, DateAdded)
                 VALUES (N'{KURDISH}', N'0750 123 4567', '1990-02-28', 1,
                         '6F9619FF-8B86-D011-B42D-00C04FC964FF', N'{ARABIC}', '2026-11-25T09:15:30.123');
             INSERT INTO dbo.tblWork (PersonID, TypeOfWork, TotalRequired, Currency, StartDate, Finished, AdditionTime)
                 VALUES (1, N'Aligners', 922337203685477.5807, 'IQD', '2026-12-01', 0, '2026-11-25T09:20:00.456');
             INSERT INTO dbo.tblAlignerSets (WorkID, SetSequence, UpperAlignersCount, LowerAlignersCount, SetCost, IsActive, CreationDate)
                 VALUES (1, 1, 20, 18, 1250.50, 1, '2026-11-25T09:30:00.250+03:00');
             INSERT INTO dbo.tblAlignerBatches (AlignerSetID, BatchSequence, UpperAlignerCount, LowerAlignerCount, Days, ManufactureDate, Notes, LabelCode)
                 VALUES (1, 1, 5, 5, 14, '2026-11-26', N'دەستەی یەکەم', 0xDEADBEEF00FF);"
        ))
        .await;
    assert_eq!(
        e.sql
            .int("SELECT COUNT(*) FROM dbo.SyncQueue WHERE Status = 'Pending';")
            .await,
        4,
        "one queue item per row"
    );
    e.notify().await;
    e.sql.wait_all_synced(4).await;

    assert_eq!(
        e.pg_rows(
            "SELECT person_id, patient_name, phone, date_of_birth, is_active, patient_guid, notes, date_added
             FROM patients"
        )
        .await,
        [json!({
            "person_id": 1, "patient_name": KURDISH, "phone": "0750 123 4567",
            "date_of_birth": "1990-02-28", "is_active": true,
            "patient_guid": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "notes": ARABIC,
            "date_added": "2026-11-25T09:15:30.123"
        })]
    );
    assert_eq!(
        e.pg_rows(
            "SELECT work_id, person_id, type_of_work, total_required::text AS total_required, currency,
                    start_date, finished, addition_time
             FROM work"
        )
        .await,
        [json!({
            "work_id": 1, "person_id": 1, "type_of_work": "Aligners",
            "total_required": "922337203685477.5807", "currency": "IQD",
            "start_date": "2026-12-01", "finished": false,
            "addition_time": "2026-11-25T09:20:00.456"
        })],
        "money arrives as an exact decimal"
    );
    assert_eq!(
        e.pg_rows(
            "SELECT aligner_set_id, work_id, set_sequence, upper_aligners_count, lower_aligners_count,
                    set_cost::text AS set_cost, is_active,
                    creation_date = '2026-11-25T06:30:00.25Z'::timestamptz AS same_instant
             FROM aligner_sets"
        )
        .await,
        [json!({
            "aligner_set_id": 1, "work_id": 1, "set_sequence": 1, "upper_aligners_count": 20,
            "lower_aligners_count": 18, "set_cost": "1250.50", "is_active": true,
            "same_instant": true
        })],
        "datetimeoffset keeps its instant"
    );
    let batches = "SELECT aligner_batch_id, aligner_set_id, batch_sequence, upper_aligner_count,
                          lower_aligner_count, days, manufacture_date, delivered_to_patient_date, notes,
                          encode(label_code, 'hex') AS label_code
                   FROM aligner_batches";
    assert_eq!(
        e.pg_rows(batches).await,
        [json!({
            "aligner_batch_id": 1, "aligner_set_id": 1, "batch_sequence": 1,
            "upper_aligner_count": 5, "lower_aligner_count": 5, "days": 14,
            "manufacture_date": "2026-11-26", "delivered_to_patient_date": null,
            "notes": "دەستەی یەکەم", "label_code": "deadbeef00ff"
        })]
    );

    // Updates, including money's other extreme. Days belongs to the portal once the batch
    // exists there: the clinic's 99 is not sent, its Notes are.
    e.sql
        .sql(
            "UPDATE dbo.tblPatients SET Phone = N'0770 000 0000', Notes = NULL WHERE PersonID = 1;
             UPDATE dbo.tblWork SET TotalRequired = -922337203685477.5808, Finished = 1 WHERE WorkID = 1;
             UPDATE dbo.tblAlignerBatches SET Days = 99, Notes = N'نوێکراوە' WHERE AlignerBatchID = 1;",
        )
        .await;
    e.notify().await;
    e.sql.wait_all_synced(7).await;
    assert_eq!(
        e.pg_rows("SELECT phone, notes FROM patients").await,
        [json!({"phone": "0770 000 0000", "notes": null})]
    );
    assert_eq!(
        e.pg_rows("SELECT total_required::text AS total_required, finished FROM work")
            .await,
        [json!({"total_required": "-922337203685477.5808", "finished": true})]
    );
    assert_eq!(
        e.pg_rows("SELECT days, notes FROM aligner_batches").await,
        [json!({"days": 14, "notes": "نوێکراوە"})],
        "only clinic-owned columns are updated"
    );

    e.sql
        .sql("DELETE FROM dbo.tblAlignerBatches WHERE AlignerBatchID = 1;")
        .await;
    e.notify().await;
    e.sql.wait_all_synced(8).await;
    assert!(e.pg_rows("SELECT 1 FROM aligner_batches").await.is_empty());
    assert_eq!(
        e.pg_rows("SELECT count(*) AS n FROM aligner_sets").await,
        [json!({"n": 1})],
        "the parent stays"
    );
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn a_notification_sent_before_the_writer_commits_is_not_lost() {
    let e = E2e::start(SqlDb::create().await).await;

    // sp_NotifyAppOfSync runs inside the writer's transaction: the agent hears of the row
    // before it is committed.
    let mut writer = e.sql.connect().await;
    let writer_spid = query_int(&mut writer, "SELECT @@SPID;").await;
    exec(
        &mut writer,
        &format!(
            "BEGIN TRANSACTION; INSERT INTO dbo.tblPatients (PatientName) VALUES (N'{KURDISH}');"
        ),
    )
    .await;
    e.notify().await;

    // The agent's claim skips the locked row, then it waits on the writer's lock.
    let db = &e.sql;
    let blocked = format!(
        "SELECT COUNT(*) FROM sys.dm_exec_requests
         WHERE blocking_session_id = {writer_spid} AND wait_type LIKE 'LCK%'
           AND database_id = DB_ID(N'{}') AND session_id <> @@SPID;",
        db.name
    );
    db.wait_int("the agent waiting on the writer's lock", &blocked, |n| {
        n > 0
    })
    .await;
    assert!(
        e.pg_rows("SELECT 1 FROM patients").await.is_empty(),
        "nothing uncommitted is sent"
    );

    // No second notification: the commit alone releases the agent.
    exec(&mut writer, "COMMIT TRANSACTION;").await;
    let this = &e;
    wait_for("the committed patient in Supabase", move || async move {
        this.pg_rows("SELECT patient_name FROM patients").await
            == [json!({"patient_name": KURDISH})]
    })
    .await;
    e.sql.wait_all_synced(1).await;
    drop(writer);
    e.finish().await;
}
