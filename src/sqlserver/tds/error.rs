//! Maps tiberius errors onto [`StoreError`], so the worker can ask `is_retryable()` instead of
//! reading error numbers. Messages carry SQL Server's own text and number, never anything from
//! the connection configuration (no connection string, no password).

use std::io::ErrorKind;

use tiberius::error::Error;

use crate::sqlserver::StoreError;

/// Longest error text kept; SQL Server messages are short, tiberius' never long.
const MAX_MESSAGE: usize = 1000;

/// SQL Server errors worth retrying as they are: the same statement may succeed later.
const TRANSIENT: &[u32] = &[
    1204,  // the instance cannot obtain a lock resource
    1205,  // chosen as deadlock victim
    1222,  // lock request time out period exceeded
    701,   // insufficient system memory
    8645,  // timeout waiting for memory resources
    8651,  // low memory condition
    3960,  // snapshot isolation update conflict
    3961,  // snapshot isolation: object changed by DDL
    41302, // in-memory OLTP write conflict
    41305, // in-memory OLTP repeatable read validation
    41325, // in-memory OLTP serializable validation
    40501, // service busy (Azure SQL)
    40197, // service error processing request (Azure SQL)
    49918, // not enough resources (Azure SQL)
];

/// SQL Server errors meaning the server, the database or the login is not usable right now.
const UNAVAILABLE: &[u32] = &[
    4060,  // cannot open database requested by the login
    4064,  // cannot open user default database
    18456, // login failed
    18452, // login from an untrusted domain
    18487, // password expired
    18488, // password must be changed
    6005,  // SHUTDOWN is in progress
    17142, // server paused
    942,   // database is offline
    945,   // database cannot be opened (files inaccessible)
    926,   // database marked suspect
    40613, // database not currently available (Azure SQL)
];

/// SQL Server errors meaning the setup is wrong, not the row: an object or column the statement
/// names is missing (a table renamed, a mapped column dropped, a script not run) or the login
/// lacks a permission. Every row of the table would fail alike, so none is charged an attempt.
const MISCONFIGURED: &[u32] = &[
    207,   // invalid column name
    208,   // invalid object name
    2812,  // could not find stored procedure
    229,   // permission denied on an object
    230,   // permission denied on a column
    262,   // permission denied in the database (CREATE, SHOWPLAN, ...)
    297,   // the user does not have permission to perform this action
    916,   // the login cannot access the database under its security context
    4902,  // cannot find the object (ALTER TABLE), or no permission
    15151, // cannot find the object or user, or no permission (GRANT and friends)
];

/// What kind of failure a SQL Server error number and severity stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Unavailable,
    Transient,
    Misconfigured,
    Rejected,
}

/// Classifies a server error. Severity 20 and above ends the connection (fatal errors); anything
/// else not listed is the statement refused for its data: constraint (547), duplicate key
/// (2627, 2601), NULL into NOT NULL (515), truncation (8152, 2628), conversion (245, 8114, 241,
/// 242), and so on.
pub(super) fn classify(code: u32, class: u8) -> Kind {
    if UNAVAILABLE.contains(&code) || class >= 20 {
        Kind::Unavailable
    } else if TRANSIENT.contains(&code) {
        Kind::Transient
    } else if MISCONFIGURED.contains(&code) {
        Kind::Misconfigured
    } else {
        Kind::Rejected
    }
}

/// Any error while opening a connection: SQL Server is, for the agent, unavailable.
pub(super) fn connect_failed(e: &Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect: {}", bounded(&describe(e))))
}

/// An error from an established connection.
pub(super) fn from_tiberius(e: &Error) -> StoreError {
    let text = bounded(&describe(e));
    match e {
        Error::Server(token) => match classify(token.code(), token.class()) {
            Kind::Unavailable => StoreError::Unavailable(text),
            Kind::Transient => StoreError::Transient(text),
            Kind::Misconfigured => StoreError::Misconfigured(text),
            Kind::Rejected => StoreError::Rejected(text),
        },
        // tiberius' command timeout: SQL Server stopped answering mid-statement.
        Error::Io {
            kind: ErrorKind::TimedOut,
            ..
        } => StoreError::Transient(text),
        Error::Io { .. } | Error::Tls(_) | Error::Routing { .. } => StoreError::Unavailable(text),
        // A value SQL Server sent that cannot be decoded (e.g. nvarchar holding invalid UTF-16:
        // tiberius decodes strictly and reports it as a protocol error) belongs to the rows
        // being read, not to the connection, which is discarded anyway.
        _ => StoreError::Rejected(text),
    }
}

fn describe(e: &Error) -> String {
    match e {
        Error::Server(token) => format!("SQL Server error {}: {}", token.code(), token.message()),
        other => other.to_string(),
    }
}

fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `.sql()?` turns a tiberius result into a store result at each call site.
pub(super) trait SqlResult<T> {
    fn sql(self) -> Result<T, StoreError>;
}

impl<T> SqlResult<T> for Result<T, Error> {
    fn sql(self) -> Result<T, StoreError> {
        self.map_err(|e| from_tiberius(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlocks_and_lock_timeouts_are_transient() {
        assert_eq!(classify(1205, 13), Kind::Transient);
        assert_eq!(classify(1222, 16), Kind::Transient);
    }

    #[test]
    fn data_errors_are_rejected() {
        for code in [547, 2627, 2601, 515, 8152, 2628, 245, 8114, 241, 242, 50000] {
            assert_eq!(classify(code, 16), Kind::Rejected, "error {code}");
        }
    }

    #[test]
    fn missing_objects_and_permissions_are_the_setups_fault_not_the_rows() {
        for code in [207, 208, 2812, 229, 230, 262, 297, 916] {
            assert_eq!(classify(code, 16), Kind::Misconfigured, "error {code}");
        }
        // Severity 14 is how SQL Server raises permission errors; the class does not decide.
        assert_eq!(classify(229, 14), Kind::Misconfigured);
    }

    #[test]
    fn login_and_fatal_errors_are_unavailable() {
        assert_eq!(classify(18456, 14), Kind::Unavailable);
        assert_eq!(classify(4060, 11), Kind::Unavailable);
        assert_eq!(classify(9001, 21), Kind::Unavailable);
    }

    #[test]
    fn io_errors_are_unavailable_and_timeouts_transient() {
        let refused = Error::Io {
            kind: ErrorKind::ConnectionRefused,
            message: "connection refused".into(),
        };
        assert!(matches!(
            from_tiberius(&refused),
            StoreError::Unavailable(_)
        ));
        let timeout = Error::Io {
            kind: ErrorKind::TimedOut,
            message: "timed out".into(),
        };
        assert!(matches!(from_tiberius(&timeout), StoreError::Transient(_)));
        assert!(matches!(
            from_tiberius(&Error::Tls("bad cert".into())),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            connect_failed(&Error::Conversion("browser".into())),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn undecodable_values_are_rejected() {
        let e = Error::Protocol("nvarchar: invalid UTF-16 sequence".into());
        assert!(matches!(from_tiberius(&e), StoreError::Rejected(_)));
    }

    #[test]
    fn long_messages_are_cut() {
        let e = Error::Conversion("x".repeat(5000).into());
        let StoreError::Rejected(text) = from_tiberius(&e) else {
            panic!("expected Rejected");
        };
        assert!(text.chars().count() <= MAX_MESSAGE + 30);
    }
}
