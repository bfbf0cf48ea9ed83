//! The out-of-process SQL Server double's client (`test-support` builds only): a [`SqlStore`]
//! that forwards every call over [`wire`]'s line-JSON protocol to a server the test process
//! hosts (`test_support::remote::RemoteServer`, over a `MemoryStore`), so the real binary can
//! run against the double. Picked when `MSSQL_CONNECTION_STRING` is
//! `syncbridge-test-double://HOST:PORT`. The client is mechanical: one method, one [`Call`].

pub(crate) mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use self::wire::{Call, Reply, Request};
use super::*;

/// A connection attempt longer than this is SQL Server being unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A call the double holds longer than this (beyond a writer wait) counts as a broken link,
/// as a TDS connection's timeout would.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The client. Each call opens its own connection, so a dead or restarted server costs only
/// the calls made meanwhile, and concurrent calls never wait on each other.
pub struct RemoteStore {
    addr: SocketAddr,
    agent_id: String,
}

impl RemoteStore {
    pub fn new(addr: SocketAddr, agent_id: String) -> Self {
        Self { addr, agent_id }
    }

    async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, StoreError> {
        let wait = match &call {
            Call::WaitForWriters { max_wait } => *max_wait,
            _ => Duration::ZERO,
        };
        let request = Request {
            agent: self.agent_id.clone(),
            call,
        };
        let exchange = self.exchange(&request);
        let reply = tokio::time::timeout(CALL_TIMEOUT + wait, exchange)
            .await
            .map_err(|_| self.broken("no answer in time"))??;
        let value = reply.map_err(StoreError::from)?;
        serde_json::from_value(value).map_err(|e| self.broken(&format!("bad reply: {e}")))
    }

    async fn exchange(&self, request: &Request) -> Result<Reply, StoreError> {
        let connect = TcpStream::connect(self.addr);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| self.broken("connect timed out"))?
            .map_err(|e| self.broken(&e.to_string()))?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request)
            .map_err(|e| StoreError::Invalid(format!("cannot encode the call: {e}")))?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|e| self.broken(&e.to_string()))?;
        let mut answer = String::new();
        let n = BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(|e| self.broken(&e.to_string()))?;
        if n == 0 {
            return Err(self.broken("connection closed before the answer"));
        }
        serde_json::from_str(&answer).map_err(|e| self.broken(&format!("bad reply: {e}")))
    }

    fn broken(&self, why: &str) -> StoreError {
        StoreError::Unavailable(format!("test double at {}: {why}", self.addr))
    }
}

#[async_trait]
impl SqlStore for RemoteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.call(Call::Ping).await
    }

    async fn describe_table(&self, table: &str) -> Result<Option<Vec<SourceColumn>>, StoreError> {
        let table = table.to_owned();
        self.call(Call::DescribeTable { table }).await
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<QueueItem>, StoreError> {
        self.call(Call::Claim { limit, lease }).await
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<(), StoreError> {
        let items = items.to_vec();
        self.call(Call::Settle { items }).await
    }

    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        self.call(Call::NextDueIn).await
    }

    async fn wait_for_writers(&self, max_wait: Duration) -> Result<WriterWait, StoreError> {
        self.call(Call::WaitForWriters { max_wait }).await
    }

    async fn release_own_claims(&self) -> Result<u64, StoreError> {
        self.call(Call::ReleaseOwnClaims).await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.call(Call::QueueStats).await
    }

    async fn unsettled_in(&self, tables: &[String]) -> Result<bool, StoreError> {
        let tables = tables.to_vec();
        self.call(Call::UnsettledIn { tables }).await
    }

    async fn retry_failed(&self, filter: &RetryFilter) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.call(Call::RetryFailed { filter }).await
    }

    async fn recent_failures(&self, limit: usize) -> Result<Vec<FailedItem>, StoreError> {
        self.call(Call::RecentFailures { limit }).await
    }

    async fn setup_report(&self) -> Result<SetupReport, StoreError> {
        self.call(Call::SetupReport).await
    }

    async fn load_rows(
        &self,
        table: &str,
        columns: &[SourceColumn],
        keys: &[RecordKey],
    ) -> Result<Vec<Row>, StoreError> {
        self.call(Call::LoadRows {
            table: table.to_owned(),
            columns: columns.to_vec(),
            keys: keys.iter().map(RecordKey::to_json).collect(),
        })
        .await
    }

    async fn apply(&self, write: &ReverseWrite) -> Result<WriteOutcome, StoreError> {
        let write = write.clone();
        self.call(Call::Apply { write }).await
    }

    async fn backfill_page(&self, page: &KeyPage) -> Result<Enqueued, StoreError> {
        let page = page.into();
        let (enqueued, last): (u64, Option<String>) =
            self.call(Call::BackfillPage { page }).await?;
        Ok(Enqueued {
            enqueued,
            last: last.as_deref().map(wire::parse_key).transpose()?,
        })
    }

    async fn read_page(
        &self,
        page: &KeyPage,
        columns: &[SourceColumn],
    ) -> Result<Vec<Row>, StoreError> {
        let (page, columns) = (page.into(), columns.to_vec());
        self.call(Call::ReadPage { page, columns }).await
    }

    async fn queue_records(
        &self,
        table: &str,
        key_columns: &[String],
        records: &[RecordKey],
        unless_newer_than: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<u64, StoreError> {
        self.call(Call::QueueRecords {
            table: table.to_owned(),
            key_columns: key_columns.to_vec(),
            records: records.iter().map(RecordKey::to_json).collect(),
            unless_newer_than,
        })
        .await
    }
}
