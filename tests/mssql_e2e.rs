//! End to end against a real SQL Server (2017+): the real agent with the tiberius store
//! (`TdsStore`), a database of its own carrying `sql/sqlserver/*.sql`, a fresh PostgreSQL
//! database behind the PostgREST-compatible test server, spoken to over HTTP. Clinic writes go
//! through plain tiberius connections (no SESSION_CONTEXT, so the change triggers fire), exactly
//! as the clinic's applications make them.
//!
//! MSSQL_TEST_URL is an ADO connection string for a login that may create, alter and drop
//! databases and read `sys.dm_exec_requests` (VIEW SERVER STATE), e.g.
//! `Server=tcp:localhost,1433;User Id=sa;Password=...;TrustServerCertificate=true`; PostgreSQL
//! comes from PG_TEST_URL as for every other test. Run with `scripts/test.sh` (MSSQL_TEST_URL
//! set) or `cargo test --test mssql_e2e -- --include-ignored`.
//!
//! Every test creates its own `syncbridge_test_*` SQL Server database and drops it when it
//! passes (a failing test leaves it behind for inspection, like tests/mssql.rs).
//! `sp_NotifyAppOfSync` is switched off (empty NotifyUrl): SQL Server may be on another machine,
//! or on Linux without OLE Automation, so the tests POST `/api/sync/queue-notify` themselves,
//! which is what the procedure would do.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{batch_record, hook, note_record, wait_for, ADMIN_TOKEN, WEBHOOK_SECRET};
use serde_json::{json, Value};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::{Agent, Config};
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tempfile::TempDir;
use tiberius::{Client, Config as TdsConfig};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

type Conn = Client<Compat<TcpStream>>;

const AGENT_ID: &str = "mssql-e2e-agent";
/// A note's shared key as the portal creates it (lower case, as PostgreSQL renders uuids).
const NOTE_UID: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
const KURDISH: &str = "ڕۆژان عەلی";
const ARABIC: &str = "ملاحظة: حساسية من البنسلين";

/// One test's SQL Server database, with the scripts applied.
struct SqlDb {
    name: String,
    /// The server, as MSSQL_TEST_URL names it (administration through `master`).
    server: TdsConfig,
    /// This database.
    config: TdsConfig,
    /// MSSQL_TEST_URL pointed at this database: the agent's MSSQL_CONNECTION_STRING.
    ado: String,
    /// The test's own connection for reads and checks, opened on first use and kept, so that
    /// polling does not log in every few milliseconds.
    observer: tokio::sync::Mutex<Option<Conn>>,
}

impl SqlDb {
    /// Creates the database and applies every script; notifications are switched off.
    async fn create() -> Self {
        let url = std::env::var("MSSQL_TEST_URL")
            .expect("MSSQL_TEST_URL (an ADO connection string) is not set");
        let server = TdsConfig::from_ado_string(&url)
            .expect("MSSQL_TEST_URL is not a valid ADO connection string");
        let name = format!(
            "syncbridge_test_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        exec(
            &mut connect(&master(&server)).await,
            &format!("CREATE DATABASE [{name}];"),
        )
        .await;
        let mut config = server.clone();
        config.database(&name);
        // tiberius reads `database` before `initial catalog`, and the last of repeated keys.
        let ado = format!(
            "{};Database={name}",
            url.trim().trim_end_matches(';').trim_end()
        );
        let db = Self {
            name,
            server,
            config,
            ado,
            observer: tokio::sync::Mutex::new(None),
        };
        // The agent's string must reach this database, not the login's default one.
        let agent_view = TdsConfig::from_ado_string(&db.ado).expect("ADO string with Database");
        let mut c = connect(&agent_view).await;
        let row = c
            .simple_query("SELECT DB_NAME();")
            .await
            .expect("DB_NAME()")
            .into_row()
            .await
            .expect("DB_NAME()")
            .expect("a row");
        assert_eq!(row.get::<&str, _>(0), Some(db.name.as_str()));
        drop(c);
        db.apply_scripts().await;
        db.sql("UPDATE dbo.SyncConfig SET Value = N'' WHERE Name = N'NotifyUrl';")
            .await;
        db
    }

    async fn apply_scripts(&self) {
        let mut c = self.connect().await;
        for (file, batches) in scripts() {
            for batch in batches {
                let result = match c.simple_query(batch.as_str()).await {
                    Ok(stream) => stream.into_results().await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    panic!("{file}: {e}\n--- batch ---\n{batch}");
                }
            }
        }
    }

