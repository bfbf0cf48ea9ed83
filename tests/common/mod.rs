//! Shared harness for the end-to-end tests: a real PostgreSQL database (fresh per test), the
//! PostgREST-compatible test server over it, the in-memory SQL Server double, and a real agent
//! started on 127.0.0.1:0, spoken to over HTTP.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use syncbridge::mapping::value::SqlValue;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{KeyPart, RecordKey, Row};
use syncbridge::{Agent, Config};
use syncbridge_testkit::{ApiKeys, FakePostgrest, TestDb};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod mssql;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const NOTIFY_TOKEN: &str = "test-notify-token-0123456789abcdef";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789abcdef";
/// Generous: CI machines are small and shared; every wait returns as soon as its condition holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    LegacyJwt,
    SecretKey,
}

/// Knobs a test may turn before starting its agent.
pub struct Options {
    pub key_style: KeyStyle,
    /// Overrides the service key sent to PostgREST (to test a wrong key).
    pub wrong_key: bool,
    pub backoff_base: &'static str,
    pub backoff_cap: &'static str,
    pub batch_size: usize,
    pub max_attempts: u32,
    pub timeout: &'static str,
    pub map: TableMap,
    pub signing_secret: Option<&'static str>,
    /// SQL run on the fresh Supabase database before the test server starts.
    pub setup_sql: &'static str,
    /// The SQL Server double to use (default: the sample clinic schema).
    pub store: Option<MemoryStore>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            key_style: KeyStyle::LegacyJwt,
            wrong_key: false,
            backoff_base: "50ms",
            backoff_cap: "400ms",
            batch_size: 50,
            max_attempts: 10,
            timeout: "2s",
            map: TableMap::sample_clinic(),
            signing_secret: None,
            setup_sql: "",
            store: None,
        }
    }
}

