//! `syncbridge verify [--table T]... [--fix]`: are both sides the same? Table by table (parents
//! first): row counts, then a summary per key-hash range of each side's rows (count and summed
//! row digests, [`digest`]), and only for the ranges that differ a second read keeping those
//! ranges' rows, compared column by column ([`scan`]). Both sides' rows are read as typed
//! values and put in one canonical form in the agent, so no server's text formatting can make
//! equal values differ. Prints the keys missing on either side and the rows that differ (which
//! columns); exits 1 when anything differs. `--fix` repairs each difference in the direction
//! column ownership gives ([`repair::direction`]) and reports what it queued and wrote.
//!
//! Reads only: one pass over each side when nothing differs, a second pass when something
//! does, memory bounded by the rows of the differing ranges.

mod digest;
mod repair;
mod scan;

use std::process::ExitCode;

use serde_json::json;

use self::repair::repair;
pub use self::repair::Repaired;
use self::scan::{Difference, ScanError, Sides};
use super::agent_client::AgentClient;
use super::mapped::{self, key_columns, MappedError};
use super::EXIT_FAILURE;
use crate::sqlserver::StoreError;
use crate::supabase::{PostgrestClient, PostgrestError, SupabaseApi, TargetSchema};
use crate::Agent;

/// Rows per request on either side.
const PAGE: usize = 1000;
/// Keys and rows listed per kind and table; the counts are always complete.
const SHOWN: usize = 20;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct VerifyArgs {
    /// Only this table (repeatable): its SQL Server or its Supabase name.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Queue (or write back) the repairs, in the direction column ownership decides.
    #[arg(long)]
    pub fix: bool,
}

/// Why verify could not finish.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct VerifyError(Fault);