    /// A new connection as the clinic's applications make them (no session context).
    async fn connect(&self) -> Conn {
        connect(&self.config).await
    }

    /// Runs `sql` on a new clinic connection.
    async fn sql(&self, sql: &str) {
        exec(&mut self.connect().await, sql).await;
    }

    /// Runs `sql` on `master` (ALTER DATABASE and the like).
    async fn on_master(&self, sql: &str) {
        exec(&mut connect(&master(&self.server)).await, sql).await;
    }

    /// The rows of the first result of `sql`, read on the observer connection.
    async fn rows(&self, sql: &str) -> Vec<tiberius::Row> {
        let mut slot = self.observer.lock().await;
        let mut c = match slot.take() {
            Some(c) => c,
            None => self.connect().await,
        };
        let stream = c
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        let rows = stream
            .into_first_result()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        *slot = Some(c);
        rows
    }

    /// Forgets the observer connection (after the database went offline, which killed it).
    async fn reconnect_observer(&self) {
        *self.observer.lock().await = None;
    }

    /// The integer in the first column of the first row.
    async fn int(&self, sql: &str) -> i64 {
        let rows = self.rows(sql).await;
        let row = rows.first().unwrap_or_else(|| panic!("no row: {sql}"));
        match row.get_column_data(0).expect("column 0") {
            tiberius::ColumnData::U8(Some(v)) => i64::from(*v),
            tiberius::ColumnData::I16(Some(v)) => i64::from(*v),
            tiberius::ColumnData::I32(Some(v)) => i64::from(*v),
            tiberius::ColumnData::I64(Some(v)) => *v,
            other => panic!("not an integer: {other:?}\n{sql}"),
        }
    }

    /// Every row of `sql`, whose columns must all be (n)varchar (CONVERT the others).
    async fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.rows(sql)
            .await
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<&str, _>(i)
                            .unwrap_or_else(|e| panic!("column {i} is not text ({e}): {sql}"))
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .collect()
    }

    /// The only row of `sql`.
    async fn one(&self, sql: &str) -> Vec<Option<String>> {
        let mut rows = self.strings(sql).await;
        assert_eq!(rows.len(), 1, "expected one row: {sql}\n{rows:?}");
        rows.remove(0)
    }

    /// (TableName, RecordID, Operation, Status, Attempts, LastError) of every queue row.
    async fn queue(&self) -> Vec<Vec<Option<String>>> {
        self.strings(
            "SELECT TableName, RecordID, Operation, Status, CONVERT(nvarchar(12), Attempts), LastError
             FROM dbo.SyncQueue ORDER BY QueueID;",
        )
        .await
    }

    /// Waits until the queue holds `total` items and none is Pending, then checks that every
    /// one is Synced.
    async fn wait_settled(&self, total: i64) -> Vec<Vec<Option<String>>> {
        wait_for("every SyncQueue item settled", move || async move {
            self.int("SELECT COUNT(*) FROM dbo.SyncQueue;").await == total
                && self
                    .int("SELECT COUNT(*) FROM dbo.SyncQueue WHERE Status = 'Pending';")
                    .await
                    == 0
        })
        .await;
        let queue = self.queue().await;
        assert!(
            queue.iter().all(|q| q[3].as_deref() == Some("Synced")),
            "{queue:#?}"
        );
        queue
    }

    /// As [`Self::wait_settled`], and every item was synced at its first attempt.
    async fn wait_all_synced(&self, total: i64) {
        let queue = self.wait_settled(total).await;
        assert!(
            queue.iter().all(|q| q[3].as_deref() == Some("Synced")
                && q[4].as_deref() == Some("0")
                && q[5].is_none()),
            "{queue:#?}"
        );
    }

    async fn drop_db(self) {
        self.reconnect_observer().await;
        let name = &self.name;
        self.on_master(&format!(
            "ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{name}];"
        ))
        .await;
    }
}

fn master(server: &TdsConfig) -> TdsConfig {
    let mut master = server.clone();
    master.database("master");
    master
}

async fn connect(config: &TdsConfig) -> Conn {
    use tiberius::SqlBrowser;
    let tcp = TcpStream::connect_named(config)
        .await
        .expect("cannot reach SQL Server");
    Client::connect(config.clone(), tcp.compat_write())
        .await
        .expect("cannot log in to SQL Server")
}

