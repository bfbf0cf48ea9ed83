//! The testkit's one error type. Tests usually `?` it away; the variants exist so a failure says
//! what to do about it (start PostgreSQL, fix a SQL file) instead of a bare driver error.

use std::path::PathBuf;
use std::time::Duration;

/// Everything the testkit's setup and waiting helpers can fail with.
#[derive(thiserror::Error)]
pub enum TestkitError {
    /// The PostgreSQL server behind `PG_TEST_URL` did not answer.
    #[error(
        "cannot reach PostgreSQL at {url}. Start the throwaway test server with \
         `eval \"$(scripts/pg-test-env.sh)\"` (it exports PG_TEST_URL) and run the tests again"
    )]
    PgUnreachable {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// `PG_TEST_URL` (or a URL handed to the testkit) is not a `postgres://` URL.
    #[error("invalid PostgreSQL URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    /// A schema file could not be read.
    #[error("cannot read SQL file {path}")]
    ReadSql {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A schema file failed while building the template database.
    #[error("SQL file {path} failed")]
    ApplySql {
        path: PathBuf,
        #[source]
        source: tokio_postgres::Error,
    },

    /// Any other database error.
    #[error("database error")]
    Db(#[from] tokio_postgres::Error),

    /// Binding or re-binding a listener failed.
    #[error("I/O error")]
    Io(#[from] std::io::Error),

    /// A wait with a deadline ran out.
    #[error("timed out after {waited:?} waiting for {what} (saw {seen})")]
    Timeout {
        what: String,
        waited: Duration,
        seen: usize,
    },
}

/// Tests mostly surface errors through `expect` or a `Result`-returning test, both of which print
/// `Debug`; showing the message and its causes there keeps the advice (start PostgreSQL, which
/// SQL file failed) visible instead of a nested struct dump.
impl std::fmt::Debug for TestkitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            write!(f, "\n  caused by: {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// Shorthand used across the testkit.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;

/// Renders a connection URL without its password, for error messages.
pub(crate) fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot carry credentials, and this one did.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// Waits until the counter behind `count` reaches `n`, for at most `within`; the timeout error
/// names `what` and how many were seen. Shared by the request log and the webhook relay.
pub(crate) async fn wait_for_count(
    mut count: tokio::sync::watch::Receiver<usize>,
    n: usize,
    within: Duration,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let reached = tokio::time::timeout(within, count.wait_for(|c| *c >= n))
        .await
        .is_ok_and(|seen| seen.is_ok());
    if reached {
        return Ok(());
    }
    Err(TestkitError::Timeout {
        what: what(),
        waited: within,
        seen: *count.borrow(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact_url("postgres://u@h:1/db"), "postgres://u@h:1/db");
    }
}
