//! Typed SQL Server values and their exact conversion to and from PostgREST JSON.
//! Owns no I/O: the SQL Server layer produces [`SqlValue`]s, the PostgREST layer consumes JSON.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde_json::{Number, Value};
use uuid::Uuid;

/// The declared type of a SQL Server column, as far as the sync needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SqlType {
    /// tinyint, smallint, int, bigint (`bits` = 8, 16, 32, 64).
    Int {
        bits: u8,
    },
    /// decimal/numeric(p, s).
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// money and smallmoney: exact, 4 decimal places.
    Money,
    Bit,
    /// char/varchar/nchar/nvarchar/text/ntext. `max_chars` is `None` for `(max)`.
    Text {
        unicode: bool,
        max_chars: Option<u32>,
    },
    Date,
    /// datetime and smalldatetime (legacy, ~3 ms resolution).
    DateTime,
    /// datetime2(scale).
    DateTime2 {
        scale: u8,
    },
    DateTimeOffset {
        scale: u8,
    },
    Guid,
    /// binary/varbinary; `max_bytes` is `None` for `(max)`.
    Binary {
        max_bytes: Option<u32>,
    },
    /// real and float: approximate by nature, passed through as JSON numbers.
    Float,
    /// Any type the sync does not convert (xml, geography, sql_variant, ...).
    Unsupported(String),
}

/// An exact decimal: `units / 10^scale`. Wide enough for decimal(38, s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub units: i128,
    pub scale: u8,
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let digits = self.units.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

impl Decimal {
    /// Parses a plain decimal literal (`-12.340`, `7`, `1e3` is refused) without rounding.
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let scale = u8::try_from(frac.len()).ok()?;
        let magnitude: i128 = format!("{int}{frac}").parse().ok()?;
        Some(Self {
            units: if negative { -magnitude } else { magnitude },
            scale,
        })
    }

    /// The same value at `scale` decimal places, if that needs no rounding.
    pub fn rescale(self, scale: u8) -> Option<Self> {
        if scale >= self.scale {
            let factor = 10i128.checked_pow(u32::from(scale - self.scale))?;
            return Some(Self {
                units: self.units.checked_mul(factor)?,
                scale,
            });
        }
        let factor = 10i128.checked_pow(u32::from(self.scale - scale))?;
        (self.units % factor == 0).then_some(Self {
            units: self.units / factor,
            scale,
        })
    }

    /// Number of significant integer digits, for precision checks.
    pub fn integer_digits(self) -> u32 {
        let int = self.units.unsigned_abs() / 10u128.pow(u32::from(self.scale));
        if int == 0 {
            0
        } else {
            int.ilog10() + 1
        }
    }
}

/// One SQL Server value, typed exactly enough that no conversion rounds.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Decimal(Decimal),
    Bit(bool),
    Text(String),
    Date(NaiveDate),
    /// datetime, smalldatetime, datetime2: a wall-clock time with no zone.
    DateTime(NaiveDateTime),
    DateTimeOffset(DateTime<FixedOffset>),
    Guid(Uuid),
    Binary(Vec<u8>),
    Float(f64),
}

/// Why a JSON value could not become a value of a SQL Server column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct ConversionError {
    pub expected: String,
    pub got: String,
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

