//! Throwaway PostgreSQL databases carrying the Supabase-side schema.
//!
//! Every `sql/supabase/*.sql` (after the testkit's stand-in for the Supabase platform) is applied
//! once to a template database named after a hash of those files; each test then gets a fresh
//! clone, which takes milliseconds. Editing a SQL file changes the hash and so builds a new
//! template. This module owns database lifecycle only; HTTP lives in `postgrest`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{redact_url, Result, TestkitError};

/// Where the tests look for PostgreSQL when `PG_TEST_URL` is not set: the port
/// `scripts/pg-test-env.sh` uses.
pub const DEFAULT_PG_TEST_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// Serialises template builds across test binaries and threads; any constant works as long as
/// nothing else in the cluster uses it.
const TEMPLATE_LOCK_KEY: i64 = 0x5359_4e43_4252_4447;
const TEST_DB_PREFIX: &str = "syncbridge_test_";
/// Databases left behind by killed test runs are dropped once they are this old.
const LEFTOVER_MAX_AGE: Duration = Duration::from_secs(6 * 60 * 60);
/// Set to keep every test database after the test (they are always kept after a panic).
const KEEP_ENV: &str = "SYNCBRIDGE_KEEP_TEST_DB";

/// A fresh, uniquely named database with the Supabase schema, dropped again when the value is.
pub struct TestDb {
    name: String,
    url: String,
    server_url: String,
    client: Client,
    _connection: JoinHandle<()>,
}

impl TestDb {
    /// Creates a database on the server named by `PG_TEST_URL` (default [`DEFAULT_PG_TEST_URL`]).
    pub async fn create() -> Result<TestDb> {
        let server_url =
            std::env::var("PG_TEST_URL").unwrap_or_else(|_| DEFAULT_PG_TEST_URL.to_owned());
        Self::create_on(&server_url).await
    }

    /// Creates a database on the server reached through `server_url` (any database on it; the
    /// URL's own database is used for administration only).
    pub async fn create_on(server_url: &str) -> Result<TestDb> {
        let (admin, admin_conn) = connect(server_url).await?;
        let template = ensure_template(&admin, server_url).await?;
        drop_leftovers(&admin).await;

        let name = new_database_name();
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(&template)
            ))
            .await?;
        // Supabase runs in UTC; a database-level default makes every client see it that way.
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} SET timezone TO 'UTC'",
                quote_ident(&name)
            ))
            .await?;
        drop(admin);
        let _ = admin_conn.await;

        let url = with_database(server_url, &name)?;
        let (client, connection) = connect(&url).await?;
        tracing::debug!(database = %name, "created test database");
        Ok(TestDb {
            name,
            url,
            server_url: server_url.to_owned(),
            client,
            _connection: connection,
        })
    }

    /// `postgres://` URL of this database, for the agent, `FakePostgrest` and `WebhookRelay`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection to this database, for setup and assertions.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `sql` and returns each row as a JSON object (`to_jsonb` of the row), for assertions.
    pub async fn query_json(&self, sql: &str) -> Result<Vec<serde_json::Value>> {
        let rows = self
            .client
            .query(
                &format!("SELECT to_jsonb(syncbridge_row) FROM ({sql}) AS syncbridge_row"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(TestkitError::from))
            .collect()
    }

    /// Installs the reverse-sync Database Webhooks (`sql/supabase/02_webhooks.sql`) pointing at
    /// `webhook_url`, skipping the agent's own writes as in production.
    pub async fn install_webhooks(&self, webhook_url: &str, secret: &str) -> Result<()> {
        self.client
            .execute(
                "SELECT public.syncbridge_install_webhooks($1, $2)",
                &[&webhook_url, &secret],
            )
            .await?;
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("syncbridge-testkit: kept test database {}", self.url);
            return;
        }
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop cannot await, and blocking this runtime's thread could starve the connections the
        // drop has to wait for; a private runtime on its own thread sidesteps both.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(drop_database(&server_url, &name)),
                Err(err) => tracing::warn!(%err, "cannot drop test database {name}"),
            }
        });
        let _ = dropper.join();
    }
}

/// Connects with a short timeout and drives the connection on a task.
pub(crate) async fn connect(url: &str) -> Result<(Client, JoinHandle<()>)> {
    let mut config: Config =
        url.parse()
            .map_err(|err: tokio_postgres::Error| TestkitError::BadUrl {
                url: redact_url(url),
                reason: err.to_string(),
            })?;
    config
        .connect_timeout(Duration::from_secs(5))
        .application_name("syncbridge-testkit");
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| TestkitError::PgUnreachable {
                url: redact_url(url),
                source,
            })?;
    let task = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "testkit database connection ended");
        }
    });
    Ok((client, task))
}

