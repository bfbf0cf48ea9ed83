//! SQL Server's value model: the declared type of a column ([`SqlType`]), one typed value
//! ([`SqlValue`]) and the exact decimal behind money and numeric ([`Decimal`]). Knows nothing of
//! JSON: converting to and from PostgREST's JSON is `mapping::json`'s job.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
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
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
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

/// One row read from SQL Server: source column name → value.
pub type Row = BTreeMap<String, SqlValue>;

/// One SQL Server value, typed exactly enough that no conversion rounds.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
