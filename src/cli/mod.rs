//! The commands of the `syncbridge` binary beyond the agent itself, each in its own module over
//! the library's layers; `main.rs` only parses the command line and dispatches:
//! - [`serve`]: `run`, the agent from its configuration until a shutdown token fires (also the
//!   Windows service's body);
//! - [`init`]: writes `.env` with fresh secrets and prints the other sides' set-up lines;
//! - [`status`], [`retry_failed`]: ask the running agent (`agent_client`), or read and repair
//!   SQL Server and the inbox directly when none runs;
//! - [`backfill`]: queues every existing row for the forward path, resumably;
//! - [`verify`]: compares both sides by key-hash ranges, and repairs them with `--fix`;
//! - [`logging`]: stdout/stderr and the daily log files;
//! - [`service`]: `service install|uninstall|start|stop` with the Windows service manager.
//!
//! Exit codes: 0 ok, 1 failure (or, for `status`, an agent that is not running and ready), 78 a
//! bad configuration (the message names the setting).

mod agent_client;
pub mod backfill;
pub mod init;
pub mod logging;
mod mapped;
pub mod retry_failed;
pub mod serve;
pub mod service;
pub mod status;
pub mod verify;

/// A bad configuration (sysexits' EX_CONFIG), distinct from a crash, so a service manager can
/// tell "misconfigured" from "failed".
pub const EXIT_CONFIG: u8 = 78;
pub(crate) const EXIT_FAILURE: u8 = 1;

/// The inbox in `SYNC_DATA_DIR` if an agent ever ran there; none is created.
pub(crate) fn existing_inbox(
    config: &crate::Config,
) -> Result<Option<crate::reverse::Inbox>, String> {
    let dir = &config.data_dir;
    if !crate::local_db::LocalDb::exists_in(dir) {
        return Ok(None);
    }
    let db = crate::local_db::LocalDb::open(dir).map_err(|e| e.to_string())?;
    crate::reverse::Inbox::open(db)
        .map(Some)
        .map_err(|e| e.to_string())
}
