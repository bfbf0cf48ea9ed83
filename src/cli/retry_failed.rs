//! `syncbridge retry-failed [--table T] [--id N] [--event N]`: Failed queue items back to
//! Pending (no attempts made, due now) and dead inbox events back to live, after the cause was
//! fixed. A running agent does it itself (`POST /api/sync/retry-failed`) and wakes its workers,
//! so the items sync at once; with no agent running this does it directly on SQL Server and the
//! inbox file, and the agent's start-up takes them up.
//!
//! `--table` takes the SQL Server or the Supabase name of a mapped table (either side's items
//! of it); `--id` one queue item (`QueueID`), `--event` one dead event (its id in `status`).

use std::process::ExitCode;

use serde_json::json;

use super::agent_client::{AgentCallError, AgentClient};
use super::EXIT_FAILURE;
use crate::agent::retry_failed::{retry, Part, RetryReport, RetryScope, Selection};
use crate::mapping::TableMap;
use crate::sqlserver::same_identifier;
use crate::Agent;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct RetryFailedArgs {
    /// Only this table's items: its SQL Server name (tblX, dbo.tblX) or its Supabase name.
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Only this queue item (SyncQueue.QueueID); no inbox event unless --event is given too.
    #[arg(long, value_name = "QUEUE_ID")]
    pub id: Option<i64>,
    /// Only this dead inbox event (its id in `syncbridge status`); no queue item unless --id
    /// is given too.
    #[arg(long, value_name = "EVENT_ID")]
    pub event: Option<i64>,
}

/// What was done, and by whom.
pub struct Retried {
    /// The running agent did it (and woke its workers).
    pub by_agent: bool,
    /// `{"queue_items_reset": n, "dead_events_revived": n}` (a side not asked for is absent; one
    /// that failed is `{"error": ...}`).
    pub report: serde_json::Value,
    pub text: String,
    pub code: u8,
}

/// The queue's `TableName` and the inbox's table for `table`: as the map names them when it
/// maps `table` (SQL Server name bare for dbo, as the change trigger writes it), else as given.
fn names(map: &TableMap, table: &str) -> (String, String) {
    let bare = |name: &str| {
        let name = name.trim().replace(['[', ']'], "");
        match name.split_once('.') {
            Some((schema, rest)) if schema.eq_ignore_ascii_case("dbo") => rest.to_owned(),
            _ => name,
        }
    };
    let wanted = bare(table);
    map.tables
        .iter()
        .find(|t| {
            same_identifier(&bare(&t.source), &wanted)
                || same_identifier(&t.target_table(), &wanted)
        })
        .map(|t| (bare(&t.source), t.target_table()))
        .unwrap_or_else(|| (wanted.clone(), wanted))
}

pub(crate) fn scope(map: &TableMap, args: &RetryFailedArgs) -> RetryScope {
    let (queue_table, inbox_table) = match &args.table {
        Some(t) => {
            let (q, i) = names(map, t);
            (Some(q), Some(i))
        }
        None => (None, None),
    };
    let queue = (args.event.is_none() || args.id.is_some()).then_some(Selection {
        table: queue_table,
        id: args.id,
    });
    let inbox = (args.id.is_none() || args.event.is_some()).then_some(Selection {
        table: inbox_table,
        id: args.event,
    });
    RetryScope { queue, inbox }
}

/// Asks the running agent to retry; does it directly when none answers.
pub async fn execute(agent: &Agent, args: &RetryFailedArgs) -> Result<Retried, String> {
    let scope = scope(&agent.map, args);
    let client = AgentClient::new(&agent.config).map_err(|e| e.to_string())?;
    let body = json!(scope);
    let (by_agent, report, note) = match client.post("/api/sync/retry-failed", &body).await {
        Ok(answer) => {
            let report: RetryReport = serde_json::from_value(answer["result"].clone())
                .map_err(|e| format!("the agent answered something unexpected: {e}"))?;
            let note = format!(
                "done by the agent on {}, which synced them at once",
                client.addr()
            );
            (true, report, note)
        }
        Err(e @ AgentCallError::NotRunning { .. }) => {
            let inbox = super::existing_inbox(&agent.config)?;
            let report = retry(agent.store.as_ref(), inbox.as_ref(), &scope).await;
            let note = format!("{e}: done directly; the agent takes them up when it starts");
            (false, report, note)
        }
        Err(e) => return Err(e.to_string()),
    };
    let failed = [&report.queue_items_reset, &report.dead_events_revived]
        .into_iter()
        .flatten()
        .any(Part::is_failed);
    let text = describe(&report, &note);
    let code = if failed { EXIT_FAILURE } else { 0 };
    Ok(Retried {
        by_agent,
        report: json!(report),
        text,
        code,
    })
}

fn describe(report: &RetryReport, note: &str) -> String {
    let part = |p: &Part| match p {
        Part::Done(n) => n.to_string(),
        Part::Failed { error } => format!("FAILED: {error}"),
    };
    let mut out = String::from("syncbridge retry-failed\n");
    if let Some(p) = &report.queue_items_reset {
        out.push_str(&format!(
            "  Failed queue items back to Pending: {}\n",
            part(p)
        ));
    }
    if let Some(p) = &report.dead_events_revived {
        out.push_str(&format!("  dead inbox events revived: {}\n", part(p)));
    }
    out.push_str(&format!("  ({note})\n"));
    out
}

/// `syncbridge retry-failed`.
pub async fn run(agent: Agent, args: &RetryFailedArgs) -> ExitCode {
    match execute(&agent, args).await {
        Ok(done) => {
            print!("{}", done.text);
            ExitCode::from(done.code)
        }
        Err(why) => {
            eprintln!("syncbridge retry-failed: {why}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(table: Option<&str>, id: Option<i64>, event: Option<i64>) -> RetryFailedArgs {
        RetryFailedArgs {
            table: table.map(str::to_owned),
            id,
            event,
        }
    }

    #[test]
    fn a_table_is_found_by_either_name_and_each_flag_selects_its_side() {
        let map = TableMap::sample_clinic();
        let both = |q: Option<&str>, i: Option<&str>| (q.map(str::to_owned), i.map(str::to_owned));
        for given in [
            "tblAlignerNotes",
            "dbo.tblalignernotes",
            "[dbo].[tblAlignerNotes]",
            "aligner_notes",
        ] {
            let s = scope(&map, &args(Some(given), None, None));
            assert_eq!(
                (s.queue.and_then(|q| q.table), s.inbox.and_then(|i| i.table)),
                both(Some("tblAlignerNotes"), Some("aligner_notes")),
                "{given}"
            );
        }
        let unknown = scope(&map, &args(Some("tblNope"), None, None));
        assert_eq!(
            unknown.queue.and_then(|q| q.table).as_deref(),
            Some("tblNope")
        );
        assert_eq!(
            scope(&map, &args(None, None, None)),
            RetryScope::everything()
        );
        let one_item = scope(&map, &args(None, Some(5), None));
        assert_eq!(one_item.queue.map(|q| q.id), Some(Some(5)));
        assert_eq!(one_item.inbox, None);
        let one_event = scope(&map, &args(None, None, Some(7)));
        assert_eq!(
            (one_event.queue, one_event.inbox.map(|i| i.id)),
            (None, Some(Some(7)))
        );
    }
}
