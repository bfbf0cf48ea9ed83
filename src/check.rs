//! `syncbridge check`: validates the configuration end to end — SQL Server reachable and every
//! mapped table and column present with a convertible type, the queue installed, OLE Automation
//! on, a notify URL set and a change trigger on every mapped table, Supabase
//! reachable with this key and every target table, key and synced column present with a
//! compatible type, columns that exist on one side only listed (they are not synced) — and
//! prints a readable report. `--self-test` then proves the SQL Server behaviours
//! themselves ([`crate::sqlserver::tds::self_test`]); [`self_test_config`] prepares it.

use std::fmt::Write as _;

use crate::config::{Config, ConfigError, Problem};
use crate::mapping::table_map::{ROW_VERSION_COLUMN, SYNC_VERSIONS_COLUMN};
use crate::mapping::{ResolvedMap, TableMap};
use crate::sqlserver::tds::self_test::{NotifyTarget, SelfTestConfig, TableNeeds};
use crate::sqlserver::SqlType;
use crate::sqlserver::{DescribedTables, SetupReport, SqlStore};
use crate::supabase::{SupabaseApi, TargetSchema};

/// A login allowed to create and drop the self-test's scratch schema (db_owner or
/// db_ddladmin), when the agent's own least-privilege login is not. Read only by the self-test.
pub const SELF_TEST_ADMIN_KEY: &str = "MSSQL_SELFTEST_CONNECTION_STRING";

/// The self-test's settings: the agent's login and address from `config`, what the table map
/// needs that login to do, and an administrator's login from [`SELF_TEST_ADMIN_KEY`] if set.
pub fn self_test_config(
    config: &Config,
    map: &TableMap,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<SelfTestConfig, ConfigError> {
    let admin = match lookup(SELF_TEST_ADMIN_KEY).filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(ado) => Some(tiberius::Config::from_ado_string(&ado).map_err(|_| {
            ConfigError(vec![Problem {
                key: SELF_TEST_ADMIN_KEY,
                message: "is not a valid ADO connection string".to_owned(),
            }])
        })?),
    };
    let needs = map
        .tables
        .iter()
        .map(|t| {
            let reverse = t.reverse.as_ref();
            TableNeeds {
                table: t.source.clone(),
                select: true,
                insert: reverse.is_some_and(|r| r.insert),
                update: reverse.is_some_and(|r| r.update),
                delete: reverse.is_some_and(|r| r.delete),
            }
        })
        .collect();
    let tokens = std::iter::once(config.admin_token.clone())
        .chain(config.notify_token.clone())
        .collect();
    Ok(SelfTestConfig {
        agent: config.mssql_config()?,
        admin,
        needs,
        notify: NotifyTarget {
            listen: Some(config.listen_addr),
            tokens,
        },
        only: None,
    })
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub lines: Vec<String>,
    pub problems: usize,
    /// Things that do not stop sync but that the operator should know (columns on one side
    /// only, which are not synced).
    pub warnings: usize,
}

impl CheckReport {
    fn ok(&mut self, line: impl Into<String>) {
        self.lines.push(format!("  ok    {}", line.into()));
    }

    fn fail(&mut self, line: impl Into<String>) {
        self.problems += 1;
        self.lines.push(format!("  FAIL  {}", line.into()));
    }

    fn warn(&mut self, line: impl Into<String>) {
        self.warnings += 1;
        self.lines.push(format!("  WARN  {}", line.into()));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = match (self.problems, self.warnings) {
            (0, 0) => writeln!(out, "all checks passed"),
            (0, w) => writeln!(out, "all checks passed ({w} warning(s))"),
            (n, _) => writeln!(out, "{n} problem(s) found"),
        };
        out
    }
}

/// PostgreSQL types (as PostgREST's OpenAPI `format`) that can hold a SQL Server type exactly.
fn compatible(sql: &SqlType, pg: &str) -> bool {
    let pg = pg.split('(').next().unwrap_or(pg).trim();
    match sql {
        SqlType::Int { .. } => matches!(pg, "smallint" | "integer" | "bigint" | "numeric"),
        SqlType::Decimal { .. } | SqlType::Money => pg == "numeric",
        SqlType::Bit => pg == "boolean",
        SqlType::Text { .. } => matches!(pg, "text" | "character varying" | "character" | "citext"),
        SqlType::Date => pg == "date",
        SqlType::DateTime | SqlType::DateTime2 { .. } => pg.starts_with("timestamp"),
        SqlType::DateTimeOffset { .. } => pg == "timestamp with time zone",
        SqlType::Guid => matches!(pg, "uuid" | "text"),
        SqlType::Binary { .. } => pg == "bytea",
        SqlType::Float => matches!(pg, "double precision" | "real" | "numeric"),
        SqlType::Unsupported(_) => false,
    }
}

pub async fn run_checks(
    store: &dyn SqlStore,
    supabase: &dyn SupabaseApi,
    map: &TableMap,
) -> CheckReport {
    let mut report = CheckReport::default();
    let described = match store.ping().await {
        Err(e) => {
            report.fail(format!("SQL Server: {e}"));
            None
        }
        Ok(()) => {
            report.ok("SQL Server reachable");
            check_sql_server(store, map, &mut report).await
        }
    };
    match supabase.schema().await {
        Err(e) => report.fail(format!("Supabase: {e}")),
        Ok(spec) => {
            report.ok("Supabase reachable with the service key");
            let target = TargetSchema::from_openapi(&spec);
            let resolved =
                described.and_then(|d| ResolvedMap::resolve_against(map, &d, Some(&target)).ok());
            if let Some(resolved) = &resolved {
                check_supabase(&target, resolved, &mut report);
            }
        }
    }
    report
}

