//! Shared helpers for the tests against a real SQL Server (2017+): a database of each test's
//! own carrying `sql/sqlserver/*.sql`, plain clinic connections and small queries
//! (tests/mssql_*.rs), and the real agent with the tiberius store over it (tests/mssql_e2e_*.rs).
//!
//! MSSQL_TEST_URL is an ADO connection string for a login that may create, alter and drop
//! databases, read `sys.dm_exec_requests` (VIEW SERVER STATE) and, on Windows, enable OLE
//! Automation, e.g. `Server=tcp:localhost,1433;User Id=sa;Password=...;TrustServerCertificate=true`.
//! The tests are `#[ignore]`d without it: run `scripts/test.sh` with it set, or
//! `cargo test --test <file> -- --include-ignored`.
//!
//! Every test creates its own `syncbridge_test_*` database and drops it when it passes, so tests
//! run in parallel and leave nothing behind (a failing test leaves its database for inspection).
//! `sp_NotifyAppOfSync` is switched off (empty NotifyUrl) unless a test turns it on: SQL Server
//! may be on another machine, or on Linux without OLE Automation, so the end-to-end tests POST
//! `/api/sync/queue-notify` themselves, which is what the procedure would do.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::tds::TdsStore;
use syncbridge::Agent;
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tempfile::TempDir;
use tiberius::{Client, Config as TdsConfig};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::{config, wait_for, Options, ADMIN_TOKEN, WEBHOOK_SECRET};

pub type Conn = Client<Compat<TcpStream>>;

/// Text in the clinic's languages, which must arrive unchanged either way.
pub const KURDISH: &str = "ڕۆژان عەلی";
pub const ARABIC: &str = "ملاحظة: حساسية من البنسلين";

/// The SQL Server login MSSQL_TEST_URL names (an ADO connection string).
pub fn test_url() -> String {
    std::env::var("MSSQL_TEST_URL").expect("MSSQL_TEST_URL (an ADO connection string) is not set")
}

/// `server` pointed at `master` (CREATE, ALTER and DROP DATABASE).
pub fn master(server: &TdsConfig) -> TdsConfig {
    let mut master = server.clone();
    master.database("master");
    master
}

/// A new connection as the clinic's applications make them (no session context: the change
/// triggers fire).
pub async fn connect(config: &TdsConfig) -> Conn {
    use tiberius::SqlBrowser;
    let tcp = TcpStream::connect_named(config)
        .await
        .expect("cannot reach SQL Server");
    Client::connect(config.clone(), tcp.compat_write())
        .await
        .expect("cannot log in to SQL Server")
}

