//! Rows digested for `verify`, in the canonical form `crate::mapping::canonical` gives values
//! (equal when the sync considers them equal), from typed values on both sides: SQL Server's
//! rows as the forward path reads them, Supabase's decoded as the reverse path decodes them (by
//! the SQL Server column's type), so nothing depends on how either server formats text.
//!
//! A row's digest covers its key and every compared column; a range's summary is the number of
//! rows and the wrapping sum of their digests, so it does not depend on the order either side
//! returns rows in (SQL Server orders uniqueidentifier and collated text differently from
//! PostgreSQL).

use sha2::{Digest, Sha256};

use crate::mapping::canonical::encode;
pub(crate) use crate::mapping::canonical::same;
use crate::mapping::ResolvedTable;
use crate::sqlserver::{Row, SqlValue};

/// Number of key-hash ranges per table: with 1,000,000 rows about 250 rows a range, so one
/// changed row costs one range of rows in the second pass.
pub(crate) const RANGES: usize = 4096;

/// The canonical bytes of `row`'s key.
pub(crate) fn key_bytes(table: &ResolvedTable, row: &Row) -> Vec<u8> {
    let mut out = Vec::new();
    for c in table.key_columns() {
        encode(row.get(&c.source.name).unwrap_or(&SqlValue::Null), &mut out);
    }
    out
}

/// The key-hash range of a key.
pub(crate) fn range_of(key: &[u8]) -> usize {
    let h = Sha256::digest(key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(first) % RANGES as u64) as usize
}

/// The digest of a row: its key and every compared column, by name.
pub(crate) fn row_digest(table: &ResolvedTable, key: &[u8], row: &Row) -> u128 {
    let mut buf = key.to_vec();
    for c in &table.columns {
        buf.extend_from_slice(c.target.as_bytes());
        encode(row.get(&c.source.name).unwrap_or(&SqlValue::Null), &mut buf);
    }
    let h = Sha256::digest(&buf);
    let mut first = [0u8; 16];
    first.copy_from_slice(&h[..16]);
    u128::from_be_bytes(first)
}

/// One side's summary of a range: how many rows, and the wrapping sum of their digests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RangeSum {
    pub(crate) rows: u64,
    pub(crate) sum: u128,
}

impl RangeSum {
    pub(crate) fn add(&mut self, digest: u128) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_sum_does_not_depend_on_the_order_of_rows() {
        let (mut a, mut b) = (RangeSum::default(), RangeSum::default());
        for d in [u128::MAX, 3, 5] {
            a.add(d);
        }
        for d in [5, u128::MAX, 3] {
            b.add(d);
        }
        assert_eq!(a, b);
        b.add(1);
        assert_ne!(a, b);
    }
}
