//! The queue checks: what the forward worker relies on from `claim`, `settle`, `next_due_in`,
//! `wait_for_writers` and `unsettled_in`, checked through the [`SqlStore`] trait on a [`QueueBench`]. On SQL
//! Server the bench is two agent stores (two connection pools) over the scratch queue; the
//! same checks run against the in-memory double in this module's tests, so the double and the
//! server are held to one definition.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use super::report::{CheckResult, Failure, Group, Report};
use crate::sqlserver::{ClaimToken, QueueItem, SettleItem, Settlement, SqlStore, WriterWait};

/// The table name the queue checks' items carry; their RecordIDs are `{"N":<n>}`.
pub(crate) const TABLE: &str = "selftest";
const LEASE: Duration = Duration::from_secs(60);

/// An open writer transaction that has queued an item and not committed.
#[async_trait]
pub(crate) trait OpenWriter: Send {
    async fn commit(self: Box<Self>) -> Result<(), Failure>;
}

/// What the queue checks need: two agents on one queue, and a way to queue items as the
/// clinic's triggers do, committed or inside an open transaction.
#[async_trait]
pub(crate) trait QueueBench: Send + Sync {
    fn first(&self) -> &dyn SqlStore;
    fn second(&self) -> &dyn SqlStore;
    /// Queues one committed item for each record `from..from + n`.
    async fn queue_records(&self, from: u32, n: u32) -> Result<(), Failure>;
    /// Opens a transaction that queues an item for record `n` and keeps it open.
    async fn open_writer(&self, n: u32) -> Result<Box<dyn OpenWriter>, Failure>;
    /// Deletes every item.
    async fn clear(&self) -> Result<(), Failure>;
}

pub(crate) fn record(n: u32) -> String {
    format!("{{\"N\":{n}}}")
}

pub(crate) async fn run(bench: &dyn QueueBench, report: &mut Report) {
    let g = Group::Queue;
    report
        .run(
            g,
            "two agents claiming at once never take the same item",
            exclusive(bench),
        )
        .await;
    report
        .run(
            g,
            "a claim takes the other due items of the same record (coalescing)",
            siblings(bench),
        )
        .await;
    report
        .run(
            g,
            "a claim skips a row an open transaction holds (READPAST)",
            skips_locked(bench),
        )
        .await;
    report
        .run(
            g,
            "a claimed item is not due again until its lease ends",
            lease(bench),
        )
        .await;
    report
        .run(
            g,
            "an outcome settles only an item that still carries its claim token",
            settle_by_token(bench),
        )
        .await;
    report
        .run(
            g,
            "a table's unsettled items are seen, claimed or not, and an open writer's skipped",
            unsettled(bench),
        )
        .await;
}

fn expect(ok: bool, why: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::unexpected(why()))
    }
}

fn synced(items: &[QueueItem]) -> Vec<SettleItem> {
    items
        .iter()
        .map(|i| SettleItem {
            id: i.id,
            claim: i.claim,
            outcome: Settlement::Synced,
        })
        .collect()
}

async fn drain(store: &dyn SqlStore) -> Result<Vec<QueueItem>, Failure> {
    let mut all = Vec::new();
    loop {
        let items = store.claim(7, LEASE).await?;
        if items.is_empty() {
            return Ok(all);
        }
        all.extend(items);
    }
}

async fn exclusive(bench: &dyn QueueBench) -> CheckResult {
    bench.clear().await?;
    bench.queue_records(1, 200).await?;
    // Both loops have statements in flight at once: the server sees concurrent claims.
    let (a, b) = tokio::join!(drain(bench.first()), drain(bench.second()));
    let (a, b) = (a?, b?);
    let ids: Vec<_> = a.iter().chain(&b).map(|i| i.id).collect();
    let unique: BTreeSet<_> = ids.iter().collect();
    expect(unique.len() == ids.len(), || {
        format!("{} items were claimed twice", ids.len() - unique.len())
    })?;
    expect(ids.len() == 200, || {
        format!("200 items queued, {} claimed", ids.len())
    })?;
    bench.first().settle(&synced(&a)).await?;
    bench.second().settle(&synced(&b)).await?;
    Ok(Some(format!("{} and {} items", a.len(), b.len())))
}

