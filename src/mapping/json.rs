//! Exact conversion between SQL Server values ([`SqlValue`]) and PostgREST JSON, both ways:
//! decimals keep every digit (serde_json's `arbitrary_precision`), binary is bytea hex, naive
//! times stay naive, and nothing that would be truncated, rounded or reinterpreted is accepted.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Number, Value};
use uuid::Uuid;

use crate::sqlserver::{Decimal, SqlType, SqlValue};

/// Why a JSON value could not become a value of a SQL Server column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub(crate) struct ConversionError {
    pub(crate) expected: String,
    pub(crate) got: String,
}

fn mismatch(expected: impl Into<String>, got: &Value) -> ConversionError {
    let got = match got {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a long string".to_owned(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    };
    ConversionError {
        expected: expected.into(),
        got,
    }
}

/// The PostgREST JSON form of `value`.
pub(crate) fn to_json(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => Value::from(*i),
        SqlValue::Decimal(d) => exact_number(&d.to_string()),
        SqlValue::Bit(b) => Value::Bool(*b),
        SqlValue::Text(s) => Value::String(s.clone()),
        SqlValue::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
        SqlValue::DateTime(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        SqlValue::DateTimeOffset(t) => {
            Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f%:z").to_string())
        }
        SqlValue::Guid(g) => Value::String(g.hyphenated().to_string()),
        SqlValue::Binary(b) => Value::String(format!("\\x{}", hex::encode(b))),
        SqlValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
    }
}

/// Converts a JSON value (from a webhook or a PostgREST read) into a value for a column of type
/// `ty`, refusing anything that would be truncated, rounded or reinterpreted.
pub(crate) fn from_json(value: &Value, ty: &SqlType) -> Result<SqlValue, ConversionError> {
    if value.is_null() {
        return Ok(SqlValue::Null);
    }
    match ty {
        SqlType::Int { bits } => int_from_json(value, *bits),
        SqlType::Decimal { precision, scale } => {
            decimal_from_json(value, *precision, *scale).map(SqlValue::Decimal)
        }
        SqlType::Money => decimal_from_json(value, 19, 4).map(SqlValue::Decimal),
        SqlType::Bit => value
            .as_bool()
            .map(SqlValue::Bit)
            .ok_or_else(|| mismatch("a boolean", value)),
        SqlType::Text { max_chars, .. } => text_from_json(value, *max_chars),
        SqlType::Date => {
            let s = value.as_str().ok_or_else(|| mismatch("a date", value))?;
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(SqlValue::Date)
                .map_err(|_| mismatch("a date (YYYY-MM-DD)", value))
        }
        SqlType::DateTime | SqlType::DateTime2 { .. } => {
            let s = value
                .as_str()
                .ok_or_else(|| mismatch("a timestamp", value))?;
            let t =
                parse_naive(s).ok_or_else(|| mismatch("a timestamp without time zone", value))?;
            fits_scale(t.and_utc().timestamp_subsec_nanos(), ty, value)?;
            Ok(SqlValue::DateTime(t))
        }
        SqlType::DateTimeOffset { .. } => {
            let s = value
                .as_str()
                .ok_or_else(|| mismatch("a timestamp", value))?;
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|_| mismatch("a timestamp with time zone", value))?;
            fits_scale(t.timestamp_subsec_nanos(), ty, value)?;
            Ok(SqlValue::DateTimeOffset(t))
        }
        SqlType::Guid => {
            let s = value.as_str().ok_or_else(|| mismatch("a uuid", value))?;
            Uuid::parse_str(s)
                .map(SqlValue::Guid)
                .map_err(|_| mismatch("a uuid", value))
        }
        SqlType::Binary { max_bytes } => binary_from_json(value, *max_bytes),
        SqlType::Float => value
            .as_f64()
            .map(SqlValue::Float)
            .ok_or_else(|| mismatch("a number", value)),
        SqlType::Unsupported(name) => Err(mismatch(
            format!("a supported type (column is {name})"),
            value,
        )),
    }
}

