//! The self-test's report: one line per behaviour checked (pass, FAIL with what to do, or skip
//! with why), rendered for a person, and whether the whole run passed. Running a check goes
//! through [`Report::run`], which bounds it in time and turns a panic into a failure, so that
//! one broken check never stops the others or the removal of the scratch objects.

use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

use crate::sqlserver::StoreError;

/// How long one check may take. The slowest ones wait on lock timeouts and notification
/// timeouts of about a second; a minute means something hangs.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// What the self-test looks at, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The server, the installed scripts and the server options the agent relies on.
    Server,
    /// The permissions of the agent's own login.
    Permissions,
    /// Creating and removing the scratch objects.
    Scratch,
    /// The change triggers `sp_SyncInstallChangeTrigger` generates.
    Triggers,
    /// Parameters and value round trips of every mapped type.
    Values,
    /// The queue statements: claims, leases, settlements, waiting on writers.
    Queue,
    /// `sp_NotifyAppOfSync`.
    Notify,
}

impl Group {
    pub fn label(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Permissions => "permissions",
            Self::Scratch => "scratch",
            Self::Triggers => "triggers",
            Self::Values => "values",
            Self::Queue => "queue",
            Self::Notify => "notify",
        }
    }
}

/// Why a check failed, and what the clinic's administrator should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub why: String,
    pub fix: String,
}

impl Failure {
    pub(crate) fn new(why: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            fix: fix.into(),
        }
    }

    /// A check whose expectation did not hold: the agent would misbehave on this server.
    pub(crate) fn unexpected(why: impl Into<String>) -> Self {
        Self::new(
            why,
            "this server does not behave as syncbridge relies on: keep the report and open an issue",
        )
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let fix = match e {
            StoreError::Unavailable(_) => "check that SQL Server is running and reachable with this connection string",
            // Classified by SQL Server's error number (tds::error), never by its text.
            StoreError::Misconfigured(_) => {
                "a permission or an object is missing: grant the permission (see the permissions lines; or use an administrator's login for MSSQL_SELFTEST_CONNECTION_STRING), or re-run the scripts in sql/sqlserver/"
            }
            _ => "re-run the scripts in sql/sqlserver/ (they are re-runnable) and try again; if it persists, open an issue with this report",
        };
        Self::new(e.to_string(), fix)
    }
}

/// What one check found. `Pass` may carry a detail worth showing (a time, a count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(Option<String>),
    Fail(Failure),
    Skip(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub group: Group,
    pub name: String,
    pub outcome: Outcome,
}

/// The whole run: every check, in the order run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

/// What a check returns: a detail for a pass, or why it failed.
pub(crate) type CheckResult = Result<Option<String>, Failure>;

impl Report {
    pub(crate) fn record(&mut self, group: Group, name: &str, outcome: Outcome) {
        self.checks.push(Check {
            group,
            name: name.to_owned(),
            outcome,
        });
    }

    pub(crate) fn skip(&mut self, group: Group, name: &str, why: impl Into<String>) {
        self.record(group, name, Outcome::Skip(why.into()));
    }

    /// Runs one check, bounded by [`CHECK_TIMEOUT`]; a panic inside it is a failure, not the
    /// end of the run. Returns whether it passed.
    pub(crate) async fn run(
        &mut self,
        group: Group,
        name: &str,
        check: impl Future<Output = CheckResult>,
    ) -> bool {
        self.run_within(CHECK_TIMEOUT, group, name, check).await
    }

    pub(crate) async fn run_within(
        &mut self,
        limit: Duration,
        group: Group,
        name: &str,
        check: impl Future<Output = CheckResult>,
    ) -> bool {
        let guarded = AssertUnwindSafe(check).catch_unwind();
        let outcome = match tokio::time::timeout(limit, guarded).await {
            Ok(Ok(Ok(detail))) => Outcome::Pass(detail),
            Ok(Ok(Err(failure))) => Outcome::Fail(failure),
            Ok(Err(panic)) => Outcome::Fail(Failure::unexpected(format!(
                "the check panicked: {}",
                panic_text(panic.as_ref())
            ))),
            Err(_) => Outcome::Fail(Failure::new(
                format!("did not finish within {} s", limit.as_secs()),
                "something on the server is blocking (an open transaction on the scratch objects?); run the self-test again when the server is quiet",
            )),
        };
        let passed = matches!(outcome, Outcome::Pass(_));
        self.record(group, name, outcome);
        passed
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// Every check passed or was skipped for a stated reason.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The process exit code for `syncbridge check --self-test`: 0 when everything passed.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.passed())
    }

