//! The agent's local SQLite database, `<SYNC_DATA_DIR>/inbox.sqlite3`: opened once in WAL mode
//! and shared by its two owners, the reverse inbox (`reverse::inbox`) and the schema cache
//! (`agent::schema_cache`), each of which creates and uses its own tables. Owns opening, the
//! pragmas and running a statement off the async runtime; knows nothing of what is stored.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

/// The file name, kept from when the inbox was its only user.
const FILE: &str = "inbox.sqlite3";

#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalDbError {
    #[error("inbox database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The directory exists but no file can be written in it (a read-only file system, or
    /// permissions): the agent could acknowledge no webhook, so it does not start.
    #[error("the data directory {path} (SYNC_DATA_DIR) is not writable")]
    Unwritable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("inbox task failed: {0}")]
    Join(#[source] tokio::task::JoinError),
    /// The group commit this write was part of failed (every write of the group gets it).
    #[error("inbox group commit failed: {0}")]
    GroupCommit(#[source] Arc<LocalDbError>),
    #[error("the inbox writer stopped")]
    WriterStopped,
}

#[derive(Clone)]
pub(crate) struct LocalDb {
    conn: Arc<Mutex<Connection>>,
}

impl LocalDb {
    /// Whether `dir` holds the database (an agent has run there).
    pub(crate) fn exists_in(dir: &Path) -> bool {
        dir.join(FILE).is_file()
    }

    /// Opens (creating if needed) `dir/inbox.sqlite3`.
    pub(crate) fn open(dir: &Path) -> Result<Self, LocalDbError> {
        std::fs::create_dir_all(dir).map_err(|source| LocalDbError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(dir.join(FILE))?;
        // WAL, so a commit is one append to the log; whether it is fsync'd is chosen per
        // transaction (see `durable`).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens the database for an agent or a command that writes it, first proving that `dir`
    /// takes a new file: on a read-only file system SQLite would open an existing database
    /// read-only without a word, and every write would fail later.
    pub(crate) fn open_for_writing(dir: &Path) -> Result<Self, LocalDbError> {
        std::fs::create_dir_all(dir).map_err(|source| LocalDbError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let probe = dir.join(".syncbridge-write-probe");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|source| LocalDbError::Unwritable {
                path: dir.display().to_string(),
                source,
            })?;
        Self::open(dir)
    }

    fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
        conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates an owner's tables (`CREATE TABLE IF NOT EXISTS ...`), at start-up.
    pub(crate) fn create(&self, schema: &str) -> Result<(), LocalDbError> {
        Self::lock(&self.conn).execute_batch(schema)?;
        Ok(())
    }

    /// Runs `f` on the connection off the async runtime (SQLite and fsync block).
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, LocalDbError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut Self::lock(&conn)).map_err(LocalDbError::from))
            .await
            .map_err(LocalDbError::Join)?
    }
}

/// `synchronous=FULL` fsyncs the log at commit; `NORMAL` leaves that to the next checkpoint or
/// durable commit. Completions need no fsync: if a crash loses one, the event is applied again,
/// which is harmless (writes compare before they change anything).
pub(crate) fn durable(conn: &Connection, yes: bool) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "synchronous", if yes { "FULL" } else { "NORMAL" })
}
