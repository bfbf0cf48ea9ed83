use serde_json::json;

use super::*;
use crate::mapping::ResolvedMap;
use crate::sqlserver::SqlValue;

const INSERT: EventKind = EventKind::Change(Op::Insert);
const UPDATE: EventKind = EventKind::Change(Op::Update);
const DELETE: EventKind = EventKind::Change(Op::Delete);
const CURRENT_ROW: EventKind = EventKind::CurrentRow;

const NOTE: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

fn event(
    table: &str,
    kind: EventKind,
    record: Option<serde_json::Value>,
    old: Option<serde_json::Value>,
) -> NewEvent {
    let as_map = |v: serde_json::Value| v.as_object().cloned();
    NewEvent {
        kind,
        table: table.to_owned(),
        record_key: String::new(),
        record: record.and_then(as_map),
        old_record: old.and_then(as_map),
        version: None,
    }
}

fn batch(days: i64, notes: &str) -> serde_json::Value {
    json!({"aligner_batch_id": 7, "aligner_set_id": 3, "batch_sequence": 1, "upper_aligner_count": 10,
           "lower_aligner_count": 10, "days": days, "manufacture_date": null, "delivered_to_patient_date": null,
           "notes": notes, "label_code": null, "updated_at": "2026-11-25T10:00:00+00:00"})
}

fn note(text: &str) -> serde_json::Value {
    json!({"note_uid": NOTE, "aligner_set_id": 3, "note_type": "Doctor", "note_text": text,
           "created_at": "2026-11-25T10:00:00.000", "is_edited": false, "edited_at": null, "is_read": false,
           "updated_at": "2026-11-25T10:00:00.5+00:00"})
}

#[tokio::test]
async fn batch_days_update_writes_only_days_when_changed() {
    let map = ResolvedMap::sample_clinic().await;
    let t = map.by_target("aligner_batches").expect("table");
    let Plan::Write(w) = plan(
        t,
        &event(
            "aligner_batches",
            UPDATE,
            Some(batch(14, "b")),
            Some(batch(10, "a")),
        ),
    )
    .expect("plan") else {
        panic!("expected a write");
    };
    assert_eq!(w.table, "tblAlignerBatches");
    assert_eq!(w.key, vec![("AlignerBatchID".to_owned(), SqlValue::Int(7))]);
    assert_eq!(
        w.action,
        WriteAction::UpdateOnly {
            update: vec![("Days".to_owned(), SqlValue::Int(14))]
        }
    );

    // Only clinic-owned columns changed (an echo of a forward upsert): nothing to write.
    let p = plan(
        t,
        &event(
            "aligner_batches",
            UPDATE,
            Some(batch(10, "changed")),
            Some(batch(10, "a")),
        ),
    )
    .expect("plan");
    assert!(matches!(p, Plan::Skip(_)), "{p:?}");
    // Batches are created by the clinic: a portal INSERT is not applied.
    let p = plan(
        t,
        &event("aligner_batches", INSERT, Some(batch(10, "a")), None),
    )
    .expect("plan");
    assert!(matches!(p, Plan::Skip(_)), "{p:?}");
    // Catch-up rows carry no old_record: days is written and SQL Server compares.
    let Plan::Write(w) = plan(
        t,
        &event("aligner_batches", CURRENT_ROW, Some(batch(10, "a")), None),
    )
    .expect("plan") else {
        panic!("expected a write");
    };
    assert_eq!(
        w.action,
        WriteAction::UpdateOnly {
            update: vec![("Days".to_owned(), SqlValue::Int(10))]
        }
    );
}

#[tokio::test]
async fn note_insert_carries_every_column_and_update_only_portal_owned() {
    let map = ResolvedMap::sample_clinic().await;
    let t = map.by_target("aligner_notes").expect("table");
    let Plan::Write(w) = plan(
        t,
        &event("aligner_notes", INSERT, Some(note("مرحبا — سڵاو")), None),
    )
    .expect("plan") else {
        panic!("expected a write");
    };
    let WriteAction::Upsert { insert, update } = &w.action else {
        panic!("expected upsert")
    };
    let names: Vec<&str> = insert.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "NoteUID",
            "AlignerSetID",
            "NoteType",
            "NoteText",
            "CreatedAt",
            "IsEdited",
            "EditedAt",
            "IsRead"
        ]
    );
    assert!(insert.contains(&(
        "NoteText".to_owned(),
        SqlValue::Text("مرحبا — سڵاو".to_owned())
    )));
    let updated: Vec<&str> = update.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(updated, ["NoteText", "IsEdited", "EditedAt"]);

    let Plan::Write(w) = plan(
        t,
        &event(
            "aligner_notes",
            UPDATE,
            Some(note("new")),
            Some(note("old")),
        ),
    )
    .expect("plan") else {
        panic!("expected a write");
    };
    let WriteAction::Upsert { update, .. } = &w.action else {
        panic!("expected upsert")
    };
    assert_eq!(
        update,
        &vec![("NoteText".to_owned(), SqlValue::Text("new".to_owned()))]
    );
}

#[tokio::test]
async fn deletes_unknown_columns_and_bad_types() {
    let map = ResolvedMap::sample_clinic().await;
    let t = map.by_target("aligner_notes").expect("table");
    let p = plan(t, &event("aligner_notes", DELETE, None, Some(note("x")))).expect("plan");
    assert!(
        matches!(p, Plan::Skip(ref why) if why.contains("deletes")),
        "{p:?}"
    );

    // A column the map does not know (added in Supabase) is left out, not a refusal.
    let mut extra = note("x");
    extra["doctor_secret_column"] = json!(1);
    let p = plan(t, &event("aligner_notes", INSERT, Some(extra), None)).expect("plan");
    let Plan::Write(w) = p else {
        panic!("expected a write: {p:?}")
    };
    let WriteAction::Upsert { insert, .. } = &w.action else {
        panic!("expected upsert")
    };
    assert!(insert.iter().all(|(c, _)| c != "doctor_secret_column"));

    let mut wrong = note("x");
    wrong["aligner_set_id"] = json!("three");
    let err = plan(t, &event("aligner_notes", INSERT, Some(wrong), None)).expect_err("wrong type");
    assert!(err.to_string().contains("aligner_set_id"), "{err}");

    let err = plan(t, &event("aligner_notes", INSERT, None, None)).expect_err("no record");
    assert!(matches!(
        err,
        PlanError::Missing {
            field: "record",
            ..
        }
    ));
}
