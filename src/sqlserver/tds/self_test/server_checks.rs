//! The server checks (version, the installed syncbridge objects, the 'nested triggers' option)
//! and the permission checks, which run as the agent's own login: what the table map needs it to
//! read and write, and the queue, each missing grant named with the statement that adds it.

use tiberius::Query;

use super::bench::scalar;
use super::report::{CheckResult, Failure, Group, Report};
use super::scratch::plain;
use crate::sqlserver::tds::catalog::{parse_table_name, quote};
use crate::sqlserver::tds::exec::first_result;

/// What the agent's login must be allowed on one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNeeds {
    /// `table` or `schema.table`.
    pub table: String,
    pub select: bool,
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
}

impl TableNeeds {
    fn permissions(&self) -> Vec<&'static str> {
        [
            (self.select, "SELECT"),
            (self.insert, "INSERT"),
            (self.update, "UPDATE"),
            (self.delete, "DELETE"),
        ]
        .into_iter()
        .filter_map(|(needed, p)| needed.then_some(p))
        .collect()
    }
}

/// The queue's own needs, whatever the map: claims and settlements update SyncQueue, stats and
/// waits read it, nothing else is read from SyncConfig.
pub(crate) fn queue_needs() -> Vec<TableNeeds> {
    let needs = |table: &str, update| TableNeeds {
        table: table.to_owned(),
        select: true,
        insert: false,
        update,
        delete: false,
    };
    vec![needs("dbo.SyncQueue", true), needs("dbo.SyncConfig", false)]
}

/// The objects the scripts install, each as (kind, name): what `missing_objects_sql` looks for.
const OBJECTS: &[(&str, &str)] = &[
    ("U", "dbo.SyncQueue"),
    ("U", "dbo.SyncConfig"),
    ("P", "dbo.sp_SyncInstallQueue"),
    ("P", "dbo.sp_SyncInstallChangeTrigger"),
    ("P", "dbo.sp_SyncRemoveChangeTrigger"),
    ("P", "dbo.sp_NotifyAppOfSync"),
    ("TR", "dbo.trg_SyncQueue_NotifyApp"),
];

/// One row per missing object, index or parameter (of the current script versions).
fn missing_objects_sql() -> String {
    let objects = OBJECTS
        .iter()
        .map(|(kind, name)| {
            format!("SELECT N'{name}' WHERE OBJECT_ID(N'{name}', N'{kind}') IS NULL")
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL ");
    format!(
        "{objects}
UNION ALL SELECT N'index ' + i.n FROM (VALUES (N'IX_SyncQueue_Status_QueueID'), (N'IX_SyncQueue_Record')) AS i (n)
    WHERE NOT EXISTS (SELECT 1 FROM sys.indexes AS x WHERE x.object_id = OBJECT_ID(N'dbo.SyncQueue') AND x.name = i.n)
UNION ALL SELECT N'LOCK_ESCALATION = DISABLE on dbo.SyncQueue' FROM sys.tables AS t
    WHERE t.object_id = OBJECT_ID(N'dbo.SyncQueue') AND t.lock_escalation_desc <> N'DISABLE'
UNION ALL SELECT N'the current ' + p.proc_name FROM (VALUES
        (N'dbo.sp_SyncInstallChangeTrigger', N'@QueueSchema'), (N'dbo.sp_NotifyAppOfSync', N'@TargetUrl')) AS p (proc_name, param)
    WHERE NOT EXISTS (SELECT 1 FROM sys.parameters AS x WHERE x.object_id = OBJECT_ID(p.proc_name) AND x.name = p.param);"
    )
}

/// What the server checks found that decides what else can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Server {
    pub(crate) reachable: bool,
    pub(crate) installed: bool,
}

pub(crate) async fn run_server(admin: &tiberius::Config, report: &mut Report) -> Server {
    let g = Group::Server;
    let reachable = report
        .run(
            g,
            "SQL Server reachable, version 2017 (14.x) or later",
            version(admin),
        )
        .await;
    if !reachable {
        return Server {
            reachable,
            installed: false,
        };
    }
    let installed = report
        .run(
            g,
            "the sql/sqlserver/ scripts are installed (current versions)",
            installed(admin),
        )
        .await;
    report
        .run(
            g,
            "server option 'nested triggers' is on (cascades and notifications)",
            nested_triggers(admin),
        )
        .await;
    Server {
        reachable,
        installed,
    }
}

async fn version(admin: &tiberius::Config) -> CheckResult {
    let mut c = plain(admin).await?;
    let rows = first_result(
        Query::new(
            "SELECT CONVERT(int, SERVERPROPERTY('ProductMajorVersion')),
                    CONVERT(nvarchar(128), SERVERPROPERTY('ProductVersion')),
                    CONVERT(nvarchar(128), SERVERPROPERTY('Edition'));",
        ),
        &mut c,
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| Failure::unexpected("no version row"))?;
    let major = row.try_get::<i32, _>(0).ok().flatten().unwrap_or(0);
    let text = |i| {
        row.try_get::<&str, _>(i)
            .ok()
            .flatten()
            .unwrap_or("?")
            .to_owned()
    };
    let detail = format!("{} {}", text(1), text(2));
    if major >= 14 {
        Ok(Some(detail))
    } else {
        Err(Failure::new(
            format!("this is SQL Server {detail}"),
            "syncbridge needs SQL Server 2017 or later (Express is fine)",
        ))
    }
}

async fn installed(admin: &tiberius::Config) -> CheckResult {
    let mut c = plain(admin).await?;
    let rows = first_result(Query::new(missing_objects_sql()), &mut c).await?;
    let missing: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<&str, _>(0).ok().flatten().map(str::to_owned))
        .collect();
    if missing.is_empty() {
        Ok(None)
    } else {
        Err(Failure::new(
            format!("missing: {}", missing.join(", ")),
            "run sql/sqlserver/*.sql in file-name order (they are re-runnable), then re-install your own tables' triggers with sp_SyncInstallChangeTrigger",
        ))
    }
}

