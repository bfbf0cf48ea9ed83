//! One agent: what it runs with ([`Agent`]: configuration, SQL Server, table map), how it
//! starts (the table map resolved against both schemas, [`schemas`], or the [`schema_cache`]
//! during an outage: [`startup`]; then the forward worker and the reverse side: [`workers`]),
//! and the one handle the HTTP layer calls ([`handle`], with the status endpoint's report in
//! [`status_report`], the metrics in [`metrics`] and retrying what was given up on in
//! [`retry_failed`]); both sides' calls are timed for the metrics by [`timed`]. `crate::run`
//! wires these to the HTTP server.

pub(crate) mod handle;
pub(crate) mod metrics;
pub(crate) mod retry_failed;
pub(crate) mod schema_cache;
pub(crate) mod schemas;
pub(crate) mod startup;
pub(crate) mod status_report;
pub(crate) mod timed;
pub(crate) mod workers;

use std::sync::Arc;

use crate::config::Config;
use crate::mapping::table_map::TableMapError;
use crate::mapping::TableMap;
use crate::sqlserver::tds::TdsStore;
use crate::sqlserver::SqlStore;

pub(crate) use handle::AgentHandle;

/// Connections per agent to SQL Server: the forward worker, the applier, and the status
/// endpoint and catalog reads beside them.
const POOL_SIZE: u32 = 4;

/// What an agent runs with: its configuration, its SQL Server, and its table map.
pub struct Agent {
    pub config: Config,
    pub store: Arc<dyn SqlStore>,
    pub map: TableMap,
}

/// Why an agent cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    TableMap(#[from] TableMapError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Agent {
    /// The production agent: tiberius against `MSSQL_CONNECTION_STRING`, and the table map from
    /// `SYNC_TABLE_MAP` or the built-in sample clinic map.
    pub fn from_config(config: Config) -> Result<Self, AgentError> {
        let map = match &config.table_map {
            Some(path) => TableMap::load(path)?,
            None => TableMap::sample_clinic(),
        };
        #[cfg(feature = "test-support")]
        if let Some(addr) = config.test_double_addr() {
            let store = Arc::new(crate::sqlserver::remote::RemoteStore::new(
                addr,
                config.agent_id.clone(),
            ));
            return Ok(Self { config, store, map });
        }
        let tds = config.mssql_config()?;
        let store = Arc::new(TdsStore::new(tds, config.agent_id.clone(), POOL_SIZE));
        Ok(Self { config, store, map })
    }
}
