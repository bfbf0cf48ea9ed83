//! The double's keyset pages (`backfill_page`, `read_page`) and `queue_records`: the rows of a
//! table in key order, as SQL Server's `ORDER BY` over the key columns gives them (for the
//! double: integers numerically, text by code point).

use std::cmp::Ordering;
use std::ops::Bound;

use super::{MemoryStore, State};
use crate::sqlserver::{
    ordered_parts, trigger_record_id, Enqueued, KeyPage, KeyPart, RecordKey, Row, SourceColumn,
    SqlValue, StoreError, TableName,
};

/// The operation backfill and verify queue: the worker loads the record either way.
const OPERATION: &str = "UPDATE";

fn compare(a: &[&KeyPart], b: &[&KeyPart]) -> Ordering {
    a.iter().cmp(b.iter())
}

/// The keys and rows of `page`, in key order.
fn page_rows(s: &State, page: &KeyPage) -> Result<(String, Vec<(RecordKey, Row)>), StoreError> {
    let wanted = TableName::parse(&page.table).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let (name, table) = s
        .tables
        .iter()
        .find(|(name, _)| wanted.is(name))
        .ok_or_else(|| StoreError::Invalid(format!("Invalid object name '{}'.", page.table)))?;
    let after =
        match &page.after {
            Some(key) => Some(ordered_parts(key, &page.keys).ok_or_else(|| {
                StoreError::Invalid(format!("{key} does not name the key columns"))
            })?),
            None => None,
        };
    // One key column, named as the stored keys name it: the map's own order is the key order,
    // and the page starts right after `after`.
    let same_names = |k: &RecordKey| {
        table
            .rows
            .keys()
            .next()
            .is_none_or(|stored| stored.0.keys().eq(k.0.keys()))
    };
    if page.keys.len() == 1 && page.after.as_ref().is_none_or(same_names) {
        let start = page
            .after
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let rows = table
            .rows
            .range((start, Bound::Unbounded))
            .take(page.limit)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        return Ok((name.clone(), rows));
    }
    let mut rows: Vec<(Vec<&KeyPart>, &RecordKey, &Row)> = table
        .rows
        .iter()
        .filter_map(|(key, row)| Some((ordered_parts(key, &page.keys)?, key, row)))
        .filter(|(parts, _, _)| {
            after
                .as_ref()
                .is_none_or(|a| compare(parts, a) == Ordering::Greater)
        })
        .collect();
    rows.sort_by(|a, b| compare(&a.0, &b.0));
    let rows = rows
        .into_iter()
        .take(page.limit)
        .map(|(_, k, r)| (k.clone(), r.clone()))
        .collect();
    Ok((name.clone(), rows))
}

impl MemoryStore {
    pub(super) fn backfill(&self, page: &KeyPage) -> Result<Enqueued, StoreError> {
        let mut s = self.guard("backfill_page")?;
        let (_, rows) = page_rows(&s, page)?;
        let mut last = None;
        for (key, _) in &rows {
            let id = trigger_record_id(key, &page.keys).unwrap_or_else(|| key.to_json());
            Self::enqueue(&mut s, &page.table, &id, OPERATION, None);
            last = Some(key.clone());
        }
        Ok(Enqueued {
            enqueued: rows.len() as u64,
            last,
        })
    }

    pub(super) fn page(
        &self,
        page: &KeyPage,
        columns: &[SourceColumn],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.guard("read_page")?;
        let (_, rows) = page_rows(&s, page)?;
        Ok(rows
            .into_iter()
            .map(|(_, row)| {
                columns
                    .iter()
                    .map(|c| {
                        let v = row.get(&c.name).cloned().unwrap_or(SqlValue::Null);
                        (c.name.clone(), v)
                    })
                    .collect()
            })
            .collect())
    }

    pub(super) fn queue_keys(
        &self,
        table: &str,
        key_columns: &[String],
        records: &[RecordKey],
        unless_newer_than: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<u64, StoreError> {
        let mut s = self.guard("queue_records")?;
        let ids = records
            .iter()
            .map(|k| {
                trigger_record_id(k, key_columns).ok_or_else(|| {
                    StoreError::Invalid(format!("{k} does not name the key columns"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut queued = 0;
        for id in &ids {
            let waiting = s
                .by_record
                .get(&(table.to_owned(), id.clone()))
                .is_some_and(|same| {
                    same.iter().any(|i| {
                        s.queue.get(i).is_some_and(|q| {
                            (q.status == "Pending" && q.claim.is_none())
                                || unless_newer_than.is_some_and(|t| q.created_at > t)
                        })
                    })
                });
            if !waiting {
                Self::enqueue(&mut s, table, id, OPERATION, None);
                queued += 1;
            }
        }
        Ok(queued)
    }
}
