//! The double's guard, which seeks the record's queue items as `IX_SyncQueue_Record` lets SQL
//! Server's do: a newer `Pending` item of the record holds a portal write back however the
//! table and the RecordID are spelled; an older item, a settled one or another record's does
//! not.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};

use crate::sqlserver::memory::MemoryStore;
use crate::sqlserver::{
    KeyPart, RecordKey, ReverseWrite, Row, SqlStore, SqlValue, WriteAction, WriteOutcome,
};

fn patient_key(id: i64) -> RecordKey {
    RecordKey(BTreeMap::from([("PersonID".to_owned(), KeyPart::Int(id))]))
}

fn patient(id: i64) -> Row {
    Row::from([
        ("PersonID".to_owned(), SqlValue::Int(id)),
        (
            "PatientName".to_owned(),
            SqlValue::Text("clinic".to_owned()),
        ),
    ])
}

/// The portal renames patient `id`, unless the clinic edited it after `newer_than`.
fn rename(id: i64, newer_than: chrono::DateTime<Utc>) -> ReverseWrite {
    ReverseWrite {
        table: "dbo.tblPatients".to_owned(),
        key: vec![("PersonID".to_owned(), SqlValue::Int(id))],
        action: WriteAction::UpdateOnly {
            update: vec![(
                "PatientName".to_owned(),
                SqlValue::Text("portal".to_owned()),
            )],
        },
        guard: Some(newer_than),
    }
}

#[tokio::test]
async fn a_newer_clinic_edit_holds_a_portal_write_back_however_its_record_is_spelled() {
    let store = MemoryStore::sample_clinic();
    for id in 1..=3 {
        store.clinic_write("tblPatients", &patient_key(id), Some(patient(id)));
    }
    store.clear_queue();
    let before = Utc::now() - Duration::seconds(60);
    // Queued by a trigger installed with other spellings of the table and the key column.
    store.enqueue_raw("[DBO].[TBLPATIENTS]", r#"{"personid":1}"#, "UPDATE");
    store.enqueue_raw("tblPatients", r#"{"PersonID":3}"#, "UPDATE");

    assert_eq!(
        store.apply(&rename(1, before)).await.ok(),
        Some(WriteOutcome::Guarded),
        "patient 1's clinic edit is newer than the portal's"
    );
    assert_eq!(
        store.apply(&rename(2, before)).await.ok(),
        Some(WriteOutcome::Updated),
        "patient 2 has no queued edit"
    );
    let after = Utc::now() + Duration::seconds(60);
    assert_eq!(
        store.apply(&rename(3, after)).await.ok(),
        Some(WriteOutcome::Updated),
        "patient 3's clinic edit is older than the portal's"
    );
}
