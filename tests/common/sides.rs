//! The two SQL Server sides the harness runs the agent with: the in-memory double, and a
//! test's own database on a real SQL Server through the tiberius store.

use std::sync::Arc;

use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::sqlserver::SqlStore;
use syncbridge::Config;

use super::mssql::SqlDb;

/// What the agent's SQL Server is, as far as the harness needs to know.
pub trait SqlServerSide: Send + Sync + 'static {
    /// The agent's MSSQL_CONNECTION_STRING.
    fn connection_string(&self) -> String;
    /// The agent's SYNC_AGENT_ID (`SyncQueue.ClaimedBy`).
    fn agent_id(&self) -> &'static str;
    /// The store the agent runs with, for its configuration.
    fn store(&self, config: &Config) -> Arc<dyn SqlStore>;
}

impl SqlServerSide for MemoryStore {
    fn connection_string(&self) -> String {
        "Server=127.0.0.1,1;Database=Clinic;User Id=sa;Password=unused-in-tests".to_owned()
    }

    fn agent_id(&self) -> &'static str {
        "memory-agent"
    }

    fn store(&self, _: &Config) -> Arc<dyn SqlStore> {
        Arc::new(self.clone())
    }
}

impl SqlServerSide for SqlDb {
    fn connection_string(&self) -> String {
        self.ado.clone()
    }

    fn agent_id(&self) -> &'static str {
        "mssql-e2e-agent"
    }

    fn store(&self, config: &Config) -> Arc<dyn SqlStore> {
        let tds = config.mssql_config().expect("ADO string");
        Arc::new(TdsStore::new(tds, config.agent_id.clone(), 4))
    }
}
