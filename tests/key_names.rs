//! Key columns spelled in another case (issue 7): a trigger installed with
//! `@KeyColumns = N'personid'` by an older installer writes `{"personid":1}`. SQL Server calls
//! that the key of `PersonID`, so the agent must too: the item syncs at its first attempt, and
//! coalesces with an item of the same record spelled as declared.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_id_naming_the_key_in_another_case_syncs_at_its_first_attempt() {
    let h = Harness::start().await;
    h.store.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "Folded Key")),
    );
    // The row's own item (declared spelling) and two written by a differently installed trigger.
    h.store
        .enqueue_raw("tblPatients", r#"{"personid":1}"#, "UPDATE");
    h.store
        .enqueue_raw("tblPatients", r#"{"PERSONID":1}"#, "UPDATE");
    h.notify().await;
    h.wait_synced().await;
    let queue = h.store.queue();
    assert!(
        queue
            .iter()
            .all(|q| q.status == "Synced" && q.attempts == 0 && q.last_error.is_none()),
        "{queue:#?}"
    );
    assert_eq!(
        h.rows("SELECT person_id, patient_name FROM patients").await,
        [json!({"person_id": 1, "patient_name": "Folded Key"})]
    );
}