/// Returns the name of a complete template for the current SQL files, building it if needed.
async fn ensure_template(admin: &Client, server_url: &str) -> Result<String> {
    let files = schema_files()?;
    let template = template_name(&files);
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK_KEY])
        .await?;
    let built = build_template_if_missing(admin, server_url, &template, &files).await;
    // Always release, also after a failed build; closing the connection would release it too.
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK_KEY])
        .await?;
    built.map(|()| template)
}

async fn build_template_if_missing(
    admin: &Client,
    server_url: &str,
    template: &str,
    files: &[(PathBuf, String)],
) -> Result<()> {
    let state = admin
        .query_opt(
            "SELECT datistemplate FROM pg_database WHERE datname = $1",
            &[&template],
        )
        .await?;
    // is_template is set only after every file applied, so it doubles as "the build finished".
    match state.map(|row| row.get::<_, bool>(0)) {
        Some(true) => return Ok(()),
        Some(false) => {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE {} WITH (FORCE)",
                    quote_ident(template)
                ))
                .await?
        }
        None => {}
    }
    tracing::info!(%template, "building the Supabase schema template database");
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(template)))
        .await?;
    let (client, connection) = connect(&with_database(server_url, template)?).await?;
    for (path, sql) in files {
        client
            .batch_execute(sql)
            .await
            .map_err(|source| TestkitError::ApplySql {
                path: path.clone(),
                source,
            })?;
    }
    // CREATE DATABASE ... TEMPLATE refuses while anyone is connected to the template, so the
    // connection is closed for good (not just dropped) before the template is marked ready.
    drop(client);
    let _ = connection.await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
            quote_ident(template)
        ))
        .await?;
    Ok(())
}

/// The platform stand-in first (Supabase provides it before any migration), then the schema
/// files in file-name order.
fn schema_files() -> Result<Vec<(PathBuf, String)>> {
    let testkit_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema_dir = testkit_dir.join("..").join("sql").join("supabase");
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TestkitError::ReadSql { path, source }
    };
    let mut schema: Vec<PathBuf> = std::fs::read_dir(&schema_dir)
        .map_err(read_err(&schema_dir))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    schema.sort();
    let mut paths = vec![testkit_dir.join("sql").join("supabase_functions_stub.sql")];
    paths.extend(schema);
    paths
        .into_iter()
        .map(|path| {
            let sql = std::fs::read_to_string(&path).map_err(read_err(&path))?;
            Ok((path, sql))
        })
        .collect()
}

fn template_name(files: &[(PathBuf, String)]) -> String {
    let mut hasher = Sha256::new();
    for (path, sql) in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(sql.as_bytes());
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    format!("syncbridge_tpl_{}", &digest[..16])
}

/// `syncbridge_test_<unix seconds>_<random>`: the timestamp lets later runs spot leftovers.
fn new_database_name() -> String {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{TEST_DB_PREFIX}{created}_{}", &random[..12])
}

/// Best effort: drops test databases that killed runs left behind. Errors are ignored because a
/// concurrent run may be dropping the same database.
async fn drop_leftovers(admin: &Client) {
    let Ok(rows) = admin
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&TEST_DB_PREFIX],
        )
        .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|c| now.saturating_sub(c) > LEFTOVER_MAX_AGE.as_secs()) {
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            );
            let _ = admin.batch_execute(&sql).await;
        }
    }
}

async fn drop_database(server_url: &str, name: &str) {
    let result = async {
        let (admin, connection) = connect(server_url).await?;
        // FORCE ends the connections a test left open (fake server pool, relay).
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
        admin.batch_execute(&sql).await?;
        drop(admin);
        let _ = connection.await;
        Ok::<_, TestkitError>(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(%err, "cannot drop test database {name}");
    }
}

/// Replaces the database in a `postgres://` URL.
pub(crate) fn with_database(server_url: &str, database: &str) -> Result<String> {
    let mut url = url::Url::parse(server_url).map_err(|err| TestkitError::BadUrl {
        url: redact_url(server_url),
        reason: format!("{err} (the testkit needs the postgres://user@host:port/db form)"),
    })?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// Double-quotes an identifier for SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_and_keeps_the_rest() {
        let url = with_database(
            "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable",
            "x",
        );
        assert_eq!(
            url.ok().as_deref(),
            Some("postgres://postgres@127.0.0.1:55432/x?sslmode=disable")
        );
    }

    #[test]
    fn template_name_follows_file_contents() {
        let a = vec![(PathBuf::from("01.sql"), "select 1".to_owned())];
        let b = vec![(PathBuf::from("01.sql"), "select 2".to_owned())];
        assert_ne!(template_name(&a), template_name(&b));
        assert_eq!(template_name(&a), template_name(&a.clone()));
        assert!(template_name(&a).starts_with("syncbridge_tpl_"));
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
