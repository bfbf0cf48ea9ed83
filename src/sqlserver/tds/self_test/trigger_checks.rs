//! The change-trigger checks, on the scratch tables whose triggers `sp_SyncInstallChangeTrigger`
//! generated (installed with the key columns spelled in another case than declared): one queue
//! row per changed row of a multi-row statement, key changes as DELETE + INSERT (case-only and
//! trailing-space changes included), the agent's own writes skipped, and a clinic trigger's
//! cascade of an agent write not skipped.

use std::collections::BTreeSet;

use super::bench::{Bench, Queued};
use super::report::{CheckResult, Failure, Group, Report};
use crate::sqlserver::SqlValue;
use crate::sqlserver::{KeyPart, RecordKey, ReverseWrite, SqlStore, WriteAction, WriteOutcome};

pub(crate) async fn run(bench: &Bench, report: &mut Report) {
    let g = Group::Triggers;
    report
        .run(
            g,
            "a multi-row INSERT queues one INSERT per row, keys named as declared",
            multi_row_insert(bench),
        )
        .await;
    report
        .run(
            g,
            "a multi-row UPDATE queues one UPDATE per row; one matching nothing queues nothing",
            multi_row_update(bench),
        )
        .await;
    report
        .run(
            g,
            "a multi-row DELETE queues one DELETE per row",
            multi_row_delete(bench),
        )
        .await;
    report
        .run(
            g,
            "a key change queues DELETE of the old key, then INSERT of the new",
            key_changed_to(bench, "xyz"),
        )
        .await;
    report
        .run(
            g,
            "a key changed only in case (case-insensitive column) is a new key",
            key_changed_to(bench, "GHI"),
        )
        .await;
    report
        .run(
            g,
            "a key changed only by trailing spaces is a new key",
            key_trailing_space(bench),
        )
        .await;
    report
        .run(
            g,
            "the agent's own writes are not queued (loop guard)",
            agent_writes_skipped(bench),
        )
        .await;
    report
        .run(
            g,
            "a clinic trigger's change caused by an agent write is queued",
            cascade_queued(bench),
        )
        .await;
}

fn types_key(k1: i64, k2: &str) -> RecordKey {
    RecordKey(
        [
            ("K1".to_owned(), KeyPart::Int(k1)),
            ("K2".to_owned(), KeyPart::Text(k2.to_owned())),
        ]
        .into_iter()
        .collect(),
    )
}

fn int_key(column: &str, n: i64) -> RecordKey {
    RecordKey([(column.to_owned(), KeyPart::Int(n))].into_iter().collect())
}

/// Resets Types to `rows` (committed, queue emptied).
async fn reset(bench: &Bench, rows: &str) -> Result<(), Failure> {
    let t = format!("[{}].[Types]", bench.schema);
    bench
        .clinic_sql(&format!(
            "DELETE FROM {t}; INSERT INTO {t} (K1, K2) VALUES {rows};"
        ))
        .await?;
    bench.take_queue().await.map(drop)
}

/// The queue's rows as (table, operation, key), in QueueID order.
fn summary(queued: &[Queued]) -> Vec<(String, String, RecordKey)> {
    queued
        .iter()
        .map(|q| (q.table.clone(), q.operation.clone(), q.key.clone()))
        .collect()
}

fn expect_ops(
    bench: &Bench,
    queued: &[Queued],
    expected: &[(&str, &str, RecordKey)],
) -> Result<(), Failure> {
    let want: Vec<_> = expected
        .iter()
        .map(|(t, o, k)| (bench.table(t), (*o).to_owned(), k.clone()))
        .collect();
    let got = summary(queued);
    if got == want {
        Ok(())
    } else {
        Err(Failure::unexpected(format!(
            "queued {got:?}, expected {want:?}"
        )))
    }
}

/// The same as [`expect_ops`], order ignored: rows of one statement are queued in no set order.
fn expect_set(
    bench: &Bench,
    queued: &[Queued],
    operation: &str,
    keys: &[RecordKey],
) -> Result<(), Failure> {
    let got: BTreeSet<_> = summary(queued).into_iter().collect();
    let want: BTreeSet<_> = keys
        .iter()
        .map(|k| (bench.table("Types"), operation.to_owned(), k.clone()))
        .collect();
    if got == want && queued.len() == keys.len() {
        Ok(())
    } else {
        Err(Failure::unexpected(format!(
            "queued {:?}, expected one {operation} for each of {keys:?}",
            summary(queued)
        )))
    }
}

/// Runs one clinic statement on the scratch Types table (written `{T}`) and returns what it
/// queued.
async fn clinic_change(bench: &Bench, statement: &str) -> Result<Vec<Queued>, Failure> {
    let table = format!("[{}].[Types]", bench.schema);
    bench.clinic_sql(&statement.replace("{T}", &table)).await?;
    bench.take_queue().await
}

const THREE_ROWS: &str = "(1, N'abc'), (2, N'def'), (3, N'ghi')";