    /// One line per check (`ok`, `FAIL` + what to do, `skip` + why), then a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let label = c.group.label();
            let _ = match &c.outcome {
                Outcome::Pass(None) => writeln!(out, "  ok    [{label}] {}", c.name),
                Outcome::Pass(Some(d)) => writeln!(out, "  ok    [{label}] {} ({d})", c.name),
                Outcome::Skip(why) => writeln!(out, "  skip  [{label}] {}: {why}", c.name),
                Outcome::Fail(f) => writeln!(
                    out,
                    "  FAIL  [{label}] {}: {}\n        what to do: {}",
                    c.name, f.why, f.fix
                ),
            };
        }
        let failed = self.failures().count();
        let skipped = self
            .checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Skip(_)))
            .count();
        let _ = match failed {
            0 => writeln!(
                out,
                "self-test passed: {} checks, {skipped} skipped",
                self.checks.len()
            ),
            n => writeln!(
                out,
                "self-test FAILED: {n} of {} checks failed, {skipped} skipped",
                self.checks.len()
            ),
        };
        out
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_failures_panics_and_timeouts_each_become_one_line() {
        let mut report = Report::default();
        assert!(report.run(Group::Queue, "passes", async { Ok(None) }).await);
        assert!(
            report
                .run(Group::Queue, "with detail", async {
                    Ok(Some("12 ms".into()))
                })
                .await
        );
        assert!(
            !report
                .run(Group::Queue, "fails", async {
                    Err(Failure::new("it broke", "mend it"))
                })
                .await
        );
        let panics = async {
            if report_is_empty() {
                panic!("boom");
            }
            Ok(None)
        };
        assert!(!report.run(Group::Triggers, "panics", panics).await);
        let hangs = std::future::pending::<CheckResult>();
        assert!(
            !report
                .run_within(Duration::from_millis(20), Group::Notify, "hangs", hangs)
                .await
        );
        report.skip(Group::Notify, "skipped", "OLE Automation is off");

        assert!(!report.passed());
        assert_eq!(report.exit_code(), 1);
        assert_eq!(report.failures().count(), 3);
        let text = report.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  ok    [queue] passes");
        assert_eq!(lines[1], "  ok    [queue] with detail (12 ms)");
        assert_eq!(lines[2], "  FAIL  [queue] fails: it broke");
        assert_eq!(lines[3], "        what to do: mend it");
        assert_eq!(
            lines[4],
            "  FAIL  [triggers] panics: the check panicked: boom"
        );
        assert!(lines[6].starts_with("  FAIL  [notify] hangs: did not finish within 0 s"));
        assert_eq!(lines[8], "  skip  [notify] skipped: OLE Automation is off");
        assert_eq!(
            lines.last(),
            Some(&"self-test FAILED: 3 of 6 checks failed, 1 skipped")
        );
    }

    fn report_is_empty() -> bool {
        true
    }

    #[test]
    fn skips_do_not_fail_the_run() {
        let mut report = Report::default();
        report.record(Group::Server, "version", Outcome::Pass(None));
        report.skip(Group::Notify, "reaches the agent", "OLE Automation is off");
        assert!(report.passed());
        assert_eq!(report.exit_code(), 0);
        assert!(report
            .render()
            .ends_with("self-test passed: 2 checks, 1 skipped\n"));
    }

    #[test]
    fn store_errors_say_what_to_do() {
        let f = Failure::from(StoreError::Unavailable("connection refused".into()));
        assert!(f.why.contains("connection refused"));
        assert!(f.fix.contains("reachable"));
        let denied = Failure::from(StoreError::Misconfigured(
            "SQL Server error 229: The SELECT permission was denied".into(),
        ));
        assert!(denied.fix.contains("grant"), "{denied:?}");
    }
}