pub struct Harness {
    pub db: TestDb,
    pub rest: FakePostgrest,
    pub keys: ApiKeys,
    pub store: MemoryStore,
    pub data_dir: Arc<TempDir>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub options_map: TableMap,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The agent's configuration: `mssql` is its MSSQL_CONNECTION_STRING and `agent_id` its
/// SYNC_AGENT_ID; the rest comes from the test server, the data directory and `o`.
pub fn config(
    mssql: &str,
    agent_id: &str,
    rest_url: &str,
    key: String,
    data_dir: &TempDir,
    o: &Options,
) -> Config {
    let pairs = vec![
        ("MSSQL_CONNECTION_STRING", mssql.to_owned()),
        ("SUPABASE_URL", rest_url.to_owned()),
        ("SUPABASE_SERVICE_ROLE_KEY", key),
        ("SUPABASE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("SYNC_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("SYNC_NOTIFY_TOKEN", NOTIFY_TOKEN.to_owned()),
        ("SYNC_BATCH_SIZE", o.batch_size.to_string()),
        ("SYNC_MAX_ATTEMPTS", o.max_attempts.to_string()),
        ("SYNC_BACKOFF_BASE", o.backoff_base.to_owned()),
        ("SYNC_BACKOFF_CAP", o.backoff_cap.to_owned()),
        ("SUPABASE_TIMEOUT", o.timeout.to_owned()),
        ("SYNC_DATA_DIR", data_dir.path().display().to_string()),
        ("SYNC_AGENT_ID", agent_id.to_owned()),
        (
            "SUPABASE_WEBHOOK_SIGNING_SECRET",
            o.signing_secret.unwrap_or("").to_owned(),
        ),
        ("SYNC_MAX_BODY_BYTES", "65536".to_owned()),
    ];
    let lookup = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    Config::from_lookup(&lookup).expect("test configuration is valid")
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(o: Options) -> Self {
        let db = TestDb::create()
            .await
            .expect("test database (run scripts/pg-test-env.sh)");
        let keys = ApiKeys::generate();
        if !o.setup_sql.is_empty() {
            db.client()
                .batch_execute(o.setup_sql)
                .await
                .expect("setup SQL");
        }
        let rest = FakePostgrest::start(db.url(), keys.clone())
            .await
            .expect("fake PostgREST");
        let store = o.store.clone().unwrap_or_else(MemoryStore::sample_clinic);
        let data_dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut h = Self {
            db,
            rest,
            keys,
            store,
            data_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::new(),
            options_map: o.map.clone(),
            shutdown: CancellationToken::new(),
            task: None,
        };
        h.launch(&o).await;
        h
    }

    fn key(&self, o: &Options) -> String {
        if o.wrong_key {
            return ApiKeys::generate().service_role_jwt().to_owned();
        }
        match o.key_style {
            KeyStyle::LegacyJwt => self.keys.service_role_jwt().to_owned(),
            KeyStyle::SecretKey => self.keys.secret_key().to_owned(),
        }
    }

    /// Starts (or restarts) the agent over the same database, double and data directory.
    pub async fn launch(&mut self, o: &Options) {
        let config = config(
            "Server=127.0.0.1,1;Database=Clinic;User Id=sa;Password=unused-in-tests",
            "memory-agent",
            &self.rest.url(),
            self.key(o),
            &self.data_dir,
            o,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.addr = listener.local_addr().expect("addr");
        self.shutdown = CancellationToken::new();
        let agent = Agent {
            config,
            store: Arc::new(self.store.clone()),
            map: o.map.clone(),
        };
        self.task = Some(tokio::spawn(syncbridge::run(
            agent,
            listener,
            self.shutdown.clone(),
        )));
        let url = self.url("/api/sync/status");
        let http = self.http.clone();
        wait_for("agent ready and caught up", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(url).bearer_auth(ADMIN_TOKEN).send().await;
                match r {
                    // Ready, and the start-up catch-up has run (so its reads do not meet the
                    // faults a test injects next).
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .map(|v| {
                            v["agent"]["ready"] == json!(true)
                                && !v["reverse"]["state"]["catchup_last_run_at"].is_null()
                        })
                        .unwrap_or(false),
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    /// Stops the agent gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("agent task").expect("agent ran cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What sp_NotifyAppOfSync does.
    pub async fn notify(&self) -> reqwest::StatusCode {
        self.http
            .post(self.url("/api/sync/queue-notify"))
            .bearer_auth(NOTIFY_TOKEN)
            .json(&json!({"source": "sqlserver"}))
            .send()
            .await
            .expect("notify")
            .status()
    }

    pub async fn trigger(&self, direction: &str) -> Value {
        let r = self
            .http
            .post(self.url("/api/sync/trigger"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "direction": direction }))
            .send()
            .await
            .expect("trigger");
        assert_eq!(r.status(), 200, "trigger answered {}", r.status());
        r.json().await.expect("trigger json")
    }

    pub async fn status(&self) -> Value {
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

    /// Posts a webhook body with the shared secret (or `secret` when given).
    pub async fn webhook(
        &self,
        body: &Value,
        secret: Option<&str>,
    ) -> (reqwest::StatusCode, Value) {
        let r = self
            .http
            .post(self.url("/api/sync/webhook"))
            .bearer_auth(secret.unwrap_or(WEBHOOK_SECRET))
            .json(body)
            .send()
            .await
            .expect("webhook");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        self.db.query_json(sql).await.expect("query")
    }

    /// Waits until `GET /api/sync/status` satisfies `condition`; returns that status.
    pub async fn wait_status(&self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut recheck = tokio::time::interval(Duration::from_millis(10));
        loop {
            let status = self.status().await;
            if condition(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}; last status {status}"
            );
            recheck.tick().await;
        }
    }

    /// Waits until the SQL Server double satisfies `condition`.
    pub async fn wait_store(&self, what: &str, condition: impl Fn(&MemoryStore) -> bool) {
        let store = self.store.clone();
        let condition = &condition;
        wait_for(what, || {
            let store = store.clone();
            async move { condition(&store) }
        })
        .await;
    }

    /// Waits until the reverse inbox is empty (every accepted event applied or skipped).
    pub async fn wait_inbox_empty(&self) {
        self.wait_status("inbox empty", |s| {
            s["reverse"]["inbox"]["depth"] == json!(0)
        })
        .await;
    }

    /// Waits until the forward queue has no Pending item and the last drain finished.
    pub async fn wait_synced(&self) {
        let store = self.store.clone();
        wait_for("queue drained", || {
            let store = store.clone();
            async move { store.queue().iter().all(|q| q.status != "Pending") }
        })
        .await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `condition` until it holds or [`DEADLINE`] passes (then panics naming `what`).
/// This is the tests' only way to wait: on a condition, with a deadline.
pub async fn wait_for<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut recheck = tokio::time::interval(Duration::from_millis(10));
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        recheck.tick().await;
    }
}

pub fn key(column: &str, value: i64) -> RecordKey {
    RecordKey(
        [(column.to_owned(), KeyPart::Int(value))]
            .into_iter()
            .collect(),
    )
}

pub fn text_key(column: &str, value: &str) -> RecordKey {
    RecordKey(
        [(column.to_owned(), KeyPart::Text(value.to_owned()))]
            .into_iter()
            .collect(),
    )
}

pub fn row(values: &[(&str, SqlValue)]) -> Row {
    values
        .iter()
        .map(|(c, v)| ((*c).to_owned(), v.clone()))
        .collect()
}

use chrono::{NaiveDate, NaiveDateTime};
use syncbridge::mapping::value::Decimal;

pub fn ts(s: &str) -> SqlValue {
    SqlValue::DateTime(NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").expect("timestamp"))
}

pub fn money(s: &str) -> SqlValue {
    SqlValue::Decimal(
        Decimal::parse(s)
            .expect("decimal")
            .rescale(4)
            .expect("4 places"),
    )
}

pub fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

pub fn patient(id: i64, name: &str) -> Row {
    row(&[
        ("PersonID", SqlValue::Int(id)),
        ("PatientName", text(name)),
        ("Phone", text("0750 123 4567")),
        (
            "DateOfBirth",
            SqlValue::Date(NaiveDate::from_ymd_opt(1990, 2, 28).expect("date")),
        ),
        ("IsActive", SqlValue::Bit(true)),
        (
            "PatientGUID",
            SqlValue::Guid(uuid::Uuid::from_u128(id as u128)),
        ),
        ("Notes", SqlValue::Null),
        ("DateAdded", ts("2026-11-25T09:15:30.123")),
    ])
}

pub fn work(id: i64, person: i64) -> Row {
    row(&[
        ("WorkID", SqlValue::Int(id)),
        ("PersonID", SqlValue::Int(person)),
        ("TypeOfWork", text("Aligners")),
        ("TotalRequired", money("1500000.0000")),
        ("Currency", text("IQD")),
        ("StartDate", SqlValue::Null),
        ("Finished", SqlValue::Bit(false)),
        ("AdditionTime", ts("2026-11-25T09:20:00.000")),
    ])
}

pub fn aligner_set(id: i64, work: i64) -> Row {
    row(&[
        ("AlignerSetID", SqlValue::Int(id)),
        ("WorkID", SqlValue::Int(work)),
        ("SetSequence", SqlValue::Int(1)),
        ("UpperAlignersCount", SqlValue::Int(20)),
        ("LowerAlignersCount", SqlValue::Int(18)),
        (
            "SetCost",
            SqlValue::Decimal(Decimal::parse("1250.50").expect("decimal")),
        ),
        ("IsActive", SqlValue::Bit(true)),
        (
            "CreationDate",
            SqlValue::DateTimeOffset(
                chrono::DateTime::parse_from_rfc3339("2026-11-25T09:30:00.250+03:00").expect("tz"),
            ),
        ),
    ])
}

pub fn batch(id: i64, set: i64, days: i64) -> Row {
    row(&[
        ("AlignerBatchID", SqlValue::Int(id)),
        ("AlignerSetID", SqlValue::Int(set)),
        ("BatchSequence", SqlValue::Int(id)),
        ("UpperAlignerCount", SqlValue::Int(5)),
        ("LowerAlignerCount", SqlValue::Int(5)),
        ("Days", SqlValue::Int(days)),
        ("ManufactureDate", SqlValue::Null),
        ("DeliveredToPatientDate", SqlValue::Null),
        ("Notes", text("first batch")),
        ("LabelCode", SqlValue::Binary(vec![0xde, 0xad, 0xbe, 0xef])),
    ])
}

/// A note keyed as SQL Server's FOR JSON writes GUIDs (upper case).
pub fn note(uid: &str, set: i64, note_type: &str, body: &str) -> Row {
    row(&[
        ("NoteID", SqlValue::Int(1)),
        (
            "NoteUID",
            SqlValue::Guid(uuid::Uuid::parse_str(uid).expect("uuid")),
        ),
        ("AlignerSetID", SqlValue::Int(set)),
        ("NoteType", text(note_type)),
        ("NoteText", text(body)),
        ("CreatedAt", ts("2026-11-25T10:00:00.000")),
        ("IsEdited", SqlValue::Bit(false)),
        ("EditedAt", SqlValue::Null),
        ("IsRead", SqlValue::Bit(false)),
    ])
}

pub fn note_key(uid: &str) -> RecordKey {
    text_key("NoteUID", &uid.to_uppercase())
}

/// Creates patient 1 → work 1 → set 1 in the double (parents of batches and notes).
pub fn seed_parents(store: &MemoryStore) {
    store.clinic_write(
        "tblPatients",
        &key("PersonID", 1),
        Some(patient(1, "Test Patient")),
    );
    store.clinic_write("tblWork", &key("WorkID", 1), Some(work(1, 1)));
    store.clinic_write(
        "tblAlignerSets",
        &key("AlignerSetID", 1),
        Some(aligner_set(1, 1)),
    );
}

pub const NOTE_A: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
pub const NOTE_B: &str = "0b0e3e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

/// A Supabase `aligner_notes` record as the webhook carries it.
pub fn note_record(uid: &str, body: &str, updated_at: &str) -> Value {
    json!({"note_uid": uid, "aligner_set_id": 1, "note_type": "Doctor", "note_text": body,
           "created_at": "2026-11-25T10:00:00", "is_edited": false, "edited_at": null, "is_read": false,
           "updated_at": updated_at})
}

/// A Supabase `aligner_batches` record as the webhook carries it.
pub fn batch_record(id: i64, days: i64, notes: &str, updated_at: &str) -> Value {
    json!({"aligner_batch_id": id, "aligner_set_id": 1, "batch_sequence": id, "upper_aligner_count": 5,
           "lower_aligner_count": 5, "days": days, "manufacture_date": null, "delivered_to_patient_date": null,
           "notes": notes, "label_code": "\\xdeadbeef", "updated_at": updated_at})
}

pub fn hook(kind: &str, table: &str, record: Option<Value>, old: Option<Value>) -> Value {
    json!({"type": kind, "table": table, "schema": "public", "record": record, "old_record": old})
}

/// The text of note `uid` in the SQL Server double.
pub fn note_text(store: &MemoryStore, uid: &str) -> Option<String> {
    match store
        .row("tblAlignerNotes", &note_key(uid))?
        .get("NoteText")
    {
        Some(SqlValue::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

pub fn days(store: &MemoryStore, id: i64) -> Option<SqlValue> {
    store
        .row("tblAlignerBatches", &key("AlignerBatchID", id))?
        .get("Days")
        .cloned()
}

/// Inserts patient 1 → work 1 → set 1 straight into the Supabase database (parents for notes
/// and batches written there by the portal).
pub async fn seed_supabase_parents(db: &TestDb) {
    db.client()
        .batch_execute(
            "INSERT INTO patients (person_id, patient_name, is_active, patient_guid, date_added)
               VALUES (1, 'P', true, gen_random_uuid(), '2026-01-01');
             INSERT INTO work (work_id, person_id, type_of_work, addition_time) VALUES (1, 1, 'Aligners', '2026-01-01');
             INSERT INTO aligner_sets (aligner_set_id, work_id, set_sequence, creation_date) VALUES (1, 1, 1, now());",
        )
        .await
        .expect("seed Supabase parents");
}

/// A NOT NULL, non-identity column of a test table in the double.
pub fn column(
    name: &str,
    sql_type: syncbridge::mapping::value::SqlType,
) -> syncbridge::sqlserver::SourceColumn {
    syncbridge::sqlserver::SourceColumn {
        name: name.to_owned(),
        sql_type,
        nullable: false,
        identity: false,
        computed: false,
    }
}
