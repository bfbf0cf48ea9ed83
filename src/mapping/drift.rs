//! Schema drift: a column that one side has and the other does not (added in SQL Server, dropped
//! or added in Supabase). Such a column is not synced and never stops sync; it is reported once
//! per (table, column) in the log, and listed by `GET /api/sync/status` and `syncbridge check`.
//! [`Drift`] is one such column; [`DriftLog`] remembers what was reported.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

/// The side a drifted column exists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Side {
    SqlServer,
    Supabase,
}

/// A column that exists on one side only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct Drift {
    /// The Supabase table.
    pub(crate) table: String,
    /// The SQL Server table, as the table map names it.
    pub(crate) source_table: String,
    /// The column as the side that has it names it.
    pub(crate) column: String,
    pub(crate) only_in: Side,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.only_in {
            Side::SqlServer => write!(
                f,
                "{}.{} exists in SQL Server only (Supabase {} has no such column): not synced",
                self.source_table, self.column, self.table
            ),
            Side::Supabase => write!(
                f,
                "{}.{} exists in Supabase only (SQL Server {} has no such column): not synced",
                self.table, self.column, self.source_table
            ),
        }
    }
}

/// Every drift reported since the agent started; each is logged the first time only.
#[derive(Debug, Default)]
pub(crate) struct DriftLog {
    seen: Mutex<BTreeSet<Drift>>,
}

impl DriftLog {
    /// Records `drift`, logging what was not reported before.
    pub(crate) fn report<'a>(&self, drift: impl IntoIterator<Item = &'a Drift>) {
        let mut seen = self.lock();
        for d in drift {
            if seen.insert(d.clone()) {
                tracing::warn!(table = %d.table, column = %d.column, only_in = ?d.only_in, "schema drift: {d}");
            }
        }
    }

    /// What was reported, in (table, column) order.
    pub(crate) fn snapshot(&self) -> Vec<Drift> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<Drift>> {
        // A set of reported columns stays meaningful even if a panicking thread held the lock.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_is_kept_once_and_described_by_its_side() {
        let phone = Drift {
            table: "patients".into(),
            source_table: "tblPatients".into(),
            column: "Phone".into(),
            only_in: Side::SqlServer,
        };
        let log = DriftLog::default();
        log.report([&phone, &phone]);
        log.report([&phone]);
        assert_eq!(log.snapshot(), std::slice::from_ref(&phone));
        assert_eq!(
            phone.to_string(),
            "tblPatients.Phone exists in SQL Server only (Supabase patients has no such column): not synced"
        );
    }
}
