//! Values in one canonical form, equal when the sync considers them equal, computed from typed
//! values: SQL Server's as the forward path reads them, Supabase's decoded by the SQL Server
//! column's type (`json::from_json`), as the reverse path decodes them. `verify` digests rows
//! in it; the reverse path compares a record's clinic-owned columns with SQL Server's in it.
//! - decimals and money by value (trailing zeros do not count);
//! - `datetime`/`datetime2` and `datetimeoffset` at PostgreSQL's precision (microseconds,
//!   rounded half to even as PostgreSQL rounds input), and `datetimeoffset` as its instant
//!   (Supabase's `timestamptz` keeps the instant, not the offset);
//! - uuids as their 16 bytes (case never counts), binary and text byte for byte, floats by bit
//!   pattern (with -0 as 0).

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::sqlserver::{Decimal, SqlValue};

/// Nanoseconds rounded to microseconds, half to even.
fn micros(whole_secs: i64, nanos: u32) -> i64 {
    let (mut us, rem) = (i64::from(nanos / 1000), nanos % 1000);
    if rem > 500 || (rem == 500 && us % 2 == 1) {
        us += 1;
    }
    whole_secs * 1_000_000 + us
}

fn naive_micros(t: &NaiveDateTime) -> i64 {
    let utc = t.and_utc();
    micros(utc.timestamp(), t.nanosecond())
}

/// The decimal's digits without trailing fractional zeros: 1.5000 and 1.5 are one value.
fn decimal_text(d: &Decimal) -> String {
    let text = d.to_string();
    if !text.contains('.') {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Appends `value`'s canonical bytes (a tag, then the value) to `out`.
pub(crate) fn encode(value: &SqlValue, out: &mut Vec<u8>) {
    let bytes = |out: &mut Vec<u8>, tag: u8, b: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    };
    match value {
        SqlValue::Null => out.push(0),
        SqlValue::Int(i) => bytes(out, 1, &i.to_be_bytes()),
        SqlValue::Decimal(d) => bytes(out, 2, decimal_text(d).as_bytes()),
        SqlValue::Bit(b) => bytes(out, 3, &[u8::from(*b)]),
        SqlValue::Text(s) => bytes(out, 4, s.as_bytes()),
        SqlValue::Date(d) => bytes(out, 5, &d.num_days_from_ce().to_be_bytes()),
        SqlValue::DateTime(t) => bytes(out, 6, &naive_micros(t).to_be_bytes()),
        SqlValue::DateTimeOffset(t) => {
            let us = micros(t.timestamp(), t.timestamp_subsec_nanos());
            bytes(out, 7, &us.to_be_bytes());
        }
        SqlValue::Guid(g) => bytes(out, 8, g.as_bytes()),
        SqlValue::Binary(b) => bytes(out, 9, b),
        SqlValue::Float(f) => {
            let f = if *f == 0.0 { 0.0 } else { *f };
            bytes(out, 10, &f.to_bits().to_be_bytes());
        }
    }
}

/// Whether two values are equal in the canonical form.
pub(crate) fn same(a: &SqlValue, b: &SqlValue) -> bool {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    encode(a, &mut x);
    encode(b, &mut y);
    x == y
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;

    fn offset(s: &str) -> SqlValue {
        SqlValue::DateTimeOffset(chrono::DateTime::parse_from_rfc3339(s).expect("timestamp"))
    }

    fn naive(s: &str) -> SqlValue {
        SqlValue::DateTime(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").expect("timestamp"),
        )
    }

    #[test]
    fn values_equal_to_the_sync_encode_alike_and_others_do_not() {
        let dec = |s: &str| SqlValue::Decimal(Decimal::parse(s).expect("decimal"));
        assert!(same(&dec("1.5000"), &dec("1.5")));
        assert!(same(&dec("100"), &dec("100.00")));
        assert!(!same(&dec("100"), &dec("10")));
        assert!(!same(&dec("1.5001"), &dec("1.5")));
        assert!(same(
            &offset("2026-11-25T09:30:00.250+03:00"),
            &offset("2026-11-25T06:30:00.25+00:00")
        ));
        assert!(!same(
            &offset("2026-11-25T09:30:00.250+03:00"),
            &offset("2026-11-25T09:30:00.250+00:00")
        ));
        // datetime2(7)'s 100 ns digit, as PostgreSQL rounds it (half to even).
        assert!(same(
            &naive("2026-11-25T08:30:00.1234565"),
            &naive("2026-11-25T08:30:00.123456")
        ));
        assert!(same(
            &naive("2026-11-25T08:30:00.1234575"),
            &naive("2026-11-25T08:30:00.123458")
        ));
        assert!(!same(
            &naive("2026-11-25T08:30:00.123"),
            &naive("2026-11-25T08:30:00.124")
        ));
        let g = uuid::Uuid::from_u128(7);
        assert!(same(&SqlValue::Guid(g), &SqlValue::Guid(g)));
        assert!(!same(
            &SqlValue::Text("a".into()),
            &SqlValue::Text("A".into())
        ));
        assert!(!same(&SqlValue::Text("1".into()), &SqlValue::Int(1)));
        assert!(!same(&SqlValue::Null, &SqlValue::Text(String::new())));
        assert!(same(&SqlValue::Float(-0.0), &SqlValue::Float(0.0)));
        assert!(!same(
            &SqlValue::Binary(vec![0]),
            &SqlValue::Binary(vec![0, 0])
        ));
    }
}
