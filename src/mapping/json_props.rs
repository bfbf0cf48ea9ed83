//! Property: every value a mapped SQL Server column can hold survives SQL Server value → JSON
//! (as sent to PostgREST) → SQL Server value exactly, for every type the mapping converts.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use proptest::prelude::*;
use uuid::Uuid;

use super::{from_json, to_json};
use crate::sqlserver::{Decimal, SqlType, SqlValue};

/// Days from 0001-01-01 to 9999-12-31, SQL Server's date range.
const DAYS: i32 = 3_652_058;

fn date() -> impl Strategy<Value = NaiveDate> {
    (0..DAYS).prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d + 1).expect("in range"))
}

/// A wall-clock time with `digits` fractional digits at most.
fn datetime(digits: u32) -> impl Strategy<Value = NaiveDateTime> {
    let step = 10u32.pow(9 - digits);
    (date(), 0u32..86_400, 0..(1_000_000_000 / step)).prop_map(move |(d, secs, frac)| {
        let t = chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, frac * step)
            .expect("in range");
        d.and_time(t)
    })
}

fn decimal(precision: u8, scale: u8) -> impl Strategy<Value = Decimal> {
    let max = 10i128.pow(u32::from(precision)) - 1;
    (-max..=max).prop_map(move |units| Decimal { units, scale })
}

/// A column type and a value it can hold.
fn typed_value() -> impl Strategy<Value = (SqlType, SqlValue)> {
    let int = prop_oneof![
        (0i64..=255).prop_map(|n| (8u8, n)),
        any::<i16>().prop_map(|n| (16u8, i64::from(n))),
        any::<i32>().prop_map(|n| (32u8, i64::from(n))),
        any::<i64>().prop_map(|n| (64u8, n)),
    ]
    .prop_map(|(bits, n)| (SqlType::Int { bits }, SqlValue::Int(n)));
    let dec = (1u8..=38)
        .prop_flat_map(|p| (Just(p), 0..=p))
        .prop_flat_map(|(p, s)| {
            decimal(p, s).prop_map(move |d| {
                (
                    SqlType::Decimal {
                        precision: p,
                        scale: s,
                    },
                    SqlValue::Decimal(d),
                )
            })
        });
    let money = decimal(19, 4).prop_map(|d| (SqlType::Money, SqlValue::Decimal(d)));
    let text = (any::<bool>(), proptest::option::of(1u32..200), ".{0,60}").prop_filter_map(
        "fits the column",
        |(unicode, max_chars, s): (bool, Option<u32>, String)| {
            let fits = max_chars.is_none_or(|m| s.encode_utf16().count() <= m as usize);
            fits.then_some((SqlType::Text { unicode, max_chars }, SqlValue::Text(s)))
        },
    );
    let stamp2 = (0u8..=7).prop_flat_map(|scale| {
        datetime(u32::from(scale))
            .prop_map(move |t| (SqlType::DateTime2 { scale }, SqlValue::DateTime(t)))
    });
    let offset = (0u8..=7, -840i32..=840).prop_flat_map(|(scale, minutes)| {
        datetime(u32::from(scale)).prop_map(move |t| {
            let zone = FixedOffset::east_opt(minutes * 60).expect("within ±14 h");
            let at = DateTime::<FixedOffset>::from_naive_utc_and_offset(t, zone);
            (
                SqlType::DateTimeOffset { scale },
                SqlValue::DateTimeOffset(at),
            )
        })
    });
    let binary = (
        proptest::option::of(1u32..64),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_filter_map("fits the column", |(max_bytes, b)| {
            let fits = max_bytes.is_none_or(|m| b.len() <= m as usize);
            fits.then_some((SqlType::Binary { max_bytes }, SqlValue::Binary(b)))
        });
    prop_oneof![
        int,
        dec,
        money,
        any::<bool>().prop_map(|b| (SqlType::Bit, SqlValue::Bit(b))),
        text,
        date().prop_map(|d| (SqlType::Date, SqlValue::Date(d))),
        datetime(3).prop_map(|t| (SqlType::DateTime, SqlValue::DateTime(t))),
        stamp2,
        offset,
        any::<u128>().prop_map(|n| (SqlType::Guid, SqlValue::Guid(Uuid::from_u128(n)))),
        binary,
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| (SqlType::Float, SqlValue::Float(f))),
        Just((SqlType::Int { bits: 32 }, SqlValue::Null)),
    ]
}

proptest! {
    #![proptest_config(crate::proptest_cases::bounded())]

    #[test]
    fn every_mapped_value_survives_json_exactly((ty, value) in typed_value()) {
        let json = to_json(&value);
        let back = from_json(&json, &ty);
        prop_assert!(back.is_ok(), "{ty:?}: {value:?} → {json} refused: {:?}", back.err().map(|e| e.expected));
        prop_assert_eq!(back.ok(), Some(value), "{:?} via {}", ty, json);
    }

    #[test]
    fn any_json_for_any_type_converts_or_is_refused_without_panicking(
        (ty, _) in typed_value(),
        text in ".{0,40}",
        n in any::<i64>(),
    ) {
        for json in [serde_json::json!(text), serde_json::json!(n), serde_json::json!([n]), serde_json::json!({"v": text})] {
            let _ = from_json(&json, &ty);
        }
    }
}