fn three_keys() -> [RecordKey; 3] {
    [
        types_key(1, "abc"),
        types_key(2, "def"),
        types_key(3, "ghi"),
    ]
}

async fn multi_row_insert(bench: &Bench) -> CheckResult {
    reset(bench, "(9, N'seed')").await?;
    let queued = clinic_change(
        bench,
        &format!("INSERT INTO {{T}} (K1, K2) VALUES {THREE_ROWS};"),
    )
    .await?;
    expect_set(bench, &queued, "INSERT", &three_keys())?;
    Ok(Some("installed as `k1, k2`, queued as K1, K2".to_owned()))
}

async fn multi_row_update(bench: &Bench) -> CheckResult {
    reset(bench, THREE_ROWS).await?;
    let queued = clinic_change(bench, "UPDATE {T} SET C_int = 7;").await?;
    expect_set(bench, &queued, "UPDATE", &three_keys())?;
    let queued = clinic_change(bench, "UPDATE {T} SET C_int = 8 WHERE 1 = 0;").await?;
    expect_set(bench, &queued, "UPDATE", &[])?;
    Ok(None)
}

async fn multi_row_delete(bench: &Bench) -> CheckResult {
    reset(bench, THREE_ROWS).await?;
    let queued = clinic_change(bench, "DELETE FROM {T} WHERE K1 IN (1, 2);").await?;
    let [abc, def, _] = three_keys();
    expect_set(bench, &queued, "DELETE", &[abc, def])?;
    Ok(None)
}

/// Changes row 3's K2 from `ghi` to `new` and expects DELETE of the old key, then INSERT.
async fn key_changed_to(bench: &Bench, new: &str) -> CheckResult {
    reset(bench, "(3, N'ghi')").await?;
    let queued = clinic_change(
        bench,
        &format!("UPDATE {{T}} SET K2 = N'{new}' WHERE K1 = 3;"),
    )
    .await?;
    let (old, new) = (types_key(3, "ghi"), types_key(3, new));
    expect_ops(
        bench,
        &queued,
        &[("Types", "DELETE", old), ("Types", "INSERT", new)],
    )?;
    Ok(None)
}

async fn key_trailing_space(bench: &Bench) -> CheckResult {
    key_changed_to(bench, "ghi ").await?;
    // And an update that keeps the key, trailing space and all, is an UPDATE.
    let queued = clinic_change(bench, "UPDATE {T} SET C_int = 1 WHERE K1 = 3;").await?;
    expect_ops(bench, &queued, &[("Types", "UPDATE", types_key(3, "ghi "))])?;
    Ok(None)
}

async fn agent_writes_skipped(bench: &Bench) -> CheckResult {
    reset(bench, "(3, N'ghi')").await?;
    let key = vec![
        ("K1".to_owned(), SqlValue::Int(40)),
        ("K2".to_owned(), SqlValue::Text("agent".into())),
    ];
    let write = ReverseWrite {
        guard: None,
        table: bench.table("Types"),
        key: key.clone(),
        action: WriteAction::Upsert {
            insert: key,
            update: vec![("C_int".to_owned(), SqlValue::Int(1))],
        },
    };
    let inserted = bench.store.apply(&write).await?;
    let updated = bench
        .store
        .apply(&ReverseWrite {
            guard: None,
            action: WriteAction::UpdateOnly {
                update: vec![("C_int".to_owned(), SqlValue::Int(2))],
            },
            ..write
        })
        .await?;
    if (inserted, updated) != (WriteOutcome::Inserted, WriteOutcome::Updated) {
        return Err(Failure::unexpected(format!(
            "the agent's writes reported {inserted:?}, {updated:?}"
        )));
    }
    let queued = bench.take_queue().await?;
    expect_ops(bench, &queued, &[])?;
    Ok(None)
}

async fn cascade_queued(bench: &Bench) -> CheckResult {
    bench.take_queue().await?;
    let note = vec![("NoteID".to_owned(), SqlValue::Int(1))];
    let write = ReverseWrite {
        guard: None,
        table: bench.table("Notes"),
        key: note.clone(),
        action: WriteAction::Upsert {
            insert: vec![
                ("NoteID".to_owned(), SqlValue::Int(1)),
                ("SetID".to_owned(), SqlValue::Int(2)),
                ("Body".to_owned(), SqlValue::Text("from the portal".into())),
            ],
            update: vec![],
        },
    };
    bench.store.apply(&write).await?;
    let queued = bench.take_queue().await?;
    // The clinic trigger fires first on Notes, so a nesting count that included triggers
    // already run for the statement (rather than those on the call stack) would show here
    // as the agent's own note being queued.
    expect_ops(bench, &queued, &[("Sets", "UPDATE", int_key("SetID", 2))]).map_err(|f| {
        Failure::new(
            f.why,
            "check the server option 'nested triggers' (must be 1) and that 03_change_triggers.sql is the current version (re-run it, then re-install each table's trigger)",
        )
    })?;
    Ok(None)
}
