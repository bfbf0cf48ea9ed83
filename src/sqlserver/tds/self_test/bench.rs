//! The self-test's handles on SQL Server: two agent stores over the scratch queue (the agent's
//! own code: connections marked with SESSION_CONTEXT, the agent's statements), plain
//! connections that write as the clinic's applications do, and reading what the scratch
//! queue received.

use async_trait::async_trait;
use tiberius::Query;

use super::queue_checks::{record, OpenWriter, QueueBench, TABLE};
use super::report::Failure;
use super::scratch::plain;
use crate::sqlserver::tds::exec::{all_results, first_result};
use crate::sqlserver::tds::pool::{self, TdsClient};
use crate::sqlserver::tds::TdsStore;
use crate::sqlserver::{RecordKey, SqlStore};

pub(crate) struct Bench {
    /// The administrator's connection settings (timeouts applied): DDL and clinic writes.
    pub(crate) admin: tiberius::Config,
    pub(crate) schema: String,
    /// The agent, over the scratch queue.
    pub(crate) store: TdsStore,
    /// A second agent with its own connections, for concurrent claims.
    pub(crate) other: TdsStore,
}

/// A scratch queue row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) table: String,
    pub(crate) key: RecordKey,
    pub(crate) operation: String,
}

impl Bench {
    pub(crate) fn new(admin: tiberius::Config, schema: &str) -> Self {
        let admin = pool::with_timeouts(admin);
        let agent = |n: u8| {
            TdsStore::new(admin.clone(), format!("syncbridge-selftest-{n}"), 2)
                .with_queue_schema(schema)
        };
        Self {
            store: agent(1),
            other: agent(2),
            schema: schema.to_owned(),
            admin,
        }
    }

    /// `[schema].[SyncQueue]`.
    pub(crate) fn queue(&self) -> String {
        format!("[{}].[SyncQueue]", self.schema)
    }

    /// `schema.table`, as the store names tables and the generator queues them.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    /// A connection as the clinic's applications make them: no session context.
    pub(crate) async fn clinic(&self) -> Result<TdsClient, Failure> {
        plain(&self.admin).await
    }

    /// Runs `sql` (one batch, every result read) on a new clinic connection.
    pub(crate) async fn clinic_sql(&self, sql: &str) -> Result<(), Failure> {
        let mut c = self.clinic().await?;
        batch(&mut c, sql).await
    }

    /// Every row the scratch queue holds, oldest first, then empties it, so each check sees
    /// only what it caused.
    pub(crate) async fn take_queue(&self) -> Result<Vec<Queued>, Failure> {
        let q = self.queue();
        let sql = format!(
            "SET NOCOUNT ON;
SELECT TableName, RecordID, Operation FROM {q} ORDER BY QueueID;
DELETE FROM {q};"
        );
        let mut c = self.clinic().await?;
        let rows = first_result(Query::new(sql), &mut c).await?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| -> Result<String, Failure> {
                    r.try_get::<&str, _>(i)
                        .ok()
                        .flatten()
                        .map(str::to_owned)
                        .ok_or_else(|| Failure::unexpected(format!("queue column {i} is NULL")))
                };
                let record_id = text(1)?;
                let key = RecordKey::parse(&record_id).map_err(|e| {
                    Failure::unexpected(format!(
                        "the trigger wrote a RecordID that does not parse: {e}"
                    ))
                })?;
                Ok(Queued {
                    table: text(0)?,
                    key,
                    operation: text(2)?,
                })
            })
            .collect()
    }
}

/// Runs `sql` on `c`, every result read.
pub(crate) async fn batch(c: &mut TdsClient, sql: &str) -> Result<(), Failure> {
    let run = async { c.simple_query(sql).await?.into_results().await };
    run.await
        .map(drop)
        .map_err(|e| Failure::unexpected(format!("SQL Server refused a self-test statement: {e}")))
}

/// The first column of the first row of `query`, as an integer.
pub(crate) async fn scalar(c: &mut TdsClient, query: Query<'_>) -> Result<Option<i64>, Failure> {
    let sets = all_results(query, c).await?;
    let Some(row) = sets.iter().rev().find_map(|rows| rows.first()) else {
        return Ok(None);
    };
    Ok(match row.get_column_data(0).ok() {
        Some(tiberius::ColumnData::U8(v)) => v.map(i64::from),
        Some(tiberius::ColumnData::I16(v)) => v.map(i64::from),
        Some(tiberius::ColumnData::I32(v)) => v.map(i64::from),
        Some(tiberius::ColumnData::I64(v)) => *v,
        Some(tiberius::ColumnData::Bit(v)) => v.map(i64::from),
        _ => None,
    })
}

struct Writer(TdsClient);

#[async_trait]
impl OpenWriter for Writer {
    async fn commit(mut self: Box<Self>) -> Result<(), Failure> {
        batch(&mut self.0, "COMMIT TRANSACTION;").await
    }
}

#[async_trait]
impl QueueBench for Bench {
    fn first(&self) -> &dyn SqlStore {
        &self.store
    }

    fn second(&self) -> &dyn SqlStore {
        &self.other
    }

    async fn queue_records(&self, from: u32, n: u32) -> Result<(), Failure> {
        let sql = format!(
            "INSERT INTO {} (TableName, RecordID, Operation)
SELECT TOP (@P2) N'{TABLE}', N'{{\"N\":' + CONVERT(nvarchar(20), @P1 - 1 + ROW_NUMBER() OVER (ORDER BY (SELECT NULL))) + N'}}', 'INSERT'
FROM sys.all_columns;",
            self.queue()
        );
        let mut query = Query::new(sql);
        query.bind(i64::from(from));
        query.bind(i64::from(n));
        let mut c = self.clinic().await?;
        all_results(query, &mut c).await?;
        Ok(())
    }

    async fn open_writer(&self, n: u32) -> Result<Box<dyn OpenWriter>, Failure> {
        let mut c = self.clinic().await?;
        let sql = format!(
            "BEGIN TRANSACTION;
INSERT INTO {} (TableName, RecordID, Operation) VALUES (N'{TABLE}', N'{}', 'INSERT');",
            self.queue(),
            record(n)
        );
        batch(&mut c, &sql).await?;
        Ok(Box::new(Writer(c)))
    }

    async fn clear(&self) -> Result<(), Failure> {
        self.clinic_sql(&format!("DELETE FROM {};", self.queue()))
            .await
    }
}
