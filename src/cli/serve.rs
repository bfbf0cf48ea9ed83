//! `syncbridge run`: the agent from its configuration, listening on `SYNC_LISTEN_ADDR`, until
//! `shutdown` fires (a signal in `main`, a stop request from the Windows service manager).

use tokio_util::sync::CancellationToken;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config::{Config, ConfigError};
use crate::Agent;

/// Runs the agent until `shutdown`; returns the exit code: 0 after a clean stop, 78 for a
/// configuration fault (a setting, or a table map that does not match SQL Server), 1 for any
/// other failure.
pub async fn run(config: Config, shutdown: CancellationToken) -> u8 {
    let addr = config.listen_addr;
    let agent = match Agent::from_config(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e:#}");
            return EXIT_CONFIG;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {addr} (SYNC_LISTEN_ADDR): {e}");
            return EXIT_CONFIG;
        }
    };
    match crate::run(agent, listener, shutdown).await {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            tracing::error!("{e:#}");
            EXIT_CONFIG
        }
        Err(e) => {
            tracing::error!("{e:#}");
            EXIT_FAILURE
        }
    }
}
