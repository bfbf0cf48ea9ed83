//! The double's [`SqlStore`] implementation: the queue semantics of `sql/sqlserver/02` and the
//! writes of the tiberius store, in memory.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use uuid::Uuid;

use super::triggers::Origin;
use super::{guard_key_of, MemQueueRow, MemoryStore, State};
use crate::sqlserver::SqlValue;
use crate::sqlserver::*;

fn due(q: &MemQueueRow, now: Instant) -> bool {
    q.status == "Pending" && q.open_tx.is_none() && q.next_attempt_at <= now
}

/// Whether `write`'s guard holds it back: a `Pending` queue item of its record (committed or
/// not: SQL Server's check waits for an open writer) created after the guard's time.
fn newer_clinic_edit(s: &State, write: &ReverseWrite, key: &RecordKey) -> bool {
    let (Some(newer_than), Ok(table)) = (write.guard, TableName::parse(&write.table)) else {
        return false;
    };
    let wanted = guard_key_of(&table, key);
    s.by_guard_key.get(&wanted).is_some_and(|ids| {
        ids.iter().any(|id| {
            s.queue
                .get(id)
                .is_some_and(|q| q.status == "Pending" && q.created_at > newer_than)
        })
    })
}

/// The double's own name for `table`, however it is spelled (`dbo.x`, `[dbo].[X]`, ...), as SQL
/// Server resolves a name under a case-insensitive collation.
fn declared(s: &State, table: &str) -> Option<String> {
    let wanted = TableName::parse(table).ok()?;
    s.tables.keys().find(|name| wanted.is(name)).cloned()
}

fn differs(row: &Row, values: &[(String, SqlValue)]) -> bool {
    values
        .iter()
        .any(|(c, v)| row.get(c).unwrap_or(&SqlValue::Null) != v)
}

