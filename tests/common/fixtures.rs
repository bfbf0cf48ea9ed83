//! Sample rows, keys and Supabase webhook payloads for the sample clinic schema, and small
//! readers of the SQL Server double, shared by the end-to-end tests.

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{json, Value};
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{Decimal, SqlValue};
use syncbridge::sqlserver::{KeyPart, RecordKey, Row};
use syncbridge_testkit::TestDb;

pub fn key(column: &str, value: i64) -> RecordKey {
    RecordKey(
        [(column.to_owned(), KeyPart::Int(value))]
            .into_iter()
            .collect(),
    )
}

pub fn text_key(column: &str, value: &str) -> RecordKey {
    RecordKey(
        [(column.to_owned(), KeyPart::Text(value.to_owned()))]
            .into_iter()
            .collect(),
    )
}

pub fn row(values: &[(&str, SqlValue)]) -> Row {
    values
        .iter()
        .map(|(c, v)| ((*c).to_owned(), v.clone()))
        .collect()
}

pub fn ts(s: &str) -> SqlValue {
    SqlValue::DateTime(NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").expect("timestamp"))
}

pub fn money(s: &str) -> SqlValue {
    SqlValue::Decimal(
        Decimal::parse(s)
            .expect("decimal")
            .rescale(4)
            .expect("4 places"),
    )
}

pub fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

pub fn patient(id: i64, name: &str) -> Row {
    row(&[
        ("PersonID", SqlValue::Int(id)),
        ("PatientName", text(name)),
        ("Phone", text("0750 123 4567")),
        (
            "DateOfBirth",
            SqlValue::Date(NaiveDate::from_ymd_opt(1990, 2, 28).expect("date")),
        ),
        ("IsActive", SqlValue::Bit(true)),
        (
            "PatientGUID",
            SqlValue::Guid(uuid::Uuid::from_u128(id as u128)),
        ),
        ("Notes", SqlValue::Null),
        ("DateAdded", ts("2026-11-25T09:15:30.123")),
    ])
}

pub fn work(id: i64, person: i64) -> Row {
    row(&[
        ("WorkID", SqlValue::Int(id)),
        ("PersonID", SqlValue::Int(person)),
        ("TypeOfWork", text("Aligners")),
        ("TotalRequired", money("1500000.0000")),
        ("Currency", text("IQD")),
        ("StartDate", SqlValue::Null),
        ("Finished", SqlValue::Bit(false)),
        ("AdditionTime", ts("2026-11-25T09:20:00.000")),
    ])
}

pub fn aligner_set(id: i64, work: i64) -> Row {
    row(&[
        ("AlignerSetID", SqlValue::Int(id)),
        ("WorkID", SqlValue::Int(work)),
        ("SetSequence", SqlValue::Int(1)),
        ("UpperAlignersCount", SqlValue::Int(20)),
        ("LowerAlignersCount", SqlValue::Int(18)),
        (
            "SetCost",
            SqlValue::Decimal(Decimal::parse("1250.50").expect("decimal")),
        ),
        ("IsActive", SqlValue::Bit(true)),
        (
            "CreationDate",
            SqlValue::DateTimeOffset(
                chrono::DateTime::parse_from_rfc3339("2026-11-25T09:30:00.250+03:00").expect("tz"),
            ),
        ),
    ])
}

pub fn batch(id: i64, set: i64, days: i64) -> Row {
    row(&[
        ("AlignerBatchID", SqlValue::Int(id)),
        ("AlignerSetID", SqlValue::Int(set)),
        ("BatchSequence", SqlValue::Int(id)),
        ("UpperAlignerCount", SqlValue::Int(5)),
        ("LowerAlignerCount", SqlValue::Int(5)),
        ("Days", SqlValue::Int(days)),
        ("ManufactureDate", SqlValue::Null),
        ("DeliveredToPatientDate", SqlValue::Null),
        ("Notes", text("first batch")),
        ("LabelCode", SqlValue::Binary(vec![0xde, 0xad, 0xbe, 0xef])),
    ])
}

/// A note keyed as SQL Server's FOR JSON writes GUIDs (upper case).
pub fn note(uid: &str, set: i64, note_type: &str, body: &str) -> Row {
    row(&[
        ("NoteID", SqlValue::Int(1)),
        (
            "NoteUID",
            SqlValue::Guid(uuid::Uuid::parse_str(uid).expect("uuid")),
        ),
        ("AlignerSetID", SqlValue::Int(set)),
        ("NoteType", text(note_type)),
        ("NoteText", text(body)),
        ("CreatedAt", ts("2026-11-25T10:00:00.000")),
        ("IsEdited", SqlValue::Bit(false)),
        ("EditedAt", SqlValue::Null),
        ("IsRead", SqlValue::Bit(false)),
    ])
}

pub fn note_key(uid: &str) -> RecordKey {
    text_key("NoteUID", &uid.to_uppercase())
}

/// Creates patient 1 → work 1 → set 1 in the double (parents of batches and notes).
pub fn seed_parents(store: &MemoryStore) {
    store.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "Test Patient")),
    );
    store.clinic_write("tblWork", &key("WorkID", 1), Some(work(1, 1)));
    store.clinic_write(
        "tblAlignerSets",
        &key("AlignerSetID", 1),
        Some(aligner_set(1, 1)),
    );
}

