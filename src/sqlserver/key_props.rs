//! Properties of `RecordID` parsing: any text is parsed or refused without panicking, and a key
//! survives its canonical JSON form exactly.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{KeyPart, RecordKey};

fn key_part() -> impl Strategy<Value = KeyPart> {
    prop_oneof![
        any::<i64>().prop_map(KeyPart::Int),
        ".{0,30}".prop_map(KeyPart::Text),
    ]
}

fn record_key() -> impl Strategy<Value = RecordKey> {
    proptest::collection::btree_map(".{1,20}", key_part(), 1..4).prop_map(RecordKey)
}

proptest! {
    #![proptest_config(crate::proptest_cases::bounded())]

    #[test]
    fn a_key_survives_its_record_id_exactly(key in record_key()) {
        let text = key.to_json();
        prop_assert_eq!(RecordKey::parse(&text), Ok(key));
    }

    #[test]
    fn any_text_is_parsed_or_refused_and_a_parsed_key_is_canonical(text in ".{0,80}") {
        if let Ok(key) = RecordKey::parse(&text) {
            prop_assert!(!key.0.is_empty());
            prop_assert_eq!(RecordKey::parse(&key.to_json()), Ok(key));
        }
    }

    #[test]
    fn json_objects_of_other_values_are_refused(
        column in "[A-Za-z]{1,10}",
        value in prop_oneof![
            Just(serde_json::json!(1.5)),
            Just(serde_json::json!(null)),
            Just(serde_json::json!(true)),
            Just(serde_json::json!([1])),
            Just(serde_json::json!({"a": 1})),
            Just(serde_json::json!(18_446_744_073_709_551_615u64)),
        ],
    ) {
        let text = serde_json::to_string(&BTreeMap::from([(column, value)])).expect("json");
        let refused = RecordKey::parse(&text);
        prop_assert!(refused.is_err(), "{text} parsed as {refused:?}");
    }
}