/// Runs `sql` on `c`, every result read.
pub async fn exec(c: &mut Conn, sql: &str) {
    let stream = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    stream
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

/// The rows of the first result of `sql` on `c`.
pub async fn query(c: &mut Conn, sql: &str) -> Vec<tiberius::Row> {
    let stream = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    stream
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

/// The integer in the first column of the first row of `sql` on `c`.
pub async fn query_int(c: &mut Conn, sql: &str) -> i64 {
    first_int(&query(c, sql).await, sql)
}

fn first_int(rows: &[tiberius::Row], sql: &str) -> i64 {
    let row = rows.first().unwrap_or_else(|| panic!("no row: {sql}"));
    match row.get_column_data(0).expect("column 0") {
        tiberius::ColumnData::U8(Some(v)) => i64::from(*v),
        tiberius::ColumnData::I16(Some(v)) => i64::from(*v),
        tiberius::ColumnData::I32(Some(v)) => i64::from(*v),
        tiberius::ColumnData::I64(Some(v)) => *v,
        other => panic!("not an integer: {other:?}\n{sql}"),
    }
}

/// Splits a script into its batches: the text between lines that are `GO` alone (any case),
/// blank batches dropped.
pub fn split_batches(script: &str) -> Vec<String> {
    let mut batches = vec![String::new()];
    for line in script.lines() {
        if line.trim().eq_ignore_ascii_case("GO") {
            batches.push(String::new());
        } else if let Some(current) = batches.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    batches.retain(|b| !b.trim().is_empty());
    batches
}

/// `sql/sqlserver/*.sql` in file-name order, each split into its GO-separated batches.
pub fn scripts() -> Vec<(String, Vec<String>)> {
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
            (
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                split_batches(&text),
            )
        })
        .collect()
}

/// Turns a row of [`SqlDb::strings`] into owned text, for comparing with it.
pub fn owned(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

/// One test's SQL Server database, with the scripts applied.
pub struct SqlDb {
    pub name: String,
    /// The server, as MSSQL_TEST_URL names it (administration through `master`).
    pub server: TdsConfig,
    /// This database.
    pub config: TdsConfig,
    /// MSSQL_TEST_URL pointed at this database: the agent's MSSQL_CONNECTION_STRING.
    pub ado: String,
    /// The test's own connection for reads and checks, opened on first use and kept, so that
    /// polling does not log in every few milliseconds.
    observer: tokio::sync::Mutex<Option<Conn>>,
}

impl SqlDb {
    /// Creates the database and applies every script once; notifications are switched off
    /// (empty NotifyUrl) unless a test turns them on.
    pub async fn create() -> Self {
        let url = test_url();
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
        db.apply_scripts().await;
        db.sql("UPDATE dbo.SyncConfig SET Value = N'' WHERE Name = N'NotifyUrl';")
            .await;
        db
    }

    /// Checks that the agent's string ([`Self::ado`]) reaches this database, not the login's
    /// default one.
    pub async fn assert_ado_reaches_it(&self) {
        let agent_view = TdsConfig::from_ado_string(&self.ado).expect("ADO string with Database");
        let rows = query(&mut connect(&agent_view).await, "SELECT DB_NAME();").await;
        let row = rows.first().expect("a row");
        assert_eq!(row.get::<&str, _>(0), Some(self.name.as_str()));
    }

    /// Runs every batch of every script, on one clinic connection.
    pub async fn apply_scripts(&self) {
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
    pub async fn connect(&self) -> Conn {
        connect(&self.config).await
    }

    /// The tiberius store over this database, as the tests of it use it.
    pub fn store(&self) -> TdsStore {
        TdsStore::new(self.config.clone(), "mssql-test-agent".to_owned(), 4)
    }

    /// Runs `sql` on a new clinic connection.
    pub async fn sql(&self, sql: &str) {
        exec(&mut self.connect().await, sql).await;
    }

    /// Runs `sql` on `master` (ALTER DATABASE and the like).
    pub async fn on_master(&self, sql: &str) {
        exec(&mut connect(&master(&self.server)).await, sql).await;
    }

    /// Patient 1 → work 1 → set 1 → batch 1, written by the clinic, with the queue items they
    /// caused removed: parents for notes and batches. `batch` is batch 1's columns and values
    /// beyond AlignerSetID 1 and BatchSequence 1, e.g. `&[("Days", "14")]`.
    pub async fn seed_parents(&self, batch: &[(&str, &str)]) {
        let columns: String = batch.iter().map(|(c, _)| format!(", {c}")).collect();
        let values: String = batch.iter().map(|(_, v)| format!(", {v}")).collect();
        self.sql(&format!(
            "INSERT INTO dbo.tblPatients (PatientName) VALUES (N'Parent');
             INSERT INTO dbo.tblWork (PersonID, TypeOfWork) VALUES (1, N'Aligners');
             INSERT INTO dbo.tblAlignerSets (WorkID, SetSequence) VALUES (1, 1);
             INSERT INTO dbo.tblAlignerBatches (AlignerSetID, BatchSequence{columns})
                 VALUES (1, 1{values});
             DELETE FROM dbo.SyncQueue;"
        ))
        .await;
    }

    /// The rows of the first result of `sql`, read on the observer connection.
    pub async fn rows(&self, sql: &str) -> Vec<tiberius::Row> {
        let mut slot = self.observer.lock().await;
        let mut c = match slot.take() {
            Some(c) => c,
            None => self.connect().await,
        };
        let rows = query(&mut c, sql).await;
        *slot = Some(c);
        rows
    }

    /// Forgets the observer connection (after the database went offline, which killed it).
    pub async fn reconnect_observer(&self) {
        *self.observer.lock().await = None;
    }

    /// The integer in the first column of the first row.
    pub async fn int(&self, sql: &str) -> i64 {
        first_int(&self.rows(sql).await, sql)
    }

    /// Every row of `sql`, whose columns must all be (n)varchar (CONVERT the others).
    pub async fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
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
    pub async fn one(&self, sql: &str) -> Vec<Option<String>> {
        let mut rows = self.strings(sql).await;
        assert_eq!(rows.len(), 1, "expected one row: {sql}\n{rows:?}");
        rows.remove(0)
    }

    /// Waits until the integer `sql` reads (as [`Self::int`]) satisfies `condition`.
    pub async fn wait_int(&self, what: &str, sql: &str, condition: impl Fn(i64) -> bool) {
        let condition = &condition;
        wait_for(what, move || async move { condition(self.int(sql).await) }).await;
    }

    /// (TableName, RecordID, Operation, Status, Attempts, LastError) of every queue row, in
    /// QueueID order.
    pub async fn queue(&self) -> Vec<Vec<Option<String>>> {
        self.strings(
            "SELECT TableName, RecordID, Operation, Status, CONVERT(nvarchar(12), Attempts), LastError
             FROM dbo.SyncQueue ORDER BY QueueID;",
        )
        .await
    }

    /// (TableName, RecordID, Operation, Status) of every queue row, in QueueID order.
    pub async fn queued(&self) -> Vec<(String, String, String, String)> {
        self.queue()
            .await
            .into_iter()
            .map(|mut r| {
                let mut s = |i: usize| r[i].take().expect("a NOT NULL column");
                (s(0), s(1), s(2), s(3))
            })
            .collect()
    }

    /// Waits until the queue holds `total` items and none is Pending, then checks that every
    /// one is Synced.
    pub async fn wait_settled(&self, total: i64) -> Vec<Vec<Option<String>>> {
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
    pub async fn wait_all_synced(&self, total: i64) {
        let queue = self.wait_settled(total).await;
        assert!(
            queue.iter().all(|q| q[3].as_deref() == Some("Synced")
                && q[4].as_deref() == Some("0")
                && q[5].is_none()),
            "{queue:#?}"
        );
    }

    /// Drops the database, ending every session in it.
    pub async fn drop_db(self) {
        self.reconnect_observer().await;
        let name = &self.name;
        self.on_master(&format!(
            "ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{name}];"
        ))
        .await;
    }
}

/// The real agent over `sql`, a fresh PostgreSQL database and the PostgREST-compatible server.
pub struct E2e {
    pub sql: SqlDb,
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

impl E2e {
    /// Starts the agent and waits until it is ready and its start-up catch-up has run.
    pub async fn start(sql: SqlDb) -> Self {
        sql.assert_ado_reaches_it().await;
        let pg = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        let keys = ApiKeys::generate();
        let rest = FakePostgrest::start(pg.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let data_dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            // Short, so the outage test recovers within the deadline once SQL Server is back.
            backoff_base: "50ms",
            backoff_cap: "400ms",
            timeout: "5s",
            ..Options::default()
        };
        let config = config(
            &sql.ado,
            "mssql-e2e-agent",
            &rest.url(),
            keys.service_role_jwt().to_owned(),
            &data_dir,
            &options,
        );
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
            e.get_status().await.is_ok_and(|v| {
                v["agent"]["ready"] == json!(true)
                    && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
            })
        })
        .await;
        e
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What sp_NotifyAppOfSync does.
    pub async fn notify(&self) {
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
    pub async fn webhook(&self, body: &Value) -> (u16, Value) {
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

    /// Posts a webhook as [`Self::webhook`] does and checks that the agent accepted it.
    pub async fn webhook_accepted(&self, body: &Value) {
        let (status, body) = self.webhook(body).await;
        assert_eq!((status, body["status"].clone()), (200, json!("accepted")));
    }

    /// `GET /api/sync/status`, or the error while the agent does not answer.
    async fn get_status(&self) -> reqwest::Result<Value> {
        self.http
            .get(self.url("/api/sync/status"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await
    }

    pub async fn status(&self) -> Value {
        self.get_status().await.expect("status")
    }

    /// Rows of a query on the Supabase side.
    pub async fn pg_rows(&self, sql: &str) -> Vec<Value> {
        self.pg.query_json(sql).await.expect("PostgreSQL query")
    }

    /// Stops the agent gracefully, then drops the SQL Server database.
    pub async fn finish(self) {
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
