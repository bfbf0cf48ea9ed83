//! Properties of webhook payload decoding and intake: any body decodes or is refused, any
//! decoded payload is accepted, ignored or refused (never a panic), only `INSERT`, `UPDATE`
//! and `DELETE` are ever accepted, and an accepted event carries a parsable key.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::sqlserver::RecordKey;

/// One map for every case: resolving it needs a runtime.
fn sample_map() -> &'static ResolvedMap {
    static MAP: std::sync::OnceLock<ResolvedMap> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(ResolvedMap::sample_clinic())
    })
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        Just(json!("6f9619ff-8b86-d011-b42d-00c04fc964ff")),
        Just(json!("2026-11-25T10:00:00.5+00:00")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A record for the sample's reverse-synced `aligner_notes`, its columns' values anything.
fn record() -> impl Strategy<Value = Map<String, Value>> {
    let columns = [
        "note_uid",
        "aligner_set_id",
        "note_type",
        "note_text",
        "created_at",
        "is_edited",
        "edited_at",
        "is_read",
        "updated_at",
        "mystery",
    ];
    proptest::collection::vec(proptest::option::of(json_value()), columns.len()).prop_map(
        move |values| {
            columns
                .iter()
                .zip(values)
                .filter_map(|(c, v)| v.map(|v| ((*c).to_owned(), v)))
                .collect()
        },
    )
}

fn payload() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("INSERT".to_owned()),
        Just("UPDATE".to_owned()),
        Just("DELETE".to_owned()),
        Just("UPSERT".to_owned()),
        "[A-Za-z]{0,8}",
    ];
    let table = prop_oneof![
        Just("aligner_notes".to_owned()),
        Just("patients".to_owned()),
        "[a-z_]{0,12}",
    ];
    let schema = proptest::option::of(prop_oneof![Just("public".to_owned()), "[a-z]{0,6}"]);
    (kind, table, schema, proptest::option::of(record()), proptest::option::of(record()))
        .prop_map(|(kind, table, schema, record, old)| {
            json!({"type": kind, "table": table, "schema": schema, "record": record, "old_record": old})
        })
}

proptest! {
    #![proptest_config(crate::proptest_cases::bounded())]

    #[test]
    fn any_body_decodes_or_is_refused_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(payload) = serde_json::from_slice::<WebhookPayload>(&body) {
            let _ = webhook(sample_map(), payload);
        }
    }

    #[test]
    fn only_insert_update_and_delete_are_accepted_and_with_a_parsable_key(payload in payload()) {
        let text = payload.to_string();
        let decoded: WebhookPayload = serde_json::from_str(&text).expect("a well-formed payload decodes");
        let kind = decoded.kind.clone();
        match webhook(sample_map(), decoded) {
            Ok(Intake::Accept(event)) => {
                prop_assert!(matches!(kind.as_str(), "INSERT" | "UPDATE" | "DELETE"), "{text}");
                prop_assert_eq!(event.kind.source(), "webhook");
                prop_assert_eq!(event.table.as_str(), "aligner_notes");
                prop_assert!(RecordKey::parse(&event.record_key).is_ok(), "{}", event.record_key);
            }
            Ok(Intake::Ignore(_)) | Err(_) => {}
        }
    }
}