/// Checks the queue's set-up and resolves the map against SQL Server's catalog; the catalog's
/// description when the map matches it.
async fn check_sql_server(
    store: &dyn SqlStore,
    map: &TableMap,
    report: &mut CheckReport,
) -> Option<DescribedTables> {
    for table in ["SyncQueue", "SyncConfig"] {
        match store.describe_table(table).await {
            Ok(Some(_)) => report.ok(format!("SQL Server table {table} installed")),
            Ok(None) => report.fail(format!(
                "SQL Server table {table} is missing: run the scripts in sql/sqlserver/"
            )),
            Err(e) => report.fail(format!("SQL Server {table}: {e}")),
        }
    }
    match store.setup_report().await {
        Ok(setup) => check_setup(&setup, map, report),
        Err(e) => report.fail(format!("reading the sync set-up: {e}")),
    }
    let described = match DescribedTables::read(store, map.sources()).await {
        Ok(d) => d,
        Err(e) => {
            report.fail(format!("reading the SQL Server catalog: {e}"));
            return None;
        }
    };
    match ResolvedMap::resolve(map, &described) {
        Ok(resolved) => {
            for t in &resolved.tables {
                report.ok(format!(
                    "SQL Server {} ({} columns)",
                    t.name.qualified(),
                    t.columns.len()
                ));
            }
            Some(described)
        }
        Err(problems) => {
            problems.0.iter().for_each(|p| report.fail(p.to_string()));
            None
        }
    }
}

/// Notifications are the forward path's only wake-up (besides start-up and manual triggers),
/// so a missing trigger or a disabled OLE Automation means silently late data: say so.
fn check_setup(setup: &SetupReport, map: &TableMap, report: &mut CheckReport) {
    if setup.ole_automation {
        report.ok("OLE Automation Procedures enabled (sp_NotifyAppOfSync can notify)");
    } else {
        report.fail("OLE Automation Procedures is off: SQL Server cannot notify the agent (sql/sqlserver/04_notify.sql)");
    }
    match &setup.notify_url {
        Some(url) => report.ok(format!("SyncConfig.NotifyUrl = {url}")),
        None => report.fail("SyncConfig.NotifyUrl is empty: notifications are off"),
    }
    for table in &map.tables {
        let name = table.source_name();
        let qualified = name.qualified();
        if setup.tables_with_trigger.iter().any(|t| name.is(t)) {
            report.ok(format!("change trigger on {qualified}"));
        } else {
            report.fail(format!(
                "no change trigger on {qualified}: EXEC dbo.sp_SyncInstallChangeTrigger @Table = N'{qualified}', @KeyColumns = N'{}'",
                table.keys.join(", ")
            ));
        }
    }
}

/// Every target table exposed, every key and synced column of a type that holds the SQL Server
/// type exactly, the version column present; columns on one side only listed as warnings.
fn check_supabase(target: &TargetSchema, map: &ResolvedMap, report: &mut CheckReport) {
    for table in &map.tables {
        let Some(columns) = target.columns(&table.target) else {
            report.fail(format!(
                "Supabase table {} does not exist (or is not exposed by PostgREST)",
                table.target
            ));
            continue;
        };
        let mut bad = 0;
        for col in &table.columns {
            match columns.get(&col.target) {
                None => {
                    bad += 1;
                    report.fail(format!(
                        "{}.{} (a key column) does not exist in Supabase",
                        table.target, col.target
                    ));
                }
                Some(pg) if !compatible(&col.source.sql_type, pg) => {
                    bad += 1;
                    report.fail(format!(
                        "{}.{} is {pg} in Supabase, which cannot hold SQL Server {:?} exactly",
                        table.target, col.target, col.source.sql_type
                    ));
                }
                Some(_) => {}
            }
        }
        // Portal-owned columns need their per-column versions (README "Who wins").
        if table.has_portal_owned() && !columns.contains_key(SYNC_VERSIONS_COLUMN) {
            bad += 1;
            report.fail(format!(
                "{}.{SYNC_VERSIONS_COLUMN} (the versions of its portal-owned columns) does not exist in Supabase: run sql/supabase/03_versions.sql",
                table.target
            ));
        }
        // Not a failure: the table syncs as before, only without the guard against a late
        // write (README "Who wins").
        if !columns.contains_key(ROW_VERSION_COLUMN) {
            report.warn(format!(
                "{}.{ROW_VERSION_COLUMN} (the clinic's row version) does not exist in Supabase, so a forward write given up on can land after a newer one: run sql/supabase/04_row_versions.sql",
                table.target
            ));
        }
        if let Some(reverse) = &table.spec.reverse {
            if !columns.contains_key(&reverse.version_column) {
                bad += 1;
                report.fail(format!(
                    "{}.{} (the version column) does not exist in Supabase",
                    table.target, reverse.version_column
                ));
            }
        }
        if bad == 0 {
            report.ok(format!("Supabase {} matches", table.target));
        }
    }
    for drift in &map.drift {
        report.warn(drift.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_compatibility() {
        assert!(compatible(&SqlType::Money, "numeric(19,4)"));
        assert!(!compatible(&SqlType::Money, "double precision"));
        assert!(compatible(
            &SqlType::DateTimeOffset { scale: 3 },
            "timestamp with time zone"
        ));
        assert!(!compatible(
            &SqlType::DateTimeOffset { scale: 3 },
            "timestamp without time zone"
        ));
        assert!(compatible(&SqlType::Guid, "uuid"));
        assert!(compatible(&SqlType::Binary { max_bytes: None }, "bytea"));
        assert!(!compatible(&SqlType::Bit, "integer"));
    }
}