fn int_from_json(value: &Value, bits: u8) -> Result<SqlValue, ConversionError> {
    let n = value
        .as_i64()
        .ok_or_else(|| mismatch("an integer", value))?;
    let fits = match bits {
        8 => (0..=255).contains(&n),
        16 => i16::try_from(n).is_ok(),
        32 => i32::try_from(n).is_ok(),
        _ => true,
    };
    if fits {
        Ok(SqlValue::Int(n))
    } else {
        Err(mismatch(format!("an integer that fits {bits} bits"), value))
    }
}

fn text_from_json(value: &Value, max_chars: Option<u32>) -> Result<SqlValue, ConversionError> {
    let s = value.as_str().ok_or_else(|| mismatch("a string", value))?;
    match max_chars {
        // SQL Server counts UTF-16 code units for nvarchar(n).
        Some(max) if s.encode_utf16().count() > max as usize => Err(mismatch(
            format!("a string of at most {max} characters"),
            value,
        )),
        _ => Ok(SqlValue::Text(s.to_owned())),
    }
}

fn binary_from_json(value: &Value, max_bytes: Option<u32>) -> Result<SqlValue, ConversionError> {
    let bytes = value
        .as_str()
        .and_then(|s| s.strip_prefix("\\x"))
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| mismatch("bytea hex (\\x...)", value))?;
    match max_bytes {
        Some(max) if bytes.len() > max as usize => {
            Err(mismatch(format!("at most {max} bytes"), value))
        }
        _ => Ok(SqlValue::Binary(bytes)),
    }
}

fn exact_number(literal: &str) -> Value {
    // With `arbitrary_precision` a Number keeps the literal's digits exactly.
    serde_json::from_str::<Number>(literal)
        .map_or_else(|_| Value::String(literal.to_owned()), Value::Number)
}

fn decimal_from_json(value: &Value, precision: u8, scale: u8) -> Result<Decimal, ConversionError> {
    let expected = || format!("a decimal({precision},{scale}) value");
    let literal = match value {
        Value::Number(n) => n.to_string(),
        // PostgREST renders numeric as a JSON number, but a string is accepted for safety.
        Value::String(s) => s.clone(),
        _ => return Err(mismatch(expected(), value)),
    };
    let parsed = Decimal::parse(&literal).ok_or_else(|| mismatch(expected(), value))?;
    let exact = parsed
        .rescale(scale)
        .ok_or_else(|| mismatch(expected(), value))?;
    if exact.integer_digits() > u32::from(precision.saturating_sub(scale)) {
        return Err(mismatch(expected(), value));
    }
    Ok(exact)
}

