//! Errors from PostgREST, classified once ([`PostgrestError::class`]) so callers only ask what
//! to do about them.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::retry::ErrorClass;

/// PostgREST's error body (`{"code","details","hint","message"}`); Supabase's gateway answers
/// auth failures with only `message`/`hint`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub hint: Option<String>,
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(self.message.as_deref().unwrap_or("(no message)"))?;
        if let Some(details) = &self.details {
            write!(f, " ({details})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " hint: {hint}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PostgrestError {
    #[error("PostgREST answered HTTP {status}: {body}")]
    Status {
        status: u16,
        body: ErrorBody,
        retry_after: Option<Duration>,
    },
    #[error("PostgREST did not answer within {0:?}")]
    Timeout(Duration),
    /// No answer (connection refused or reset, TLS, DNS). Displayed with its causes, which say
    /// why: the error is recorded as text (queue `LastError`, the status endpoint).
    #[error("cannot reach PostgREST: {}", readable(.0))]
    Network(#[source] reqwest::Error),
    /// An answer that is not the JSON asked for.
    #[error("unexpected PostgREST response: {}", readable(.0))]
    Decode(#[source] reqwest::Error),
    #[error("cannot encode the request body: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("bad table name {table:?}: {source}")]
    TableName {
        table: String,
        #[source]
        source: url::ParseError,
    },
    #[error("the service key contains characters not allowed in a header")]
    KeyNotAHeader,
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// A reqwest error and its causes on one line, with the URL shortened to its path: the URL
/// holds no secret, but the message reads better without the query string.
fn readable(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl PostgrestError {
    /// The one place PostgREST's answers are read for what to do about them.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Status { status, body, .. } => status_class(*status, body.code.as_deref()),
            // No answer, or not the one asked for (a captive portal's page, a proxy's).
            Self::Timeout(_) | Self::Network(_) | Self::Decode(_) | Self::Client(_) => {
                ErrorClass::Outage
            }
            // Only this row's values can make its JSON unencodable.
            Self::Encode(_) => ErrorClass::Rejected,
            Self::TableName { .. } | Self::KeyNotAHeader => ErrorClass::ConfigFault,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }

    /// PostgREST does not know a column the request names (`PGRST204`: not in its schema
    /// cache; `42703`: PostgreSQL's undefined column): Supabase's schema may have changed.
    pub fn is_unknown_column(&self) -> bool {
        matches!(self, Self::Status { body, .. } if matches!(body.code.as_deref(), Some("PGRST204" | "42703")))
    }

    /// PostgreSQL's foreign key violation (23503): a row this one references is not in
    /// Supabase (an upsert), or a row still references this one (a delete). Whether that is
    /// the row's own fault depends on the queue (`forward::batch`), not on the error.
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self, Self::Status { body, .. } if body.code.as_deref() == Some("23503"))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn status_class(status: u16, code: Option<&str>) -> ErrorClass {
    match (status, code) {
        (401 | 403, _) => ErrorClass::ConfigFault,
        // 23503: the parent row is not in Supabase yet (it may be in a later batch or being
        // retried); waiting can fix it, unlike other constraint violations.
        (409, Some("23503")) => ErrorClass::RowRetryable,
        // 42501 is PostgreSQL's "insufficient privilege": the key's role is wrong.
        (_, Some("42501")) => ErrorClass::ConfigFault,
        // A missing table, column or function (PGRST202: `sql/supabase/03_versions.sql` not
        // installed) is the schema's fault, not the row's: every row would fail the same way,
        // so stop instead of burning attempts.
        (_, Some("PGRST202" | "PGRST204" | "PGRST205" | "42P01" | "42703")) => {
            ErrorClass::ConfigFault
        }
        // PostgreSQL's "program limit exceeded" (54000, e.g. a value too big for an index
        // row, answered 500): only this row's data causes it.
        (500, Some(code)) if code.starts_with("54") => ErrorClass::Rejected,
        // Anything that says "Supabase is not answering properly": the gateway's 502/503/504,
        // PostgREST's own 503s (PGRST000-003: no database connection), rate limits, timeouts,
        // and other 500s (a database that is shutting down, out of resources, failing over).
        (408 | 429, _) | (500..=599, _) => ErrorClass::Outage,
        _ => ErrorClass::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<&str>) -> PostgrestError {
        PostgrestError::Status {
            status,
            body: ErrorBody {
                code: code.map(str::to_owned),
                ..ErrorBody::default()
            },
            retry_after: None,
        }
    }

    #[test]
    fn classification() {
        assert_eq!(status(401, None).class(), ErrorClass::ConfigFault);
        assert_eq!(status(403, Some("42501")).class(), ErrorClass::ConfigFault);
        assert_eq!(status(409, Some("23503")).class(), ErrorClass::RowRetryable);
        assert_eq!(status(409, Some("23505")).class(), ErrorClass::Rejected);
        assert!(status(409, Some("23503")).is_foreign_key_violation());
        assert!(!status(409, Some("23505")).is_foreign_key_violation());
        assert_eq!(status(400, Some("22P02")).class(), ErrorClass::Rejected);
        assert_eq!(
            status(400, Some("PGRST204")).class(),
            ErrorClass::ConfigFault
        );
        assert_eq!(
            status(404, Some("PGRST205")).class(),
            ErrorClass::ConfigFault
        );
        assert_eq!(status(400, Some("42703")).class(), ErrorClass::ConfigFault);
        assert_eq!(
            status(404, Some("PGRST202")).class(),
            ErrorClass::ConfigFault
        );
        assert_eq!(status(400, Some("23514")).class(), ErrorClass::Rejected);
        assert_eq!(status(429, None).class(), ErrorClass::Outage);
        assert_eq!(status(503, None).class(), ErrorClass::Outage);
        assert_eq!(status(500, Some("XX000")).class(), ErrorClass::Outage);
        assert_eq!(status(504, None).class(), ErrorClass::Outage);
        assert_eq!(status(503, Some("PGRST001")).class(), ErrorClass::Outage);
        assert_eq!(status(408, None).class(), ErrorClass::Outage);
        assert_eq!(status(500, Some("54000")).class(), ErrorClass::Rejected);
        assert_eq!(
            PostgrestError::Timeout(Duration::from_secs(1)).class(),
            ErrorClass::Outage
        );
        assert!(status(400, Some("PGRST204")).is_unknown_column());
        assert!(status(400, Some("42703")).is_unknown_column());
        assert!(!status(404, Some("PGRST205")).is_unknown_column());
        assert!(!status(401, None).is_unknown_column());
    }

    #[test]
    fn readable_message() {
        let e = PostgrestError::Status {
            status: 409,
            body: ErrorBody {
                code: Some("23503".into()),
                message: Some(
                    "insert or update on table \"work\" violates foreign key constraint".into(),
                ),
                details: Some("Key (person_id)=(5) is not present in table \"patients\".".into()),
                hint: None,
            },
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "PostgREST answered HTTP 409: 23503: insert or update on table \"work\" violates foreign key constraint (Key (person_id)=(5) is not present in table \"patients\".)"
        );
    }
}