async fn siblings(bench: &dyn QueueBench) -> CheckResult {
    bench.clear().await?;
    bench.queue_records(1, 1).await?;
    bench.queue_records(2, 1).await?;
    bench.queue_records(1, 1).await?;
    let items = bench.first().claim(1, LEASE).await?;
    let records: Vec<_> = items.iter().map(|i| i.record_id.as_str()).collect();
    expect(records == [record(1), record(1)], || {
        format!(
            "a claim of 1 took {records:?}, expected both items of {}",
            record(1)
        )
    })?;
    bench.first().settle(&synced(&items)).await?;
    Ok(None)
}

async fn skips_locked(bench: &dyn QueueBench) -> CheckResult {
    bench.clear().await?;
    let writer = bench.open_writer(1).await?;
    bench.queue_records(2, 1).await?;
    let items = bench.first().claim(10, LEASE).await?;
    let records: Vec<_> = items.iter().map(|i| i.record_id.clone()).collect();
    expect(records == [record(2)], || {
        format!("with record 1 held by an open transaction the claim took {records:?}")
    })?;
    bench.first().settle(&synced(&items)).await?;

    // Nothing claimable, but a writer holds a due item: the wait ends at its lock timeout.
    let started = Instant::now();
    let waited = bench
        .first()
        .wait_for_writers(Duration::from_millis(400))
        .await?;
    let took = started.elapsed();
    expect(
        waited == WriterWait::Waited
            && took >= Duration::from_millis(350)
            && took < Duration::from_secs(5),
        || {
            format!("waiting on the open writer returned {waited:?} after {took:?}, expected Waited after its 400 ms lock timeout")
        },
    )?;
    writer.commit().await?;
    let started = Instant::now();
    bench
        .first()
        .wait_for_writers(Duration::from_secs(5))
        .await?;
    let after_commit = started.elapsed();
    let items = bench.first().claim(10, LEASE).await?;
    let records: Vec<_> = items.iter().map(|i| i.record_id.clone()).collect();
    expect(
        records == [record(1)] && after_commit < Duration::from_secs(2),
        || {
            format!(
                "after the commit the wait took {after_commit:?} and the claim took {records:?}"
            )
        },
    )?;
    bench.first().settle(&synced(&items)).await?;
    Ok(Some(format!("lock wait {} ms", took.as_millis())))
}

async fn lease(bench: &dyn QueueBench) -> CheckResult {
    bench.clear().await?;
    bench.queue_records(1, 1).await?;
    let items = bench.first().claim(10, LEASE).await?;
    expect(items.len() == 1, || {
        format!("claimed {} items, expected 1", items.len())
    })?;
    let again = bench.second().claim(10, LEASE).await?;
    expect(again.is_empty(), || {
        format!("{} leased items were claimed again", again.len())
    })?;
    let due = bench.first().next_due_in().await?;
    expect(
        due.is_some_and(|d| {
            d > LEASE - Duration::from_secs(10) && d <= LEASE + Duration::from_secs(1)
        }),
        || format!("next due in {due:?}, expected about the 60 s lease"),
    )?;
    bench.first().settle(&synced(&items)).await?;
    Ok(None)
}

async fn settle_by_token(bench: &dyn QueueBench) -> CheckResult {
    bench.clear().await?;
    bench.queue_records(1, 1).await?;
    let items = bench.first().claim(10, LEASE).await?;
    let item = items
        .first()
        .ok_or_else(|| Failure::unexpected("the claim took nothing"))?;
    let stale = SettleItem {
        id: item.id,
        claim: ClaimToken(Uuid::new_v4()),
        outcome: Settlement::Synced,
    };
    bench.first().settle(&[stale]).await?;
    let stats = bench.first().queue_stats().await?;
    expect(stats.pending == 1 && stats.synced == 0, || {
        format!("an outcome with a stale token settled the item: {stats:?}")
    })?;
    let retry = SettleItem {
        id: item.id,
        claim: item.claim,
        outcome: Settlement::Retry {
            delay: Duration::ZERO,
            error: "self-test".to_owned(),
        },
    };
    bench.first().settle(&[retry]).await?;
    let again = bench.first().claim(10, LEASE).await?;
    let attempts: Vec<_> = again.iter().map(|i| i.attempts).collect();
    expect(attempts == [1], || {
        format!("after one retry the item came back with attempts {attempts:?}, expected [1]")
    })?;
    bench.first().settle(&synced(&again)).await?;
    let stats = bench.first().queue_stats().await?;
    expect(stats.pending == 0 && stats.synced == 1, || {
        format!("after settling Synced: {stats:?}")
    })?;
    Ok(None)
}

