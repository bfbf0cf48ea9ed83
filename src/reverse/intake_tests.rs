use serde_json::{json, Value};

use super::*;

const NOTE: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

fn note(uid: Value) -> Value {
    json!({"note_uid": uid, "aligner_set_id": 3, "note_type": "Doctor", "note_text": "t",
           "created_at": "2026-11-25T10:00:00.000", "is_edited": false, "edited_at": null,
           "is_read": false, "updated_at": "2026-11-25T10:00:00.5+00:00"})
}

fn payload(kind: &str, table: &str, record: Option<Value>, old: Option<Value>) -> WebhookPayload {
    serde_json::from_value(json!({"type": kind, "table": table, "schema": "public",
                                  "record": record, "old_record": old}))
    .expect("payload")
}

fn row(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

#[tokio::test]
async fn a_webhook_insert_becomes_an_event_with_its_key_and_version() {
    let map = ResolvedMap::sample_clinic().await;
    let intake = webhook(
        &map,
        payload("INSERT", "aligner_notes", Some(note(json!(NOTE))), None),
    );
    let Ok(Intake::Accept(event)) = intake else {
        panic!("expected an accepted event: {intake:?}");
    };
    assert_eq!(event.kind, EventKind::Change(Op::Insert));
    assert_eq!(event.record_key, format!(r#"{{"note_uid":"{NOTE}"}}"#));
    assert_eq!(
        event.version,
        parse_version(&json!("2026-11-25T10:00:00.5+00:00"))
    );
}

#[tokio::test]
async fn only_insert_update_and_delete_can_be_sent() {
    let map = ResolvedMap::sample_clinic().await;
    for kind in ["UPSERT", "TRUNCATE", "insert"] {
        let intake = webhook(
            &map,
            payload(kind, "aligner_notes", Some(note(json!(NOTE))), None),
        );
        assert_eq!(intake, Err(Refusal::UnknownType(kind.to_owned())), "{kind}");
    }
}

#[tokio::test]
async fn tables_that_are_not_reverse_synced_are_refused() {
    let map = ResolvedMap::sample_clinic().await;
    for (table, schema) in [
        ("patients", "public"),
        ("secrets", "public"),
        ("aligner_notes", "auth"),
    ] {
        let mut p = payload("INSERT", table, Some(json!({"id": 1})), None);
        p.schema = Some(schema.to_owned());
        assert_eq!(
            webhook(&map, p),
            Err(Refusal::NotReverseSynced(table.to_owned()))
        );
    }
}

#[tokio::test]
async fn a_record_without_its_key_value_is_refused() {
    let map = ResolvedMap::sample_clinic().await;
    let intake = webhook(
        &map,
        payload("INSERT", "aligner_notes", Some(note(Value::Null)), None),
    );
    assert_eq!(intake, Err(Refusal::MissingKey));
}

#[tokio::test]
async fn a_delete_is_identified_by_its_old_record() {
    let mut map = ResolvedMap::sample_clinic().await;
    for t in &mut map.tables {
        if let Some(r) = t.spec.reverse.as_mut() {
            r.delete = true;
        }
    }
    let intake = webhook(
        &map,
        payload("DELETE", "aligner_notes", None, Some(note(json!(NOTE)))),
    );
    let Ok(Intake::Accept(event)) = intake else {
        panic!("expected an accepted delete: {intake:?}");
    };
    assert!(event.kind.is_delete());
    assert_eq!(event.record_key, format!(r#"{{"note_uid":"{NOTE}"}}"#));
}

#[tokio::test]
async fn an_echo_of_the_agents_own_write_is_ignored_not_refused() {
    let map = ResolvedMap::sample_clinic().await;
    let batch = |notes: &str| {
        json!({"aligner_batch_id": 7, "aligner_set_id": 3, "batch_sequence": 1,
        "upper_aligner_count": 10, "lower_aligner_count": 10, "days": 10, "manufacture_date": null,
        "delivered_to_patient_date": null, "notes": notes, "label_code": null,
        "updated_at": "2026-11-25T10:00:00+00:00"})
    };
    let intake = webhook(
        &map,
        payload(
            "UPDATE",
            "aligner_batches",
            Some(batch("new")),
            Some(batch("old")),
        ),
    );
    assert!(matches!(intake, Ok(Intake::Ignore(_))), "{intake:?}");
}

#[tokio::test]
async fn a_catch_up_row_becomes_a_current_row_or_a_refusal() {
    let map = ResolvedMap::sample_clinic().await;
    let notes = map.by_target("aligner_notes").expect("table");
    let Ok(Intake::Accept(event)) = current_row(notes, row(note(json!(NOTE)))) else {
        panic!("expected a current row");
    };
    assert_eq!(
        (event.kind, event.old_record),
        (EventKind::CurrentRow, None)
    );
    let mut bad = note(json!(NOTE));
    bad["aligner_set_id"] = json!("three");
    assert!(matches!(
        current_row(notes, row(bad)),
        Err(Refusal::Plan(PlanError::Decode(_)))
    ));
}