#[async_trait]
impl SqlStore for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.guard("ping").map(drop)
    }

    async fn describe_table(&self, table: &str) -> Result<Option<Vec<SourceColumn>>, StoreError> {
        let s = self.guard("describe_table")?;
        Ok(declared(&s, table).and_then(|name| s.tables.get(&name).map(|t| t.columns.clone())))
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<QueueItem>, StoreError> {
        self.run_claim_hooks();
        let mut guard = self.guard("claim")?;
        let s = &mut *guard;
        let now = Instant::now();
        let token = Uuid::new_v4();
        let mut first = Vec::new();
        let mut gone = Vec::new();
        for &id in &s.pending_ids {
            match s.queue.get(&id) {
                Some(q) if q.status == "Pending" => {
                    if due(q, now) {
                        first.push(id);
                        if first.len() == limit {
                            break;
                        }
                    }
                }
                _ => gone.push(id),
            }
        }
        for id in gone {
            s.pending_ids.remove(&id);
        }
        // The same records' other due items, so they coalesce.
        let mut ids: BTreeSet<i64> = BTreeSet::new();
        for id in &first {
            let Some(q) = s.queue.get(id) else { continue };
            if let Some(same) = s.by_record.get(&(q.table.clone(), q.record_id.clone())) {
                ids.extend(
                    same.iter()
                        .filter(|i| s.queue.get(i).is_some_and(|q| due(q, now))),
                );
            }
        }
        let agent = self.agent_id.clone();
        let mut items = Vec::new();
        for id in ids {
            let Some(q) = s.queue.get_mut(&id) else {
                continue;
            };
            q.claim = Some(token);
            q.claimed_by = Some(agent.clone());
            q.next_attempt_at = now + lease;
            items.push(QueueItem {
                id: QueueId(q.id),
                table: q.table.clone(),
                record_id: q.record_id.clone(),
                operation: q.operation.clone(),
                attempts: q.attempts,
                claim: ClaimToken(token),
                created_at: q.created_at,
            });
        }
        Ok(items)
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<(), StoreError> {
        let mut s = self.guard("settle")?;
        let now = Instant::now();
        for item in items {
            let Some(q) = s.queue.get_mut(&item.id.0) else {
                continue;
            };
            if q.claim != Some(item.claim.0) {
                continue;
            }
            q.claim = None;
            match &item.outcome {
                Settlement::Synced => {
                    q.status = "Synced".to_owned();
                    q.last_error = None;
                }
                Settlement::Retry { delay, error } => {
                    q.attempts += 1;
                    q.last_error = Some(error.clone());
                    q.next_attempt_at = now + *delay;
                }
                Settlement::Failed { error } => {
                    q.attempts += 1;
                    q.status = "Failed".to_owned();
                    q.last_error = Some(error.clone());
                }
                Settlement::Release { delay, error } => {
                    q.next_attempt_at = now + *delay;
                    if let Some(e) = error {
                        q.last_error = Some(e.clone());
                    }
                }
            }
        }
        Ok(())
    }

    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        let s = self.guard("next_due_in")?;
        let now = Instant::now();
        Ok(s.queue
            .values()
            .filter(|q| q.status == "Pending" && q.open_tx.is_none())
            .map(|q| q.next_attempt_at.saturating_duration_since(now))
            .min())
    }

    async fn wait_for_writers(&self, max_wait: Duration) -> Result<WriterWait, StoreError> {
        let waiting = {
            let s = self.guard("wait_for_writers")?;
            let now = Instant::now();
            let locked = s
                .queue
                .values()
                .any(|q| q.status == "Pending" && q.open_tx.is_some() && q.next_attempt_at <= now);
            // Register interest before releasing the lock so a commit in between is not missed.
            locked.then(|| self.tx_ended.notified())
        };
        match waiting {
            None => Ok(WriterWait::Idle),
            Some(ended) => {
                let _ = tokio::time::timeout(max_wait, ended).await;
                Ok(WriterWait::Waited)
            }
        }
    }

    async fn release_own_claims(&self) -> Result<u64, StoreError> {
        let mut s = self.guard("release_own_claims")?;
        let now = Instant::now();
        let agent = self.agent_id.clone();
        let mut n = 0;
        for q in s.queue.values_mut() {
            if q.status == "Pending" && q.claim.is_some() && q.claimed_by.as_deref() == Some(&agent)
            {
                q.claim = None;
                q.next_attempt_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let s = self.guard("queue_stats")?;
        let count = |status: &str| {
            s.queue
                .values()
                .filter(|q| q.status == status && q.open_tx.is_none())
                .count() as u64
        };
        Ok(QueueStats {
            pending: count("Pending"),
            synced: count("Synced"),
            failed: count("Failed"),
            oldest_pending_age_secs: s
                .queue
                .values()
                .find(|q| q.status == "Pending" && q.open_tx.is_none())
                .map(|_| 0),
        })
    }

    async fn unsettled_in(&self, tables: &[String]) -> Result<bool, StoreError> {
        let s = self.guard("unsettled_in")?;
        let names: Vec<TableName> = tables
            .iter()
            .filter_map(|t| TableName::parse(t).ok())
            .collect();
        // Only committed rows: SQL Server's READPAST skips what an open writer holds.
        Ok(s.pending_ids.iter().any(|id| {
            s.queue.get(id).is_some_and(|q| {
                q.status == "Pending" && q.open_tx.is_none() && names.iter().any(|n| n.is(&q.table))
            })
        }))
    }

    async fn retry_failed(&self, filter: &RetryFilter) -> Result<u64, StoreError> {
        let mut s = self.guard("retry_failed")?;
        let now = Instant::now();
        let mut n = 0;
        let mut revived = Vec::new();
        for q in s.queue.values_mut() {
            // TableName compares as under SQL Server's default, case-insensitive collation.
            let table = filter
                .table
                .as_ref()
                .is_none_or(|t| t.eq_ignore_ascii_case(&q.table));
            let id = filter.id.is_none_or(|id| id.0 == q.id);
            if q.status == "Failed" && q.open_tx.is_none() && table && id {
                revived.push(q.id);
                q.status = "Pending".to_owned();
                q.attempts = 0;
                q.next_attempt_at = now;
                q.claim = None;
                q.claimed_by = None;
                n += 1;
            }
        }
        s.pending_ids.extend(revived);
        Ok(n)
    }

    async fn recent_failures(&self, limit: usize) -> Result<Vec<FailedItem>, StoreError> {
        let s = self.guard("recent_failures")?;
        Ok(s.queue
            .values()
            .rev()
            .filter(|q| q.status == "Failed" && q.open_tx.is_none())
            .take(limit)
            .map(|q| FailedItem {
                id: QueueId(q.id),
                table: q.table.clone(),
                record_id: q.record_id.clone(),
                operation: q.operation.clone(),
                attempts: q.attempts,
                error: q.last_error.clone(),
                last_attempt: None,
            })
            .collect())
    }

    async fn setup_report(&self) -> Result<SetupReport, StoreError> {
        let s = self.guard("setup_report")?;
        if let Some(setup) = &s.setup {
            return Ok(setup.clone());
        }
        // The double emulates the triggers on every table it has, and a notifier that works.
        Ok(SetupReport {
            ole_automation: true,
            notify_url: Some("http://127.0.0.1:3000/api/sync/queue-notify".to_owned()),
            tables_with_trigger: s.tables.keys().map(|t| format!("dbo.{t}")).collect(),
        })
    }

    async fn load_rows(
        &self,
        table: &str,
        columns: &[SourceColumn],
        keys: &[RecordKey],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.guard("load_rows")?;
        let t = declared(&s, table)
            .and_then(|name| s.tables.get(&name))
            .ok_or_else(|| StoreError::Misconfigured(format!("Invalid object name '{table}'.")))?;
        Ok(keys
            .iter()
            .filter_map(|k| t.rows.get(k))
            .map(|row| {
                columns
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            row.get(&c.name).cloned().unwrap_or(SqlValue::Null),
                        )
                    })
                    .collect()
            })
            .collect())
    }

    async fn apply(&self, write: &ReverseWrite) -> Result<WriteOutcome, StoreError> {
        let mut s = self.guard("apply")?;
        s.applies += 1;
        if s.reject_applies > 0 {
            s.reject_applies -= 1;
            return Err(StoreError::Rejected(
                "The INSERT statement conflicted with a constraint (memory double).".to_owned(),
            ));
        }
        let name = declared(&s, &write.table).ok_or_else(|| {
            StoreError::Misconfigured(format!("Invalid object name '{}'.", write.table))
        })?;
        let table = &s.tables[&name];
        let key = RecordKey(
            write
                .key
                .iter()
                .map(|(c, v)| {
                    let part = match v {
                        SqlValue::Int(i) => KeyPart::Int(*i),
                        SqlValue::Guid(g) => {
                            KeyPart::Text(g.hyphenated().to_string().to_uppercase())
                        }
                        SqlValue::Text(t) => KeyPart::Text(t.clone()),
                        other => KeyPart::Text(format!("{other:?}")),
                    };
                    (c.clone(), part)
                })
                .collect(),
        );
        let exists = table.rows.contains_key(&key);
        if exists
            && !matches!(write.action, WriteAction::Delete)
            && newer_clinic_edit(&s, write, &key)
        {
            return Ok(WriteOutcome::Guarded);
        }
        let table = &s.tables[&name];
        // The agent's session is marked with SESSION_CONTEXT: the change trigger skips these
        // writes themselves, not what the clinic's own triggers do because of them.
        let (outcome, written) = match (&write.action, table.rows.get(&key)) {
            (WriteAction::Delete, Some(_)) => (WriteOutcome::Deleted, Some(None)),
            (WriteAction::Delete, None) => (WriteOutcome::Missing, None),
            (
                WriteAction::Upsert { update, .. } | WriteAction::UpdateOnly { update },
                Some(row),
            ) => {
                if differs(row, update) {
                    let mut row = row.clone();
                    row.extend(update.iter().cloned());
                    (WriteOutcome::Updated, Some(Some(row)))
                } else {
                    (WriteOutcome::Unchanged, None)
                }
            }
            (WriteAction::UpdateOnly { .. }, None) => (WriteOutcome::Missing, None),
            (WriteAction::Upsert { insert, .. }, None) => {
                let mut row: Row = table
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), SqlValue::Null))
                    .collect();
                row.extend(insert.iter().cloned());
                (WriteOutcome::Inserted, Some(Some(row)))
            }
        };
        if let Some(row) = written {
            Self::write_row(&mut s, &name, &key, row, None, Origin::AGENT);
        }
        if !matches!(
            outcome,
            WriteOutcome::Unchanged | WriteOutcome::Missing | WriteOutcome::Guarded
        ) {
            s.writes += 1;
        }
        Ok(outcome)
    }

    async fn backfill_page(&self, page: &KeyPage) -> Result<Enqueued, StoreError> {
        self.backfill(page)
    }

    async fn read_page(
        &self,
        page: &KeyPage,
        columns: &[SourceColumn],
    ) -> Result<Vec<Row>, StoreError> {
        self.page(page, columns)
    }

    async fn queue_records(
        &self,
        table: &str,
        key_columns: &[String],
        records: &[RecordKey],
        unless_newer_than: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<u64, StoreError> {
        self.queue_keys(table, key_columns, records, unless_newer_than)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
