//! Error answers in PostgREST's shape `{"code","details","hint","message"}`, the SQLSTATE to HTTP
//! status mapping of PostgREST v12 (src/PostgREST/Error.hs, `mapSQLtoHTTP`), and the gateway's
//! own `{"message","hint"}` answers for API-key problems.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

/// An answer other than success, ready to send.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A PostgREST-generated (or PostgreSQL-forwarded) error.
    pub fn pgrst(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        Self::full(status, code, message.into(), None, None)
    }

    pub fn full(
        status: u16,
        code: &str,
        message: String,
        details: Option<String>,
        hint: Option<String>,
    ) -> ApiError {
        ApiError {
            status,
            body: json!({"code": code, "details": details, "hint": hint, "message": message}),
            headers: Vec::new(),
        }
    }

    /// The API gateway's answer, which has no PostgREST code.
    pub fn gateway(status: u16, message: &str, hint: &str) -> ApiError {
        ApiError {
            status,
            body: json!({"message": message, "hint": hint}),
            headers: Vec::new(),
        }
    }

    /// PGRST301: the Authorization header does not hold a valid JWT for this project.
    pub fn bad_jwt(message: String) -> ApiError {
        let mut err = Self::pgrst(401, "PGRST301", message.clone());
        let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{message}\"");
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            err.headers
                .push((axum::http::header::WWW_AUTHENTICATE, value));
        }
        err
    }

    /// PGRST100: the query string does not parse.
    pub fn parse(what: &str, input: &str, position: usize, details: &str) -> ApiError {
        Self::full(
            400,
            "PGRST100",
            format!(
                "\"failed to parse {what} ({input})\" (line 1, column {})",
                position + 1
            ),
            Some(details.to_owned()),
            None,
        )
    }

    /// PGRST102: the body is not JSON PostgREST can insert.
    pub fn invalid_body(message: &str) -> ApiError {
        Self::pgrst(400, "PGRST102", message)
    }

    /// PGRST108: a filter names an embedded resource that the request does not select.
    pub fn not_embedded(key: &str) -> ApiError {
        let resource = key.split('.').next().unwrap_or(key);
        Self::full(
            400,
            "PGRST108",
            format!("'{resource}' is not an embedded resource in this request"),
            None,
            Some(format!(
                "Verify that '{resource}' is included in the 'select' query parameter."
            )),
        )
    }

    /// PGRST127: something real PostgREST supports but this fake does not.
    pub fn not_implemented(feature: &str) -> ApiError {
        Self::full(
            400,
            "PGRST127",
            "Feature not implemented".to_owned(),
            Some(format!(
                "syncbridge-testkit's fake PostgREST does not support {feature}"
            )),
            None,
        )
    }

    /// PGRST204: a payload or `columns` name that is not a column.
    pub fn column_not_found(table: &str, column: &str) -> ApiError {
        Self::pgrst(
            400,
            "PGRST204",
            format!("Could not find the '{column}' column of '{table}' in the schema cache"),
        )
    }

    /// PGRST205: no such table in the exposed schema.
    pub fn table_not_found(table: &str) -> ApiError {
        Self::pgrst(
            404,
            "PGRST205",
            format!("Could not find the table 'public.{table}' in the schema cache"),
        )
    }

    /// 42703 as PostgreSQL words it, for filters, order and select naming unknown columns.
    pub fn undefined_column(table: &str, column: &str) -> ApiError {
        Self::pgrst(
            400,
            "42703",
            format!("column {table}.{column} does not exist"),
        )
    }

    /// What PostgREST answers when PostgreSQL rejects the statement. `authenticated` decides
    /// 42501 (permission denied): 401 for the anonymous role, 403 for everyone else.
    pub fn from_db(err: &tokio_postgres::Error, authenticated: bool) -> ApiError {
        let Some(db) = err.as_db_error() else {
            // Lost or broken connection: PostgREST's client errors.
            return Self::full(
                503,
                "PGRST001",
                "Database client error. Retrying the connection.".to_owned(),
                Some(err.to_string()),
                None,
            );
        };
        let code = db.code().code();
        let status = status_for_sqlstate(code, db.message(), authenticated);
        let mut answer = Self::full(
            status,
            code,
            db.message().to_owned(),
            db.detail().map(str::to_owned),
            db.hint().map(str::to_owned),
        );
        if status == 401 {
            answer.headers.push((
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            ));
        }
        answer
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// PostgREST v12's `mapSQLtoHTTP`.
pub(crate) fn status_for_sqlstate(code: &str, message: &str, authenticated: bool) -> u16 {
    let class = code.get(..2).unwrap_or(code);
    match code {
        "23503" | "23505" => return 409,
        "25006" => return 405,
        // pg-safeupdate (on Supabase) raises 21000 for DELETE/UPDATE without WHERE: a client error.
        "21000" if message.ends_with("requires a WHERE clause") => return 400,
        "21000" => return 500,
        "22023" if message.starts_with("role") && message.ends_with("does not exist") => {
            return 401
        }
        "53400" => return 500,
        "57P01" => return 503,
        "P0001" => return 400,
        "42883" => return 404,
        "42P01" => return 404,
        "42P17" => return 500,
        "42501" => return if authenticated { 403 } else { 401 },
        _ => {}
    }
    match class {
        "08" => 503,
        "09" => 500,
        "0L" | "0P" | "28" => 403,
        "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0" | "HV"
        | "P0" | "XX" => 500,
        "53" => 503,
        "PT" => code.get(2..).and_then(|n| n.parse().ok()).unwrap_or(500),
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::status_for_sqlstate as status;

    #[test]
    fn maps_like_postgrest_v12() {
        assert_eq!(status("23503", "", true), 409);
        assert_eq!(status("23505", "", true), 409);
        for code in [
            "23502", "23514", "22P02", "22001", "22003", "42703", "42P10",
        ] {
            assert_eq!(status(code, "", true), 400, "{code}");
        }
        assert_eq!(status("42P01", "", true), 404);
        assert_eq!(status("42501", "", false), 401);
        assert_eq!(status("42501", "", true), 403);
        assert_eq!(status("40001", "", true), 500);
        assert_eq!(status("40P01", "", true), 500);
        assert_eq!(status("57014", "", true), 500);
        assert_eq!(status("57P01", "", true), 503);
        assert_eq!(status("08006", "", true), 503);
        assert_eq!(status("53300", "", true), 503);
        assert_eq!(status("21000", "DELETE requires a WHERE clause", true), 400);
        assert_eq!(status("21000", "more than one row returned", true), 500);
        assert_eq!(status("PT402", "", true), 402);
        assert_eq!(status("P0001", "", true), 400);
    }
}
