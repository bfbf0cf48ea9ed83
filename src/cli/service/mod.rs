//! `syncbridge service install|uninstall|start|stop`: syncbridge as a Windows service (the
//! windows-service crate). Installed to start at boot under LocalSystem, it runs `run` with its
//! working directory set to the binary's folder (so `.env`, `data\` and `logs\` are found
//! there), and a stop request cancels the agent's shutdown token: the HTTP server stops
//! accepting, the batch in flight settles, and the process exits within the agent's shutdown
//! bound (30 s; the service manager is told to wait that long). On other systems these commands
//! only explain themselves: there a unit file (systemd) runs `syncbridge run`.

#[cfg(windows)]
mod windows;

use std::process::ExitCode;

/// The name the service is registered under (`sc.exe query syncbridge`).
pub const SERVICE_NAME: &str = "syncbridge";

#[derive(clap::Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceCommand {
    /// Register with the service manager: starts at boot, runs `run` in the binary's folder.
    Install,
    /// Stop the service if it runs, then remove it.
    Uninstall,
    /// Start the installed service.
    Start,
    /// Stop the service gracefully (in-flight work settles first).
    Stop,
    /// The entry point the service manager starts; not for use by hand.
    #[command(hide = true)]
    Run,
}

/// Runs `command` (Windows only).
pub fn run(command: ServiceCommand) -> ExitCode {
    #[cfg(windows)]
    {
        windows::run(command)
    }
    #[cfg(not(windows))]
    {
        let _ = command;
        eprintln!(
            "syncbridge service: Windows services exist on Windows only; elsewhere let the \
             system's service manager run `syncbridge run` in the folder of .env (see README)"
        );
        ExitCode::from(super::EXIT_FAILURE)
    }
}