async fn exec(c: &mut Conn, sql: &str) {
    let stream = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    stream
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

/// `sql/sqlserver/*.sql` in file-name order, each split into its GO-separated batches.
fn scripts() -> Vec<(String, Vec<String>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/sqlserver");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sql/sqlserver")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("script");
            let mut batches = vec![String::new()];
            for line in text.lines() {
                if line.trim().eq_ignore_ascii_case("GO") {
                    batches.push(String::new());
                } else if let Some(current) = batches.last_mut() {
                    current.push_str(line);
                    current.push('\n');
                }
            }
            batches.retain(|b| !b.trim().is_empty());
            (
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                batches,
            )
        })
        .collect()
}

/// Patient 1 → work 1 → set 1 → batch 1 (Days 14), written by the clinic, with the queue items
/// they caused removed: parents for notes and batches that arrive by webhook.
async fn seed_parents(db: &SqlDb) {
    db.sql(
        "INSERT INTO dbo.tblPatients (PatientName) VALUES (N'Parent');
         INSERT INTO dbo.tblWork (PersonID, TypeOfWork) VALUES (1, N'Aligners');
         INSERT INTO dbo.tblAlignerSets (WorkID, SetSequence) VALUES (1, 1);
         INSERT INTO dbo.tblAlignerBatches (AlignerSetID, BatchSequence, Days, Notes)
             VALUES (1, 1, 14, N'first batch');
         DELETE FROM dbo.SyncQueue;",
    )
    .await;
}

/// The real agent over `sql`, a fresh PostgreSQL database and the PostgREST-compatible server.
struct E2e {
    sql: SqlDb,
    pg: TestDb,
    _rest: FakePostgrest,
    _data_dir: TempDir,
    addr: SocketAddr,
    http: reqwest::Client,
    shutdown: CancellationToken,
    /// Stops the agent when a failing test unwinds.
    _stop_on_drop: DropGuard,
    task: JoinHandle<anyhow::Result<()>>,
}