/// What the forward path asks before charging a row refused for a foreign key: whether a table
/// still has Pending items, whoever claimed them.
async fn unsettled(bench: &dyn QueueBench) -> CheckResult {
    bench.clear().await?;
    let tables = [TABLE.to_owned()];
    let asked = || bench.first().unsettled_in(&tables);
    expect(!asked().await?, || {
        "an empty queue has unsettled items".to_owned()
    })?;
    let writer = bench.open_writer(1).await?;
    let started = Instant::now();
    let held = asked().await?;
    let took = started.elapsed();
    expect(!held && took < Duration::from_secs(1), || {
        format!("with the only item held by an open transaction: {held} after {took:?}, expected false at once (READPAST)")
    })?;
    writer.commit().await?;
    let items = bench.second().claim(10, LEASE).await?;
    expect(items.len() == 1, || {
        format!("claimed {} items, expected 1", items.len())
    })?;
    expect(asked().await?, || {
        "an item the other agent claimed is not seen as unsettled".to_owned()
    })?;
    let other = ["selftest_other".to_owned()];
    expect(!bench.first().unsettled_in(&other).await?, || {
        "another table's question saw this table's item".to_owned()
    })?;
    bench.second().settle(&synced(&items)).await?;
    expect(!asked().await?, || {
        "a Synced item is seen as unsettled".to_owned()
    })?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlserver::memory::{MemTx, MemoryStore};
    use crate::sqlserver::{KeyPart, RecordKey};

    /// The double as a bench: both agents share its state, as two agents share one queue.
    struct Memory(MemoryStore, MemoryStore);

    fn key(n: u32) -> RecordKey {
        RecordKey(
            [("N".to_owned(), KeyPart::Int(i64::from(n)))]
                .into_iter()
                .collect(),
        )
    }

    struct Writer(MemTx);

    #[async_trait]
    impl OpenWriter for Writer {
        async fn commit(self: Box<Self>) -> Result<(), Failure> {
            self.0.commit();
            Ok(())
        }
    }

    #[async_trait]
    impl QueueBench for Memory {
        fn first(&self) -> &dyn SqlStore {
            &self.0
        }
        fn second(&self) -> &dyn SqlStore {
            &self.1
        }
        async fn queue_records(&self, from: u32, n: u32) -> Result<(), Failure> {
            for i in from..from + n {
                self.0
                    .clinic_write(TABLE, &key(i), Some(Default::default()));
            }
            Ok(())
        }
        async fn open_writer(&self, n: u32) -> Result<Box<dyn OpenWriter>, Failure> {
            let tx = self.0.begin();
            tx.write(TABLE, &key(n), Some(Default::default()));
            Ok(Box::new(Writer(tx)))
        }
        async fn clear(&self) -> Result<(), Failure> {
            self.0.clear_queue();
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_double_passes_the_queue_checks() {
        let store = MemoryStore::new();
        store.create_table(TABLE, vec![]);
        let bench = Memory(store.clone(), store);
        let mut report = Report::default();
        run(&bench, &mut report).await;
        assert_eq!(report.checks.len(), 6);
        assert!(report.passed(), "{}", report.render());
    }

    #[tokio::test]
    async fn a_queue_that_hands_an_item_to_two_claims_fails_the_check() {
        // Two separate doubles stand for a queue without locking: both agents get every item.
        let (a, b) = (MemoryStore::new(), MemoryStore::new());
        a.create_table(TABLE, vec![]);
        b.create_table(TABLE, vec![]);
        struct Split(Memory);
        #[async_trait]
        impl QueueBench for Split {
            fn first(&self) -> &dyn SqlStore {
                self.0.first()
            }
            fn second(&self) -> &dyn SqlStore {
                self.0.second()
            }
            async fn queue_records(&self, from: u32, n: u32) -> Result<(), Failure> {
                for i in from..from + n {
                    self.0
                         .0
                        .clinic_write(TABLE, &key(i), Some(Default::default()));
                    self.0
                         .1
                        .clinic_write(TABLE, &key(i), Some(Default::default()));
                }
                Ok(())
            }
            async fn open_writer(&self, n: u32) -> Result<Box<dyn OpenWriter>, Failure> {
                self.0.open_writer(n).await
            }
            async fn clear(&self) -> Result<(), Failure> {
                self.0 .0.clear_queue();
                self.0 .1.clear_queue();
                Ok(())
            }
        }
        let bench = Split(Memory(a, b));
        let mut report = Report::default();
        report
            .run(Group::Queue, "exclusive", exclusive(&bench))
            .await;
        assert!(!report.passed());
        assert!(
            report.render().contains("claimed twice"),
            "{}",
            report.render()
        );
    }
}
