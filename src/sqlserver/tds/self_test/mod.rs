//! `syncbridge check --self-test`: proves, on the clinic's own SQL Server, every SQL Server
//! behaviour the agent relies on, with the agent's own statements and the installed scripts'
//! own procedures, in scratch objects it creates under a unique schema and always removes.
//! `tests/mssql_self_test.rs` runs exactly this against a test server, so a green self-test
//! and a green test run mean the same thing.
//!
//! - `report`: the lines, outcomes and rendering; running one check safely;
//! - `scratch`: the scratch schema (naming, creation, removal whatever happens, sweeping what a
//!   killed run left);
//! - `bench`: the agent stores and clinic connections over the scratch objects;
//! - `server_checks`, `trigger_checks`, `value_checks`, `queue_checks`, `notify_checks`: the
//!   checks, one group each. `queue_checks` is written against the `SqlStore` trait and also
//!   runs against the in-memory double.

mod bench;
mod notify_checks;
mod queue_checks;
mod report;
mod scratch;
mod server_checks;
mod trigger_checks;
mod value_checks;

use chrono::Utc;

use self::bench::Bench;
pub use self::notify_checks::NotifyTarget;
use self::report::Outcome as O;
pub use self::report::{Check, Failure, Group, Outcome, Report};
use self::scratch::{scratch_name, sweep, with_scratch, TdsScratch};
pub use self::server_checks::TableNeeds;

/// What the self-test needs to know.
pub struct SelfTestConfig {
    /// The agent's own login (MSSQL_CONNECTION_STRING): the permission checks run as it.
    pub agent: tiberius::Config,
    /// A login that may create and drop a schema with tables and triggers (db_owner or
    /// db_ddladmin), for the scratch objects; the agent's own when `None`.
    pub admin: Option<tiberius::Config>,
    /// What the table map needs the agent's login to do, per table.
    pub needs: Vec<TableNeeds>,
    pub notify: NotifyTarget,
    /// Only these groups (all when `None`); the tests run one group at a time this way.
    pub only: Option<Vec<Group>>,
}

impl SelfTestConfig {
    fn wants(&self, group: Group) -> bool {
        self.only.as_ref().is_none_or(|g| g.contains(&group))
    }
}

/// Runs the self-test and returns its report (render it; exit with `exit_code()`).
pub async fn run(config: &SelfTestConfig) -> Report {
    let mut report = Report::default();
    let admin = config.admin.clone().unwrap_or_else(|| config.agent.clone());
    let server = self::server_checks::run_server(&admin, &mut report).await;
    if !server.reachable {
        // Nothing else can be checked.
        return report;
    }
    if config.wants(Group::Permissions) {
        self::server_checks::run_permissions(&config.agent, &config.needs, &mut report).await;
    }
    let scratch_groups = [Group::Triggers, Group::Values, Group::Queue, Group::Notify];
    if !scratch_groups.iter().any(|g| config.wants(*g)) {
        return report;
    }
    if !server.installed {
        report.skip(
            Group::Scratch,
            "the checks on scratch objects",
            "they use the installed scripts' procedures",
        );
        return report;
    }
    match sweep(&admin, Utc::now()).await {
        Ok(swept) if !swept.is_empty() => report.record(
            Group::Scratch,
            "remove scratch schemas left by interrupted runs",
            O::Pass(Some(swept.join(", "))),
        ),
        Ok(_) => {}
        Err(f) => report.record(
            Group::Scratch,
            "remove scratch schemas left by interrupted runs",
            O::Fail(f),
        ),
    }
    let scratch = TdsScratch {
        admin: admin.clone(),
        schema: scratch_name(Utc::now()),
    };
    with_scratch(&scratch, &mut report, async |report: &mut Report| {
        let bench = Bench::new(admin.clone(), &scratch.schema);
        if config.wants(Group::Triggers) {
            self::trigger_checks::run(&bench, report).await;
        }
        if config.wants(Group::Values) {
            self::value_checks::run(&bench, report).await;
        }
        if config.wants(Group::Queue) {
            self::queue_checks::run(&bench, report).await;
        }
        if config.wants(Group::Notify) {
            self::notify_checks::run(&bench, &config.notify, report).await;
        }
        // The bench's connections close here, before the scratch objects are dropped.
    })
    .await;
    report
}