/// As tests/common's `config`, with the SQL Server database's ADO string.
fn config(ado: &str, rest_url: &str, key: &str, data_dir: &TempDir) -> Config {
    let pairs = vec![
        ("MSSQL_CONNECTION_STRING", ado.to_owned()),
        ("SUPABASE_URL", rest_url.to_owned()),
        ("SUPABASE_SERVICE_ROLE_KEY", key.to_owned()),
        ("SUPABASE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("SYNC_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("SYNC_BATCH_SIZE", "50".to_owned()),
        ("SYNC_MAX_ATTEMPTS", "10".to_owned()),
        // Short, so the outage test recovers within the deadline once SQL Server is back.
        ("SYNC_BACKOFF_BASE", "50ms".to_owned()),
        ("SYNC_BACKOFF_CAP", "400ms".to_owned()),
        ("SUPABASE_TIMEOUT", "5s".to_owned()),
        ("SYNC_DATA_DIR", data_dir.path().display().to_string()),
        ("SYNC_AGENT_ID", AGENT_ID.to_owned()),
        ("SYNC_MAX_BODY_BYTES", "65536".to_owned()),
    ];
    let lookup = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    Config::from_lookup(&lookup).expect("test configuration is valid")
}

impl E2e {
    /// Starts the agent and waits until it is ready and its start-up catch-up has run.
    async fn start(sql: SqlDb) -> Self {
        let pg = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        let keys = ApiKeys::generate();
        let rest = FakePostgrest::start(pg.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let data_dir = tempfile::tempdir().expect("tempdir");
        let config = config(&sql.ado, &rest.url(), keys.service_role_jwt(), &data_dir);
        let tds = TdsStore::new(
            config.mssql_config().expect("ADO string"),
            config.agent_id.clone(),
            4,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let agent = Agent {
            config,
            store: Arc::new(tds),
            map: TableMap::sample_clinic(),
        };
        let task = tokio::spawn(syncbridge::run(agent, listener, shutdown.clone()));
        let e = Self {
            sql,
            pg,
            _rest: rest,
            _data_dir: data_dir,
            addr,
            http: reqwest::Client::new(),
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            task,
        };
        let this = &e;
        wait_for("agent ready and caught up", move || async move {
            let e = this;
            // A fatal start (e.g. the map does not match the schema) should fail at once.
            assert!(!e.task.is_finished(), "the agent stopped during start-up");
            let r = e
                .http
                .get(e.url("/api/sync/status"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await;
            match r {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| {
                    v["agent"]["ready"] == json!(true)
                        && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
                }),
                Err(_) => false,
            }
        })
        .await;
        e
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What sp_NotifyAppOfSync does.
    async fn notify(&self) {
        let r = self
            .http
            .post(self.url("/api/sync/queue-notify"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"source": "sqlserver"}))
            .send()
            .await
            .expect("notify");
        assert_eq!(r.status(), 202, "queue-notify answered {}", r.status());
    }

    /// Posts a webhook with the shared secret, as Supabase's Database Webhooks do.
    async fn webhook(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/api/sync/webhook"))
            .bearer_auth(WEBHOOK_SECRET)
            .json(body)
            .send()
            .await
            .expect("webhook");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn status(&self) -> Value {
        self.http
            .get(self.url("/api/sync/status"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// Rows of a query on the Supabase side.
    async fn pg_rows(&self, sql: &str) -> Vec<Value> {
        self.pg.query_json(sql).await.expect("PostgreSQL query")
    }

    /// Stops the agent gracefully, then drops the SQL Server database.
    async fn finish(self) {
        let E2e {
            sql,
            shutdown,
            task,
            ..
        } = self;
        shutdown.cancel();
        task.await.expect("agent task").expect("agent ran cleanly");
        sql.drop_db().await;
    }
}

/// `SELECT @@SPID` on `c`.
async fn spid(c: &mut Conn) -> i64 {
    let row = c
        .simple_query("SELECT @@SPID;")
        .await
        .expect("@@SPID")
        .into_row()
        .await
        .expect("@@SPID")
        .expect("a row");
    match row.get_column_data(0).expect("column 0") {
        tiberius::ColumnData::I16(Some(v)) => i64::from(*v),
        tiberius::ColumnData::I32(Some(v)) => i64::from(*v),
        other => panic!("@@SPID is not an integer: {other:?}"),
    }
}

fn owned(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn clinic_inserts_updates_and_deletes_reach_supabase_exactly() {
    let e = E2e::start(SqlDb::create().await).await;

    // A clinic application saves a new case: four rows, parents first, each statement
    // committed on its own. The fresh database's identities start at 1.
    e.sql
        .sql(&format!(
            "INSERT INTO dbo.tblPatients (PatientName, Phone, DateOfBirth, IsActive, PatientGUID, Notes, DateAdded)
                 VALUES (N'{KURDISH}', N'0750 123 4567', '1990-02-28', 1,
                         '6F9619FF-8B86-D011-B42D-00C04FC964FF', N'{ARABIC}', '2026-11-25T09:15:30.123');
             INSERT INTO dbo.tblWork (PersonID, TypeOfWork, TotalRequired, Currency, StartDate, Finished, AdditionTime)
                 VALUES (1, N'Aligners', 922337203685477.5807, 'IQD', '2026-12-01', 0, '2026-11-25T09:20:00.456');
             INSERT INTO dbo.tblAlignerSets (WorkID, SetSequence, UpperAlignersCount, LowerAlignersCount, SetCost, IsActive, CreationDate)
                 VALUES (1, 1, 20, 18, 1250.50, 1, '2026-11-25T09:30:00.250+03:00');
             INSERT INTO dbo.tblAlignerBatches (AlignerSetID, BatchSequence, UpperAlignerCount, LowerAlignerCount, Days, ManufactureDate, Notes, LabelCode)
                 VALUES (1, 1, 5, 5, 14, '2026-11-26', N'دەستەی یەکەم', 0xDEADBEEF00FF);"
        ))
        .await;
    assert_eq!(
        e.sql
            .int("SELECT COUNT(*) FROM dbo.SyncQueue WHERE Status = 'Pending';")
            .await,
        4,
        "one queue item per row"
    );
    e.notify().await;
    e.sql.wait_all_synced(4).await;

    assert_eq!(
        e.pg_rows(
            "SELECT person_id, patient_name, phone, date_of_birth, is_active, patient_guid, notes, date_added
             FROM patients"
        )
        .await,
        [json!({
            "person_id": 1, "patient_name": KURDISH, "phone": "0750 123 4567",
            "date_of_birth": "1990-02-28", "is_active": true,
            "patient_guid": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "notes": ARABIC,
            "date_added": "2026-11-25T09:15:30.123"
        })]
    );
    assert_eq!(
        e.pg_rows(
            "SELECT work_id, person_id, type_of_work, total_required::text AS total_required, currency,
                    start_date, finished, addition_time
             FROM work"
        )
        .await,
        [json!({
            "work_id": 1, "person_id": 1, "type_of_work": "Aligners",
            "total_required": "922337203685477.5807", "currency": "IQD",
            "start_date": "2026-12-01", "finished": false,
            "addition_time": "2026-11-25T09:20:00.456"
        })],
        "money arrives as an exact decimal"
    );
    assert_eq!(
        e.pg_rows(
            "SELECT aligner_set_id, work_id, set_sequence, upper_aligners_count, lower_aligners_count,
                    set_cost::text AS set_cost, is_active,
                    creation_date = '2026-11-25T06:30:00.25Z'::timestamptz AS same_instant
             FROM aligner_sets"
        )
        .await,
        [json!({
            "aligner_set_id": 1, "work_id": 1, "set_sequence": 1, "upper_aligners_count": 20,
            "lower_aligners_count": 18, "set_cost": "1250.50", "is_active": true,
            "same_instant": true
        })],
        "datetimeoffset keeps its instant"
    );
    let batches = "SELECT aligner_batch_id, aligner_set_id, batch_sequence, upper_aligner_count,
                          lower_aligner_count, days, manufacture_date, delivered_to_patient_date, notes,
                          encode(label_code, 'hex') AS label_code
                   FROM aligner_batches";
    assert_eq!(
        e.pg_rows(batches).await,
        [json!({
            "aligner_batch_id": 1, "aligner_set_id": 1, "batch_sequence": 1,
            "upper_aligner_count": 5, "lower_aligner_count": 5, "days": 14,
            "manufacture_date": "2026-11-26", "delivered_to_patient_date": null,
            "notes": "دەستەی یەکەم", "label_code": "deadbeef00ff"
        })]
    );

    // Updates, including money's other extreme. Days belongs to the portal once the batch
    // exists there: the clinic's 99 is not sent, its Notes are.
    e.sql
        .sql(
            "UPDATE dbo.tblPatients SET Phone = N'0770 000 0000', Notes = NULL WHERE PersonID = 1;
             UPDATE dbo.tblWork SET TotalRequired = -922337203685477.5808, Finished = 1 WHERE WorkID = 1;
             UPDATE dbo.tblAlignerBatches SET Days = 99, Notes = N'نوێکراوە' WHERE AlignerBatchID = 1;",
        )
        .await;
    e.notify().await;
    e.sql.wait_all_synced(7).await;
    assert_eq!(
        e.pg_rows("SELECT phone, notes FROM patients").await,
        [json!({"phone": "0770 000 0000", "notes": null})]
    );
    assert_eq!(
        e.pg_rows("SELECT total_required::text AS total_required, finished FROM work")
            .await,
        [json!({"total_required": "-922337203685477.5808", "finished": true})]
    );
    assert_eq!(
        e.pg_rows("SELECT days, notes FROM aligner_batches").await,
        [json!({"days": 14, "notes": "نوێکراوە"})],
        "only clinic-owned columns are updated"
    );

    e.sql
        .sql("DELETE FROM dbo.tblAlignerBatches WHERE AlignerBatchID = 1;")
        .await;
    e.notify().await;
    e.sql.wait_all_synced(8).await;
    assert!(e.pg_rows("SELECT 1 FROM aligner_batches").await.is_empty());
    assert_eq!(
        e.pg_rows("SELECT count(*) AS n FROM aligner_sets").await,
        [json!({"n": 1})],
        "the parent stays"
    );
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn a_notification_sent_before_the_writer_commits_is_not_lost() {
    let e = E2e::start(SqlDb::create().await).await;

    // sp_NotifyAppOfSync runs inside the writer's transaction: the agent hears of the row
    // before it is committed.
    let mut writer = e.sql.connect().await;
    let writer_spid = spid(&mut writer).await;
    exec(
        &mut writer,
        &format!(
            "BEGIN TRANSACTION; INSERT INTO dbo.tblPatients (PatientName) VALUES (N'{KURDISH}');"
        ),
    )
    .await;
    e.notify().await;

    // The agent's claim skips the locked row, then it waits on the writer's lock.
    let db = &e.sql;
    let blocked = format!(
        "SELECT COUNT(*) FROM sys.dm_exec_requests
         WHERE blocking_session_id = {writer_spid} AND wait_type LIKE 'LCK%'
           AND database_id = DB_ID(N'{}') AND session_id <> @@SPID;",
        db.name
    );
    let blocked = blocked.as_str();
    wait_for(
        "the agent waiting on the writer's lock",
        move || async move { db.int(blocked).await > 0 },
    )
    .await;
    assert!(
        e.pg_rows("SELECT 1 FROM patients").await.is_empty(),
        "nothing uncommitted is sent"
    );

    // No second notification: the commit alone releases the agent.
    exec(&mut writer, "COMMIT TRANSACTION;").await;
    let this = &e;
    wait_for("the committed patient in Supabase", move || async move {
        this.pg_rows("SELECT patient_name FROM patients").await
            == [json!({"patient_name": KURDISH})]
    })
    .await;
    e.sql.wait_all_synced(1).await;
    drop(writer);
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn portal_writes_reach_sql_server_and_do_not_echo() {
    let sql = SqlDb::create().await;
    seed_parents(&sql).await;
    let e = E2e::start(sql).await;

    let inserted = note_record(NOTE_UID, ARABIC, "2026-11-25T10:00:00+00:00");
    let (status, body) = e
        .webhook(&hook(
            "INSERT",
            "aligner_notes",
            Some(inserted.clone()),
            None,
        ))
        .await;
    assert_eq!((status, body["status"].clone()), (200, json!("accepted")));
    let old_batch = batch_record(1, 14, "first batch", "2026-11-25T10:00:00+00:00");
    let new_batch = batch_record(
        1,
        21,
        "portal text is not the clinic's",
        "2026-11-25T10:01:00+00:00",
    );
    let (status, body) = e
        .webhook(&hook(
            "UPDATE",
            "aligner_batches",
            Some(new_batch),
            Some(old_batch),
        ))
        .await;
    assert_eq!((status, body["status"].clone()), (200, json!("accepted")));

    let db = &e.sql;
    let note_count =
        format!("SELECT COUNT(*) FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}';");
    let note_count = note_count.as_str();
    wait_for("the note and the days in SQL Server", move || async move {
        db.int(note_count).await == 1
            && db
                .int("SELECT ISNULL(Days, 0) FROM dbo.tblAlignerBatches WHERE AlignerBatchID = 1;")
                .await
                == 21
    })
    .await;
    let note = format!(
        "SELECT NoteType, NoteText, CONVERT(nvarchar(12), AlignerSetID),
                CONVERT(nvarchar(40), CreatedAt, 121), CONVERT(nvarchar(1), IsEdited),
                CONVERT(nvarchar(40), EditedAt, 121), CONVERT(nvarchar(1), IsRead)
         FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}';"
    );
    assert_eq!(
        e.sql.one(&note).await,
        owned(&[
            Some("Doctor"),
            Some(ARABIC),
            Some("1"),
            Some("2026-11-25 10:00:00.000"),
            Some("0"),
            None,
            Some("0"),
        ])
    );
    assert_eq!(
        e.sql
            .one("SELECT CONVERT(nvarchar(12), Days), Notes FROM dbo.tblAlignerBatches WHERE AlignerBatchID = 1;")
            .await,
        owned(&[Some("21"), Some("first batch")]),
        "only Days is written"
    );
    // A queue row would have been committed with the write that caused it: none now means none.
    assert!(
        e.sql.queue().await.is_empty(),
        "the agent's writes were queued: {:#?}",
        e.sql.queue().await
    );

    // The doctor edits the note: the portal-owned columns change, still without an echo.
    let mut edited = note_record(NOTE_UID, "تم التعديل", "2026-11-25T10:05:00+00:00");
    edited["is_edited"] = json!(true);
    edited["edited_at"] = json!("2026-11-25T10:05:00");
    let (status, body) = e
        .webhook(&hook(
            "UPDATE",
            "aligner_notes",
            Some(edited),
            Some(inserted),
        ))
        .await;
    assert_eq!((status, body["status"].clone()), (200, json!("accepted")));
    let edited_text = format!(
        "SELECT COUNT(*) FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}' AND NoteText = N'تم التعديل';"
    );
    let edited_text = edited_text.as_str();
    wait_for("the edit in SQL Server", move || async move {
        db.int(edited_text).await == 1
    })
    .await;
    assert_eq!(
        e.sql.one(&note).await,
        owned(&[
            Some("Doctor"),
            Some("تم التعديل"),
            Some("1"),
            Some("2026-11-25 10:00:00.000"),
            Some("1"),
            Some("2026-11-25 10:05:00.000"),
            Some("0"),
        ])
    );
    assert!(
        e.sql.queue().await.is_empty(),
        "the agent's writes were queued: {:#?}",
        e.sql.queue().await
    );

    // The triggers are live for everyone else: a clinic write to the same note is queued.
    e.sql
        .sql(&format!(
            "UPDATE dbo.tblAlignerNotes SET IsRead = 1 WHERE NoteUID = '{NOTE_UID}';"
        ))
        .await;
    let queue = e.sql.queue().await;
    assert_eq!(queue.len(), 1, "{queue:#?}");
    assert_eq!(
        queue[0][..4].to_vec(),
        owned(&[
            Some("tblAlignerNotes"),
            Some("{\"NoteUID\":\"6F9619FF-8B86-D011-B42D-00C04FC964FF\"}"),
            Some("UPDATE"),
            Some("Pending"),
        ])
    );
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MSSQL_TEST_URL (a real SQL Server); run scripts/test.sh with it set"]
async fn work_that_arrives_while_the_database_is_offline_is_done_when_it_returns() {
    let sql = SqlDb::create().await;
    seed_parents(&sql).await;
    let e = E2e::start(sql).await;

    // A clinic save the agent has not been told about yet (patient 2).
    e.sql
        .sql(&format!(
            "INSERT INTO dbo.tblPatients (PatientName) VALUES (N'{KURDISH}');"
        ))
        .await;
    let name = e.sql.name.clone();
    // Kills every session in the database, the agent's pooled ones included.
    e.sql
        .on_master(&format!(
            "ALTER DATABASE [{name}] SET OFFLINE WITH ROLLBACK IMMEDIATE;"
        ))
        .await;

    // Both directions arrive during the outage: the notification, and a portal note, which
    // is accepted (stored in the inbox) although it cannot be written yet.
    e.notify().await;
    let (status, body) = e
        .webhook(&hook(
            "INSERT",
            "aligner_notes",
            Some(note_record(NOTE_UID, ARABIC, "2026-11-25T10:00:00+00:00")),
            None,
        ))
        .await;
    assert_eq!((status, body["status"].clone()), (200, json!("accepted")));
    let this = &e;
    wait_for(
        "both directions failed against the offline database",
        move || async move {
            let s = this.status().await;
            s["forward"]["state"]["last_error"].is_string()
                && s["reverse"]["state"]["last_error"].is_string()
        },
    )
    .await;
    let s = e.status().await;
    assert_eq!(s["reverse"]["inbox"]["depth"], json!(1), "{s}");
    assert_eq!(
        s["reverse"]["dead_events"],
        json!([]),
        "an outage kills no event: {s}"
    );

    e.sql
        .on_master(&format!("ALTER DATABASE [{name}] SET ONLINE;"))
        .await;
    e.sql.reconnect_observer().await;

    // Nobody notifies again or re-sends: the agent's own backoff brings both through.
    let db = &e.sql;
    let note_text = format!(
        "SELECT COUNT(*) FROM dbo.tblAlignerNotes WHERE NoteUID = '{NOTE_UID}' AND NoteText = N'{ARABIC}';"
    );
    let note_text = note_text.as_str();
    wait_for("the note in SQL Server", move || async move {
        db.int(note_text).await == 1
    })
    .await;
    wait_for("the patient in Supabase", move || async move {
        this.pg_rows("SELECT person_id, patient_name FROM patients")
            .await
            == [json!({"person_id": 2, "patient_name": KURDISH})]
    })
    .await;
    e.sql.wait_settled(1).await;
    wait_for("the inbox emptied", move || async move {
        this.status().await["reverse"]["inbox"]["depth"] == json!(0)
    })
    .await;
    assert_eq!(
        e.sql
            .int("SELECT COUNT(*) FROM dbo.SyncQueue WHERE TableName = N'tblAlignerNotes';")
            .await,
        0,
        "the late write did not echo either"
    );
    e.finish().await;
}
