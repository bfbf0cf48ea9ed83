//! `syncbridge check --self-test` against a real SQL Server (2017+): the very checks a clinic
//! runs on its own server (the generated triggers, the claim from two connections, typed values,
//! the notification, the agent login's permissions), one group per test, and the scratch
//! objects removed afterwards, those of an interrupted run included. These are the SQL Server
//! tests of those behaviours: there is no second version of them. Needs MSSQL_TEST_URL: see
//! tests/common/mssql.rs.

mod common;

use common::mssql::SqlDb;
use common::{config, Options, ADMIN_TOKEN};
use syncbridge::check::self_test_config;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::tds::self_test::{self, Group, Outcome, Report, SelfTestConfig};

/// The self-test's settings as `check --self-test` derives them from the agent's configuration
/// over `db`, limited to `only`, with the agent's address on a free port that NotifyUrl names.
async fn settings(db: &SqlDb, only: Option<Vec<Group>>) -> (SelfTestConfig, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let agent = config(
        db,
        "http://127.0.0.1:9",
        "unused-service-key".to_owned(),
        &data_dir,
        &Options::default(),
    );
    let mut settings =
        self_test_config(&agent, &TableMap::sample_clinic(), &|_| None).expect("settings");
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let addr = free.local_addr().expect("addr");
    drop(free);
    db.sql(&format!(
        "UPDATE dbo.SyncConfig SET Value = N'http://{addr}/api/sync/queue-notify' WHERE Name = N'NotifyUrl';
         UPDATE dbo.SyncConfig SET Value = N'{ADMIN_TOKEN}' WHERE Name = N'NotifyToken';"
    ))
    .await;
    settings.notify.listen = Some(addr);
    settings.only = only;
    (settings, data_dir)
}

/// Every check of `group` passed (and there was at least one).
fn assert_group_passed(report: &Report, group: Group) {
    let checks: Vec<_> = report.checks.iter().filter(|c| c.group == group).collect();
    assert!(
        !checks.is_empty(),
        "no {group:?} checks ran:\n{}",
        report.render()
    );
    assert!(
        checks.iter().all(|c| matches!(c.outcome, Outcome::Pass(_))),
        "{}",
        report.render()
    );
}

async fn scratch_schemas(db: &SqlDb) -> i64 {
    db.int("SELECT COUNT(*) FROM sys.schemas WHERE name LIKE N'syncbridge[_]selftest[_]%';")
        .await
}

async fn run_group(group: Group) {
    let db = SqlDb::create().await;
    let (settings, _dir) = settings(&db, Some(vec![group])).await;
    let report = self_test::run(&settings).await;
    assert_group_passed(&report, Group::Server);
    assert_group_passed(&report, Group::Scratch);
    assert_group_passed(&report, group);
    assert_eq!(scratch_schemas(&db).await, 0, "scratch objects left behind");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn the_generated_triggers_pass_the_self_test() {
    run_group(Group::Triggers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn every_type_passes_the_self_test() {
    run_group(Group::Values).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn the_queue_statements_pass_the_self_test() {
    run_group(Group::Queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn the_test_login_has_every_permission_the_agent_needs() {
    let db = SqlDb::create().await;
    let (settings, _dir) = settings(&db, Some(vec![Group::Permissions])).await;
    let report = self_test::run(&settings).await;
    assert_group_passed(&report, Group::Server);
    assert_group_passed(&report, Group::Permissions);
    assert!(
        !report.checks.iter().any(|c| c.group == Group::Scratch),
        "no scratch objects are made for these groups"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn the_notification_checks_pass_or_say_why_they_cannot_run() {
    let db = SqlDb::create().await;
    let (settings, _dir) = settings(&db, Some(vec![Group::Notify])).await;
    let report = self_test::run(&settings).await;
    let notify: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.group == Group::Notify)
        .collect();
    assert_eq!(notify.len(), 3, "{}", report.render());
    match &notify[0].outcome {
        // OLE Automation usable: a writer is never delayed, and the stand-in on NotifyUrl's
        // port is reached unless SQL Server runs on another machine than this test.
        Outcome::Pass(_) => {
            assert!(
                matches!(notify[2].outcome, Outcome::Pass(_)),
                "{}",
                report.render()
            );
            match &notify[1].outcome {
                Outcome::Pass(detail) => assert!(
                    detail
                        .as_deref()
                        .is_some_and(|d| d.contains("answered 202")),
                    "{}",
                    report.render()
                ),
                Outcome::Fail(f) => {
                    assert!(f.why.contains("could not reach"), "{}", report.render())
                }
                Outcome::Skip(_) => panic!("{}", report.render()),
            }
        }
        // Linux, or the option off: the failure says so and the rest is skipped, not failed.
        Outcome::Fail(f) => {
            assert!(
                f.why.contains("Linux")
                    || f.why.contains("Ole Automation")
                    || f.why.contains("sp_OACreate"),
                "{}",
                report.render()
            );
            assert!(notify[1..]
                .iter()
                .all(|c| matches!(c.outcome, Outcome::Skip(_))));
        }
        Outcome::Skip(_) => panic!("{}", report.render()),
    }
    assert_eq!(scratch_schemas(&db).await, 0);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn a_whole_run_sweeps_an_interrupted_runs_leftovers_and_leaves_nothing() {
    let db = SqlDb::create().await;
    // What a run killed in 2000 left behind: its schema and a table in it.
    let stale = "syncbridge_selftest_20000101T000000_deadbeef";
    db.sql(&format!("CREATE SCHEMA [{stale}];")).await;
    db.sql(&format!("CREATE TABLE [{stale}].[Types] (K int NOT NULL);"))
        .await;
    // And a clinic schema whose name merely resembles one: never touched.
    db.sql("CREATE SCHEMA [syncbridge_selftest_clinic];").await;
    let (settings, _dir) = settings(&db, None).await;
    let report = self_test::run(&settings).await;
    for group in [
        Group::Server,
        Group::Permissions,
        Group::Scratch,
        Group::Triggers,
        Group::Values,
        Group::Queue,
    ] {
        assert_group_passed(&report, group);
    }
    assert!(
        report.render().contains(stale),
        "the sweep is reported:\n{}",
        report.render()
    );
    assert_eq!(scratch_schemas(&db).await, 1, "only the look-alike is left");
    assert_eq!(
        db.int("SELECT COUNT(*) FROM dbo.SyncQueue;").await,
        0,
        "the self-test never touches the agent's queue"
    );
    db.drop_db().await;
}
