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

use syncbridge::sqlserver::tds::TdsStore;
use tiberius::{Client, Config as TdsConfig};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use uuid::Uuid;

use super::wait_for;

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

/// The clinic's own trigger of issue 6.7: a new or edited note marks its aligner set
/// (`IsActive`, a column the sample map syncs), as a "has new note" flag would.
pub const NOTE_MARKS_ITS_SET: &str = "CREATE TRIGGER dbo.trg_tblAlignerNotes_MarkSet ON dbo.tblAlignerNotes AFTER INSERT, UPDATE AS
BEGIN
    SET NOCOUNT ON;
    UPDATE s SET IsActive = 1 FROM dbo.tblAlignerSets AS s WHERE s.AlignerSetID IN (SELECT i.AlignerSetID FROM inserted AS i);
END;";

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

    /// Creates [`NOTE_MARKS_ITS_SET`], set to fire before the change trigger: a loop guard that
    /// counted the triggers already run for the statement (instead of those on the call stack)
    /// would then queue the agent's own note.
    pub async fn install_note_marks_its_set(&self) {
        self.sql(NOTE_MARKS_ITS_SET).await;
        for event in ["INSERT", "UPDATE"] {
            self.sql(&format!(
                "EXEC sp_settriggerorder @triggername = N'dbo.trg_tblAlignerNotes_MarkSet', @order = N'First', @stmttype = N'{event}';"
            ))
            .await;
        }
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
