//! `syncbridge status [--json]`: what the running agent knows (`GET /api/sync/status`), or,
//! when no agent answers, what can be read directly: queue counts and the newest failures
//! from SQL Server, inbox depth, dead events and watermarks from the inbox file. Both answers
//! have one shape (`agent::status_report`); `--json` prints it, otherwise [`render`] makes a
//! table of it. Exit code 0 only when an agent runs and is ready.

mod render;

use std::process::ExitCode;

use serde_json::Value;

use super::agent_client::{AgentCallError, AgentClient};
use super::EXIT_FAILURE;
use crate::agent::status_report::offline_report;
use crate::Agent;

pub use render::render;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct StatusArgs {
    /// Print the status as JSON (the shape of GET /api/sync/status).
    #[arg(long)]
    pub json: bool,
}

/// The status and the exit code it deserves.
pub struct Status {
    pub json: Value,
    pub code: u8,
}

/// Asks the agent `agent` describes; reads its SQL Server and inbox itself when none answers.
pub async fn gather(agent: &Agent) -> Result<Status, String> {
    let client = AgentClient::new(&agent.config).map_err(|e| e.to_string())?;
    let why = match client.get("/api/sync/status").await {
        Ok(json) => {
            let ready = json["agent"]["ready"] == Value::Bool(true);
            let code = if ready { 0 } else { EXIT_FAILURE };
            return Ok(Status { json, code });
        }
        Err(e @ AgentCallError::NotRunning { .. }) => e.to_string(),
        Err(e) => return Err(e.to_string()),
    };
    let inbox = super::existing_inbox(&agent.config)?;
    let json = offline_report(agent.store.as_ref(), inbox.as_ref(), &why).await;
    Ok(Status {
        json,
        code: EXIT_FAILURE,
    })
}

/// `syncbridge status`.
pub async fn run(agent: Agent, args: &StatusArgs) -> ExitCode {
    match gather(&agent).await {
        Ok(status) => {
            if args.json {
                println!("{:#}", status.json);
            } else {
                print!("{}", render(&status.json));
            }
            ExitCode::from(status.code)
        }
        Err(why) => {
            eprintln!("syncbridge status: {why}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