async fn nested_triggers(admin: &tiberius::Config) -> CheckResult {
    let mut c = plain(admin).await?;
    let on = scalar(
        &mut c,
        Query::new("SELECT CONVERT(int, c.value_in_use) FROM sys.configurations AS c WHERE c.name = N'nested triggers';"),
    )
    .await?;
    if on == Some(1) {
        Ok(None)
    } else {
        Err(Failure::new(
            "with 'nested triggers' off no trigger fires from inside another: the notification trigger never runs and changes made by your own triggers are never queued",
            "EXEC sp_configure 'nested triggers', 1; RECONFIGURE; (a sysadmin; it is SQL Server's default)",
        ))
    }
}

/// One line per table: the agent's login has every permission its role needs there.
pub(crate) async fn run_permissions(
    agent: &tiberius::Config,
    needs: &[TableNeeds],
    report: &mut Report,
) {
    let g = Group::Permissions;
    let mut c = match plain(agent).await {
        Ok(c) => c,
        Err(f) => {
            report.record(
                g,
                "connect as the agent's login",
                super::report::Outcome::Fail(f),
            );
            return;
        }
    };
    for need in queue_needs().iter().chain(needs) {
        let wanted = need.permissions();
        let name = format!("the agent's login may {} {}", wanted.join(", "), need.table);
        report
            .run(g, &name, missing_grants(&mut c, need, &wanted))
            .await;
    }
}

async fn missing_grants(
    c: &mut crate::sqlserver::tds::pool::TdsClient,
    need: &TableNeeds,
    wanted: &[&str],
) -> CheckResult {
    let (schema, table) = parse_table_name(&need.table)?;
    let object = format!("{}.{}", quote(&schema), quote(&table));
    let mut missing = Vec::new();
    for permission in wanted {
        let mut query = Query::new("SELECT HAS_PERMS_BY_NAME(@P1, N'OBJECT', @P2);");
        query.bind(object.clone());
        query.bind((*permission).to_owned());
        if scalar(c, query).await? != Some(1) {
            missing.push(*permission);
        }
    }
    if missing.is_empty() {
        return Ok(None);
    }
    let user = scalar_text(c, "SELECT USER_NAME();").await?;
    Err(Failure::new(
        format!(
            "missing {} on {object} (or the table does not exist)",
            missing.join(", ")
        ),
        format!(
            "GRANT {} ON {object} TO {};  (see sql/sqlserver/06_permissions.sql)",
            missing.join(", "),
            quote(&user)
        ),
    ))
}

async fn scalar_text(
    c: &mut crate::sqlserver::tds::pool::TdsClient,
    sql: &str,
) -> Result<String, Failure> {
    let rows = first_result(Query::new(sql), c).await?;
    Ok(rows
        .first()
        .and_then(|r| r.try_get::<&str, _>(0).ok().flatten())
        .unwrap_or("<agent user>")
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_objects_are_looked_up_by_id_not_by_catalog_text() {
        let sql = missing_objects_sql();
        for (kind, name) in OBJECTS {
            assert!(
                sql.contains(&format!("OBJECT_ID(N'{name}', N'{kind}') IS NULL")),
                "{name}"
            );
        }
        assert!(sql.contains("IX_SyncQueue_Record"));
        assert!(sql.contains("N'@TargetUrl'") && sql.contains("N'@QueueSchema'"));
    }

    #[test]
    fn permissions_follow_what_each_table_needs() {
        let need = TableNeeds {
            table: "tblAlignerNotes".into(),
            select: true,
            insert: true,
            update: true,
            delete: false,
        };
        assert_eq!(need.permissions(), ["SELECT", "INSERT", "UPDATE"]);
        let queue = queue_needs();
        assert_eq!(queue[0].permissions(), ["SELECT", "UPDATE"]);
        assert_eq!(queue[1].permissions(), ["SELECT"]);
    }
}
