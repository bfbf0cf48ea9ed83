//! Reading one mapped table from both sides, a page at a time, each in its own key order:
//! SQL Server through [`SqlStore::read_page`], Supabase through PostgREST's keyset pages. The
//! first pass keeps only a summary per key-hash range; the second keeps the rows of the
//! ranges that differ, and compares them column by column.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::digest::{key_bytes, range_of, row_digest, same, RangeSum, RANGES};
use crate::mapping::json::from_json;
use crate::mapping::ResolvedTable;
use crate::sqlserver::{KeyPage, RecordKey, Row, SqlStore, SqlValue, StoreError};
use crate::supabase::{JsonRow, PageRequest, PostgrestError, SupabaseApi};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("SQL Server: {0}")]
    Store(#[from] StoreError),
    #[error("Supabase: {0}")]
    Supabase(#[from] PostgrestError),
}

/// Both sides of the sync, and how many rows to read per request.
pub(crate) struct Sides<'a> {
    pub(crate) store: &'a dyn SqlStore,
    pub(crate) supabase: &'a dyn SupabaseApi,
    pub(crate) page: usize,
}

/// One difference between the sides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Difference {
    /// In SQL Server only.
    MissingInSupabase { key: RecordKey },
    /// In Supabase only: its row as PostgREST returned it.
    MissingInSqlServer { key: RecordKey, record: JsonRow },
    /// On both sides, with these (Supabase) columns different.
    Differs {
        key: RecordKey,
        columns: Vec<String>,
        record: JsonRow,
    },
}

/// A Supabase row decoded column by column by the SQL Server column's type; a value SQL Server
/// could not hold becomes a text that matches nothing, so it shows up as that column differing.
fn decode(table: &ResolvedTable, record: &JsonRow) -> Row {
    table
        .columns
        .iter()
        .map(|c| {
            let json = record.get(&c.target).unwrap_or(&Value::Null);
            let value = from_json(json, &c.source.sql_type)
                .unwrap_or_else(|e| SqlValue::Text(format!("\u{0}undecodable {json}: {e}")));
            (c.source.name.clone(), value)
        })
        .collect()
}

impl Sides<'_> {
    /// Calls `visit` with every SQL Server row of `table`; returns how many.
    async fn sql_rows(
        &self,
        table: &ResolvedTable,
        mut visit: impl FnMut(Row),
    ) -> Result<u64, ScanError> {
        let columns = table.source_columns();
        let mut page = KeyPage {
            table: table.source().to_owned(),
            keys: super::super::mapped::key_columns(table),
            after: None,
            limit: self.page,
        };
        let mut n = 0;
        loop {
            let rows = self.store.read_page(&page, &columns).await?;
            let full = rows.len() >= self.page;
            page.after = rows.last().and_then(|r| table.key_of_row(r));
            n += rows.len() as u64;
            rows.into_iter().for_each(&mut visit);
            if !full || page.after.is_none() {
                return Ok(n);
            }
        }
    }

    /// Calls `visit` with every Supabase row of `table` (decoded, and as it came).
    async fn supabase_rows(
        &self,
        table: &ResolvedTable,
        mut visit: impl FnMut(Row, JsonRow),
    ) -> Result<u64, ScanError> {
        let order = table.on_conflict();
        let mut page = PageRequest {
            order: order.clone(),
            after: Vec::new(),
            since: None,
            limit: self.page,
        };
        let mut n = 0;
        loop {
            let rows = self.supabase.select_page(&table.target, &page).await?;
            let full = rows.len() >= self.page;
            if let Some(last) = rows.last() {
                page.after = order
                    .iter()
                    .map(|c| (c.clone(), last.get(c).cloned().unwrap_or(Value::Null)))
                    .collect();
            }
            n += rows.len() as u64;
            for record in rows {
                visit(decode(table, &record), record);
            }
            if !full {
                return Ok(n);
            }
        }
    }

    /// First pass: each side's row count and per-range summaries.
    pub(crate) async fn summarise(
        &self,
        table: &ResolvedTable,
    ) -> Result<(u64, u64, BTreeSet<usize>), ScanError> {
        let mut sql = vec![RangeSum::default(); RANGES];
        let mut supa = vec![RangeSum::default(); RANGES];
        let sql_rows = self
            .sql_rows(table, |row| {
                let key = key_bytes(table, &row);
                sql[range_of(&key)].add(row_digest(table, &key, &row));
            })
            .await?;
        let supa_rows = self
            .supabase_rows(table, |row, _| {
                let key = key_bytes(table, &row);
                supa[range_of(&key)].add(row_digest(table, &key, &row));
            })
            .await?;
        let differing = (0..RANGES).filter(|&i| sql[i] != supa[i]).collect();
        Ok((sql_rows, supa_rows, differing))
    }

    /// Second pass: the rows of the `differing` ranges, compared.
    pub(crate) async fn differences(
        &self,
        table: &ResolvedTable,
        differing: &BTreeSet<usize>,
    ) -> Result<Vec<Difference>, ScanError> {
        let mut sql: BTreeMap<Vec<u8>, Row> = BTreeMap::new();
        let mut supa: BTreeMap<Vec<u8>, (Row, JsonRow)> = BTreeMap::new();
        self.sql_rows(table, |row| {
            let key = key_bytes(table, &row);
            if differing.contains(&range_of(&key)) {
                sql.insert(key, row);
            }
        })
        .await?;
        self.supabase_rows(table, |row, record| {
            let key = key_bytes(table, &row);
            if differing.contains(&range_of(&key)) {
                supa.insert(key, (row, record));
            }
        })
        .await?;
        Ok(compare(table, sql, supa))
    }
}

fn compare(
    table: &ResolvedTable,
    sql: BTreeMap<Vec<u8>, Row>,
    mut supa: BTreeMap<Vec<u8>, (Row, JsonRow)>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let key_of = |row: &Row| {
        table
            .key_of_row(row)
            .unwrap_or_else(|| RecordKey(BTreeMap::new()))
    };
    for (bytes, row) in sql {
        match supa.remove(&bytes) {
            None => out.push(Difference::MissingInSupabase { key: key_of(&row) }),
            Some((theirs, record)) => {
                let columns: Vec<String> = table
                    .columns
                    .iter()
                    .filter(|c| {
                        let null = SqlValue::Null;
                        let a = row.get(&c.source.name).unwrap_or(&null);
                        let b = theirs.get(&c.source.name).unwrap_or(&null);
                        !same(a, b)
                    })
                    .map(|c| c.target.clone())
                    .collect();
                if !columns.is_empty() {
                    out.push(Difference::Differs {
                        key: key_of(&row),
                        columns,
                        record,
                    });
                }
            }
        }
    }
    for (_, (row, record)) in supa {
        out.push(Difference::MissingInSqlServer {
            key: key_of(&row),
            record,
        });
    }
    out
}