#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error(transparent)]
    Tables(#[from] MappedError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("Supabase's schema: {0}")]
    Schema(#[from] PostgrestError),
    #[error("repairing: {0}")]
    Repair(#[from] StoreError),
}

impl<T: Into<Fault>> From<T> for VerifyError {
    fn from(e: T) -> Self {
        Self(e.into())
    }
}

/// One table compared.
#[derive(Debug, Clone, PartialEq)]
pub struct TableVerdict {
    /// The SQL Server table (as the queue names it) and the Supabase table.
    pub table: String,
    pub target: String,
    pub sql_rows: u64,
    pub supabase_rows: u64,
    /// Key-hash ranges whose summaries differ.
    pub ranges_differing: usize,
    /// Keys (RecordID JSON) in SQL Server only.
    pub missing_in_supabase: Vec<String>,
    /// Keys in Supabase only.
    pub missing_in_sql_server: Vec<String>,
    /// Keys on both sides whose rows differ, with the Supabase columns that differ.
    pub differing: Vec<(String, Vec<String>)>,
    /// What `--fix` did, when asked.
    pub repaired: Option<Repaired>,
}

impl TableVerdict {
    pub fn differs(&self) -> bool {
        self.ranges_differing > 0 || self.sql_rows != self.supabase_rows
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub tables: Vec<TableVerdict>,
    /// `--fix` queued items and a running agent was told.
    pub agent_woken: bool,
}

impl VerifyReport {
    pub fn differs(&self) -> bool {
        self.tables.iter().any(TableVerdict::differs)
    }
}

fn verdict(
    table: &str,
    target: &str,
    counts: (u64, u64),
    ranges: usize,
    diffs: &[Difference],
) -> TableVerdict {
    let mut v = TableVerdict {
        table: table.to_owned(),
        target: target.to_owned(),
        sql_rows: counts.0,
        supabase_rows: counts.1,
        ranges_differing: ranges,
        missing_in_supabase: Vec::new(),
        missing_in_sql_server: Vec::new(),
        differing: Vec::new(),
        repaired: None,
    };
    for d in diffs {
        match d {
            Difference::MissingInSupabase { key } => v.missing_in_supabase.push(key.to_json()),
            Difference::MissingInSqlServer { key, .. } => {
                v.missing_in_sql_server.push(key.to_json());
            }
            Difference::Differs { key, columns, .. } => {
                v.differing.push((key.to_json(), columns.clone()));
            }
        }
    }
    v
}

/// Compares the tables `args` names (and repairs them with `--fix`) over `supabase`.
pub async fn execute(
    agent: &Agent,
    supabase: &dyn SupabaseApi,
    args: &VerifyArgs,
) -> Result<VerifyReport, VerifyError> {
    let store = agent.store.as_ref();
    let target = TargetSchema::from_openapi(&supabase.schema().await?);
    let map = mapped::resolve(store, &agent.map, Some(&target)).await?;
    let sides = Sides {
        store,
        supabase,
        page: PAGE,
    };
    let mut tables = Vec::new();
    let mut queued = 0;
    for table in mapped::select(&map, &args.tables)? {
        let (sql_rows, supa_rows, ranges) = sides.summarise(table).await?;
        let diffs = if ranges.is_empty() {
            Vec::new()
        } else {
            sides.differences(table, &ranges).await?
        };
        let mut v = verdict(
            table.source(),
            &table.target,
            (sql_rows, supa_rows),
            ranges.len(),
            &diffs,
        );
        if args.fix && !diffs.is_empty() {
            let done = repair(store, table, &key_columns(table), &diffs).await?;
            queued += done.queued_forward;
            v.repaired = Some(done);
        }
        tables.push(v);
    }
    let mut agent_woken = false;
    if queued > 0 {
        if let Ok(client) = AgentClient::new(&agent.config) {
            agent_woken = client
                .post("/api/sync/queue-notify", &json!({"source": "verify"}))
                .await
                .is_ok();
        }
    }
    Ok(VerifyReport {
        tables,
        agent_woken,
    })
}

fn listed(out: &mut String, what: &str, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    out.push_str(&format!("    {what}: {}\n", keys.len()));
    for k in keys.iter().take(SHOWN) {
        out.push_str(&format!("      {k}\n"));
    }
    if keys.len() > SHOWN {
        out.push_str(&format!("      ... and {} more\n", keys.len() - SHOWN));
    }
}

/// The report as the command prints it.
pub fn render(report: &VerifyReport) -> String {
    let mut out = String::from("syncbridge verify\n");
    for t in &report.tables {
        let state = if t.differs() { "DIFFERS" } else { "same" };
        out.push_str(&format!(
            "  {:<20} → {:<16} {:>9} rows in SQL Server, {:>9} in Supabase: {state}\n",
            t.table, t.target, t.sql_rows, t.supabase_rows
        ));
        listed(&mut out, "only in SQL Server", &t.missing_in_supabase);
        listed(&mut out, "only in Supabase", &t.missing_in_sql_server);
        let differing: Vec<String> = t
            .differing
            .iter()
            .map(|(k, cols)| format!("{k}: {}", cols.join(", ")))
            .collect();
        listed(&mut out, "rows that differ (columns)", &differing);
        if let Some(r) = &t.repaired {
            out.push_str(&format!(
                "    fixed: {} queued for Supabase, {} written into SQL Server, {} left\n",
                r.queued_forward, r.written_back, r.left
            ));
        }
    }
    if report
        .tables
        .iter()
        .any(|t| t.repaired.as_ref().is_some_and(|r| r.queued_forward > 0))
    {
        out.push_str(if report.agent_woken {
            "  (the running agent was woken and sends the queued repairs now)\n"
        } else {
            "  (no agent answered: the queued repairs are sent when it starts)\n"
        });
    }
    out
}

/// `syncbridge verify`: exit code 0 when both sides are the same, 1 when anything differs
/// (also after `--fix`: run it again once the agent has sent the repairs).
pub async fn run(agent: Agent, args: &VerifyArgs) -> ExitCode {
    let c = &agent.config;
    let supabase = match PostgrestClient::new(
        &c.supabase_url,
        &c.service_key,
        c.service_key_kind,
        c.supabase_timeout,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("syncbridge verify: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    match execute(&agent, &supabase, args).await {
        Ok(report) => {
            print!("{}", render(&report));
            ExitCode::from(if report.differs() { EXIT_FAILURE } else { 0 })
        }
        Err(e) => {
            eprintln!("syncbridge verify: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
