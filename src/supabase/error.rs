//! Errors from PostgREST, classified once so callers only ask what to do about them.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

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

/// What the worker should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try the same request again later (5xx, 408, 429, timeouts, network, missing FK parent).
    Retryable,
    /// The key or permissions are wrong: stop work, do not burn the items' attempts.
    ConfigFault,
    /// This data was refused (4xx): isolate the row, retry it on its own schedule.
    Rejected,
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
    #[error("cannot reach PostgREST: {0}")]
    Network(String),
    #[error("unexpected PostgREST response: {0}")]
    Decode(String),
}

impl PostgrestError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Timeout(_) | Self::Network(_) => ErrorClass::Retryable,
            Self::Decode(_) => ErrorClass::Retryable,
            Self::Status { status, body, .. } => match status {
                401 | 403 => ErrorClass::ConfigFault,
                // 23503: the parent row is not in Supabase yet (it may be in a later batch or
                // being retried); waiting can fix it, unlike other constraint violations.
                409 if body.code.as_deref() == Some("23503") => ErrorClass::Retryable,
                // 42501 is PostgreSQL's "insufficient privilege": the key's role is wrong.
                _ if body.code.as_deref() == Some("42501") => ErrorClass::ConfigFault,
                // A missing table or column is the schema's fault, not the row's: every row
                // would fail the same way, so stop instead of burning attempts.
                _ if matches!(
                    body.code.as_deref(),
                    Some("PGRST204" | "PGRST205" | "42P01" | "42703")
                ) =>
                {
                    ErrorClass::ConfigFault
                }
                408 | 429 => ErrorClass::Retryable,
                500..=599 => ErrorClass::Retryable,
                _ => ErrorClass::Rejected,
            },
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
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
        assert_eq!(status(409, Some("23503")).class(), ErrorClass::Retryable);
        assert_eq!(status(409, Some("23505")).class(), ErrorClass::Rejected);
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
        assert_eq!(status(400, Some("23514")).class(), ErrorClass::Rejected);
        assert_eq!(status(429, None).class(), ErrorClass::Retryable);
        assert_eq!(status(503, None).class(), ErrorClass::Retryable);
        assert_eq!(status(500, Some("XX000")).class(), ErrorClass::Retryable);
        assert_eq!(
            PostgrestError::Timeout(Duration::from_secs(1)).class(),
            ErrorClass::Retryable
        );
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