/// Refuses sub-second digits the column would round away: datetime2(n)/datetimeoffset(n) keep
/// n digits. Legacy `datetime` keeps 1/300 s and always rounds; it accepts milliseconds.
fn fits_scale(nanos: u32, ty: &SqlType, value: &Value) -> Result<(), ConversionError> {
    let scale = match ty {
        SqlType::DateTime2 { scale } | SqlType::DateTimeOffset { scale } => {
            u32::from((*scale).min(9))
        }
        _ => 3,
    };
    let step = 10u32.pow(9 - scale);
    if nanos % step == 0 {
        Ok(())
    } else {
        Err(mismatch(
            format!("a timestamp with at most {scale} fractional digits"),
            value,
        ))
    }
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).expect("decimal")
    }

    #[test]
    fn money_round_trips_through_json_without_float() {
        let v = SqlValue::Decimal(dec("922337203685477.5807"));
        let j = to_json(&v);
        assert_eq!(
            j.to_string(),
            "922337203685477.5807",
            "serialised as an exact JSON number"
        );
        assert_eq!(from_json(&j, &SqlType::Money), Ok(v));
        let parsed: serde_json::Value = serde_json::from_str("0.1").expect("json");
        assert_eq!(
            from_json(
                &parsed,
                &SqlType::Decimal {
                    precision: 5,
                    scale: 2
                }
            ),
            Ok(SqlValue::Decimal(dec("0.10")))
        );
        assert!(from_json(
            &json!(1.005),
            &SqlType::Decimal {
                precision: 5,
                scale: 2
            }
        )
        .is_err());
        assert!(from_json(
            &json!(12345.6),
            &SqlType::Decimal {
                precision: 5,
                scale: 2
            }
        )
        .is_err());
    }

    #[test]
    fn text_is_unicode_and_length_checked_in_utf16_units() {
        let kurdish = "سڵاو، چۆنی؟ 👋";
        let ty = SqlType::Text {
            unicode: true,
            max_chars: Some(14),
        };
        assert_eq!(
            from_json(&json!(kurdish), &ty),
            Ok(SqlValue::Text(kurdish.to_owned()))
        );
        let short = SqlType::Text {
            unicode: true,
            max_chars: Some(13),
        };
        assert!(
            from_json(&json!(kurdish), &short).is_err(),
            "the emoji is two UTF-16 units"
        );
        assert_eq!(to_json(&SqlValue::Text(kurdish.to_owned())), json!(kurdish));
    }

    #[test]
    fn times_keep_their_meaning() {
        let naive = from_json(
            &json!("2026-11-25T08:30:00.123"),
            &SqlType::DateTime2 { scale: 3 },
        )
        .expect("naive");
        assert_eq!(to_json(&naive), json!("2026-11-25T08:30:00.123"));
        let offset = from_json(
            &json!("2026-11-25T08:30:00.5+03:00"),
            &SqlType::DateTimeOffset { scale: 3 },
        )
        .expect("offset");
        assert_eq!(to_json(&offset), json!("2026-11-25T08:30:00.500+03:00"));
        assert!(from_json(
            &json!("2026-11-25T08:30:00+03:00"),
            &SqlType::DateTime2 { scale: 3 }
        )
        .is_err());
        assert!(
            from_json(
                &json!("2026-11-25T08:30:00.1234"),
                &SqlType::DateTime2 { scale: 3 }
            )
            .is_err(),
            "a fourth digit would be rounded away by datetime2(3)"
        );
        assert!(from_json(
            &json!("2026-11-25T08:30:00.123456"),
            &SqlType::DateTime2 { scale: 7 }
        )
        .is_ok());
        assert!(from_json(
            &json!("2026-11-25T08:30:00.5+03:00"),
            &SqlType::DateTimeOffset { scale: 0 }
        )
        .is_err());
        let date = from_json(&json!("2026-02-28"), &SqlType::Date).expect("date");
        assert_eq!(to_json(&date), json!("2026-02-28"));
        assert!(from_json(&json!("2026-02-30"), &SqlType::Date).is_err());
    }

    #[test]
    fn other_types() {
        let g = from_json(
            &json!("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            &SqlType::Guid,
        )
        .expect("guid");
        assert_eq!(to_json(&g), json!("6f9619ff-8b86-d011-b42d-00c04fc964ff"));
        let bin = SqlValue::Binary(vec![0, 1, 0xfe, 0xff]);
        assert_eq!(to_json(&bin), json!("\\x0001feff"));
        assert_eq!(
            from_json(
                &json!("\\x0001feff"),
                &SqlType::Binary { max_bytes: Some(4) }
            ),
            Ok(bin)
        );
        assert!(from_json(
            &json!("\\x0001feff"),
            &SqlType::Binary { max_bytes: Some(3) }
        )
        .is_err());
        assert_eq!(
            from_json(&json!(true), &SqlType::Bit),
            Ok(SqlValue::Bit(true))
        );
        assert!(from_json(&json!(1), &SqlType::Bit).is_err());
        assert!(from_json(&json!(256), &SqlType::Int { bits: 8 }).is_err());
        assert!(from_json(&json!(2_147_483_648_i64), &SqlType::Int { bits: 32 }).is_err());
        assert_eq!(
            from_json(&json!(null), &SqlType::Int { bits: 32 }),
            Ok(SqlValue::Null)
        );
        assert!(from_json(&json!("<x/>"), &SqlType::Unsupported("xml".into())).is_err());
    }
}

#[cfg(test)]
#[path = "json_props.rs"]
mod props;