/// A Supabase version `secs` seconds from now (UTC, RFC 3339): the portal's edits must be
/// newer than the clinic's queued ones to win (README "Who wins"), and those are stamped now.
pub fn now_plus(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

pub const NOTE_A: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
pub const NOTE_B: &str = "0b0e3e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

/// A Supabase `aligner_notes` record as the webhook carries it.
pub fn note_record(uid: &str, body: &str, updated_at: &str) -> Value {
    json!({"note_uid": uid, "aligner_set_id": 1, "note_type": "Doctor", "note_text": body,
           "created_at": "2026-11-25T10:00:00", "is_edited": false, "edited_at": null, "is_read": false,
           "updated_at": updated_at})
}

/// A Supabase `aligner_batches` record as the webhook carries it.
pub fn batch_record(id: i64, days: i64, notes: &str, updated_at: &str) -> Value {
    json!({"aligner_batch_id": id, "aligner_set_id": 1, "batch_sequence": id, "upper_aligner_count": 5,
           "lower_aligner_count": 5, "days": days, "manufacture_date": null, "delivered_to_patient_date": null,
           "notes": notes, "label_code": "\\xdeadbeef", "updated_at": updated_at})
}

pub fn hook(kind: &str, table: &str, record: Option<Value>, old: Option<Value>) -> Value {
    json!({"type": kind, "table": table, "schema": "public", "record": record, "old_record": old})
}

/// The text of note `uid` in the SQL Server double.
pub fn note_text(store: &MemoryStore, uid: &str) -> Option<String> {
    match store
        .row("tblAlignerNotes", &note_key(uid))?
        .get("NoteText")
    {
        Some(SqlValue::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

pub fn days(store: &MemoryStore, id: i64) -> Option<SqlValue> {
    store
        .row("tblAlignerBatches", &key("AlignerBatchID", id))?
        .get("Days")
        .cloned()
}

/// Inserts patient 1 → work 1 → set 1 straight into the Supabase database (parents for notes
/// and batches written there by the portal).
pub async fn seed_supabase_parents(db: &TestDb) {
    db.client()
        .batch_execute(
            "INSERT INTO patients (person_id, patient_name, is_active, patient_guid, date_added)
               VALUES (1, 'P', true, gen_random_uuid(), '2026-01-01');
             INSERT INTO work (work_id, person_id, type_of_work, addition_time) VALUES (1, 1, 'Aligners', '2026-01-01');
             INSERT INTO aligner_sets (aligner_set_id, work_id, set_sequence, creation_date) VALUES (1, 1, 1, now());",
        )
        .await
        .expect("seed Supabase parents");
}

/// A NOT NULL, non-identity column of a test table in the double.
pub fn column(
    name: &str,
    sql_type: syncbridge::sqlserver::SqlType,
) -> syncbridge::sqlserver::SourceColumn {
    syncbridge::sqlserver::SourceColumn {
        name: name.to_owned(),
        sql_type,
        nullable: false,
        identity: false,
        computed: false,
    }
}