impl SqlValue {
    /// The PostgREST JSON form. Exact: decimals keep every digit (serde_json's
    /// `arbitrary_precision`), binary becomes bytea hex input (`\x...`), naive times stay naive.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Int(i) => Value::from(*i),
            Self::Decimal(d) => exact_number(&d.to_string()),
            Self::Bit(b) => Value::Bool(*b),
            Self::Text(s) => Value::String(s.clone()),
            Self::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Self::DateTime(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
            Self::DateTimeOffset(t) => {
                Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f%:z").to_string())
            }
            Self::Guid(g) => Value::String(g.hyphenated().to_string()),
            Self::Binary(b) => Value::String(format!("\\x{}", hex::encode(b))),
            Self::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        }
    }

    /// Converts a JSON value (from a webhook or a PostgREST read) into a value for a column of
    /// type `ty`, refusing anything that would be truncated, rounded or reinterpreted.
    pub fn from_json(value: &Value, ty: &SqlType) -> Result<Self, ConversionError> {
        if value.is_null() {
            return Ok(Self::Null);
        }
        match ty {
            SqlType::Int { bits } => {
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
                    Ok(Self::Int(n))
                } else {
                    Err(mismatch(format!("an integer that fits {bits} bits"), value))
                }
            }
            SqlType::Decimal { precision, scale } => {
                decimal_from_json(value, *precision, *scale).map(Self::Decimal)
            }
            SqlType::Money => decimal_from_json(value, 19, 4).map(Self::Decimal),
            SqlType::Bit => value
                .as_bool()
                .map(Self::Bit)
                .ok_or_else(|| mismatch("a boolean", value)),
            SqlType::Text { max_chars, .. } => {
                let s = value.as_str().ok_or_else(|| mismatch("a string", value))?;
                match max_chars {
                    // SQL Server counts UTF-16 code units for nvarchar(n).
                    Some(max) if s.encode_utf16().count() > *max as usize => Err(mismatch(
                        format!("a string of at most {max} characters"),
                        value,
                    )),
                    _ => Ok(Self::Text(s.to_owned())),
                }
            }
            SqlType::Date => {
                let s = value.as_str().ok_or_else(|| mismatch("a date", value))?;
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(Self::Date)
                    .map_err(|_| mismatch("a date (YYYY-MM-DD)", value))
            }
            SqlType::DateTime | SqlType::DateTime2 { .. } => {
                let s = value
                    .as_str()
                    .ok_or_else(|| mismatch("a timestamp", value))?;
                let t = parse_naive(s)
                    .ok_or_else(|| mismatch("a timestamp without time zone", value))?;
                fits_scale(t.and_utc().timestamp_subsec_nanos(), ty, value)?;
                Ok(Self::DateTime(t))
            }
            SqlType::DateTimeOffset { .. } => {
                let s = value
                    .as_str()
                    .ok_or_else(|| mismatch("a timestamp", value))?;
                let t = DateTime::parse_from_rfc3339(s)
                    .map_err(|_| mismatch("a timestamp with time zone", value))?;
                fits_scale(t.timestamp_subsec_nanos(), ty, value)?;
                Ok(Self::DateTimeOffset(t))
            }
            SqlType::Guid => {
                let s = value.as_str().ok_or_else(|| mismatch("a uuid", value))?;
                Uuid::parse_str(s)
                    .map(Self::Guid)
                    .map_err(|_| mismatch("a uuid", value))
            }
            SqlType::Binary { max_bytes } => {
                let s = value
                    .as_str()
                    .ok_or_else(|| mismatch("bytea hex (\\x...)", value))?;
                let bytes = s
                    .strip_prefix("\\x")
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or_else(|| mismatch("bytea hex (\\x...)", value))?;
                match max_bytes {
                    Some(max) if bytes.len() > *max as usize => {
                        Err(mismatch(format!("at most {max} bytes"), value))
                    }
                    _ => Ok(Self::Binary(bytes)),
                }
            }
            SqlType::Float => value
                .as_f64()
                .map(Self::Float)
                .ok_or_else(|| mismatch("a number", value)),
            SqlType::Unsupported(name) => Err(mismatch(
                format!("a supported type (column is {name})"),
                value,
            )),
        }
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
    fn decimals_are_exact() {
        assert_eq!(dec("-12.340").to_string(), "-12.340");
        assert_eq!(dec("0.0001").to_string(), "0.0001");
        assert_eq!(
            dec("922337203685477.5807").to_string(),
            "922337203685477.5807"
        );
        assert_eq!(
            Decimal {
                units: -5,
                scale: 3
            }
            .to_string(),
            "-0.005"
        );
        let big = "12345678901234567890123456.789012345678";
        assert_eq!(dec(big).to_string(), big, "decimal(38) keeps every digit");
        assert_eq!(dec("1.50").rescale(4), Some(dec("1.5000")));
        assert_eq!(dec("1.555").rescale(2), None, "rescaling never rounds");
        assert_eq!(dec("12345.6").integer_digits(), 5);
        assert!(Decimal::parse("1e3").is_none());
        assert!(Decimal::parse("12a").is_none());
        assert!(Decimal::parse("").is_none());
    }

    #[test]
    fn money_round_trips_through_json_without_float() {
        let v = SqlValue::Decimal(dec("922337203685477.5807"));
        let j = v.to_json();
        assert_eq!(
            j.to_string(),
            "922337203685477.5807",
            "serialised as an exact JSON number"
        );
        assert_eq!(SqlValue::from_json(&j, &SqlType::Money), Ok(v));
        let parsed: serde_json::Value = serde_json::from_str("0.1").expect("json");
        assert_eq!(
            SqlValue::from_json(
                &parsed,
                &SqlType::Decimal {
                    precision: 5,
                    scale: 2
                }
            ),
            Ok(SqlValue::Decimal(dec("0.10")))
        );
        assert!(SqlValue::from_json(
            &json!(1.005),
            &SqlType::Decimal {
                precision: 5,
                scale: 2
            }
        )
        .is_err());
        assert!(SqlValue::from_json(
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
            SqlValue::from_json(&json!(kurdish), &ty),
            Ok(SqlValue::Text(kurdish.to_owned()))
        );
        let short = SqlType::Text {
            unicode: true,
            max_chars: Some(13),
        };
        assert!(
            SqlValue::from_json(&json!(kurdish), &short).is_err(),
            "the emoji is two UTF-16 units"
        );
        assert_eq!(SqlValue::Text(kurdish.to_owned()).to_json(), json!(kurdish));
    }

    #[test]
    fn times_keep_their_meaning() {
        let naive = SqlValue::from_json(
            &json!("2026-11-25T08:30:00.123"),
            &SqlType::DateTime2 { scale: 3 },
        )
        .expect("naive");
        assert_eq!(naive.to_json(), json!("2026-11-25T08:30:00.123"));
        let offset = SqlValue::from_json(
            &json!("2026-11-25T08:30:00.5+03:00"),
            &SqlType::DateTimeOffset { scale: 3 },
        )
        .expect("offset");
        assert_eq!(offset.to_json(), json!("2026-11-25T08:30:00.500+03:00"));
        assert!(SqlValue::from_json(
            &json!("2026-11-25T08:30:00+03:00"),
            &SqlType::DateTime2 { scale: 3 }
        )
        .is_err());
        assert!(
            SqlValue::from_json(
                &json!("2026-11-25T08:30:00.1234"),
                &SqlType::DateTime2 { scale: 3 }
            )
            .is_err(),
            "a fourth digit would be rounded away by datetime2(3)"
        );
        assert!(SqlValue::from_json(
            &json!("2026-11-25T08:30:00.123456"),
            &SqlType::DateTime2 { scale: 7 }
        )
        .is_ok());
        assert!(SqlValue::from_json(
            &json!("2026-11-25T08:30:00.5+03:00"),
            &SqlType::DateTimeOffset { scale: 0 }
        )
        .is_err());
        let date = SqlValue::from_json(&json!("2026-02-28"), &SqlType::Date).expect("date");
        assert_eq!(date.to_json(), json!("2026-02-28"));
        assert!(SqlValue::from_json(&json!("2026-02-30"), &SqlType::Date).is_err());
    }

    #[test]
    fn other_types() {
        let g = SqlValue::from_json(
            &json!("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            &SqlType::Guid,
        )
        .expect("guid");
        assert_eq!(g.to_json(), json!("6f9619ff-8b86-d011-b42d-00c04fc964ff"));
        let bin = SqlValue::Binary(vec![0, 1, 0xfe, 0xff]);
        assert_eq!(bin.to_json(), json!("\\x0001feff"));
        assert_eq!(
            SqlValue::from_json(
                &json!("\\x0001feff"),
                &SqlType::Binary { max_bytes: Some(4) }
            ),
            Ok(bin)
        );
        assert!(SqlValue::from_json(
            &json!("\\x0001feff"),
            &SqlType::Binary { max_bytes: Some(3) }
        )
        .is_err());
        assert_eq!(
            SqlValue::from_json(&json!(true), &SqlType::Bit),
            Ok(SqlValue::Bit(true))
        );
        assert!(SqlValue::from_json(&json!(1), &SqlType::Bit).is_err());
        assert!(SqlValue::from_json(&json!(256), &SqlType::Int { bits: 8 }).is_err());
        assert!(
            SqlValue::from_json(&json!(2_147_483_648_i64), &SqlType::Int { bits: 32 }).is_err()
        );
        assert_eq!(
            SqlValue::from_json(&json!(null), &SqlType::Int { bits: 32 }),
            Ok(SqlValue::Null)
        );
        assert!(SqlValue::from_json(&json!("<x/>"), &SqlType::Unsupported("xml".into())).is_err());
    }
}
