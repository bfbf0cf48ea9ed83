//! Error answers in PostgREST's shape `{"code","details","hint","message"}`, the SQLSTATE to HTTP
//! status mapping of PostgREST v12 (docs "Errors", `mapSQLtoHTTP` in Error.hs), and the gateway's
//! own `{"message","hint"}` answers for API-key problems.

use serde_json::{json, Value};

/// An answer other than success, ready to send.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    /// A PostgREST-generated (or PostgreSQL-forwarded) error without details or hint.
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
        let body = json!({"code": code, "details": details, "hint": hint, "message": message});
        ApiError { status, body }
    }

    /// The API gateway's answer, which has no PostgREST code.
    pub fn gateway(status: u16, message: &str, hint: &str) -> ApiError {
        let body = json!({"message": message, "hint": hint});
        ApiError { status, body }
    }

    /// PGRST301: the Authorization header does not hold a valid JWT for this project.
    pub fn bad_jwt(message: String) -> ApiError {
        Self::pgrst(401, "PGRST301", message)
    }

    /// PGRST100: a query parameter does not parse.
    pub fn parse(what: &str, input: &str, position: usize, details: &str) -> ApiError {
        let message = format!(
            "\"failed to parse {what} ({input})\" (line 1, column {})",
            position + 1
        );
        Self::full(400, "PGRST100", message, Some(details.to_owned()), None)
    }

    /// PGRST102: the body is not JSON PostgREST can use.
    pub fn invalid_body(message: &str) -> ApiError {
        Self::pgrst(400, "PGRST102", message)
    }

    /// Something real PostgREST supports but this test server does not: refused loudly, so a
    /// test never passes because a request was half understood.
    pub fn not_implemented(feature: &str) -> ApiError {
        let details = format!("syncbridge-testkit's PostgREST stand-in does not support {feature}");
        Self::full(
            400,
            "PGRST127",
            "Feature not implemented".to_owned(),
            Some(details),
            None,
        )
    }

    /// PGRST204: a payload or `columns` name that is not a column.
    pub fn column_not_found(table: &str, column: &str) -> ApiError {
        let message =
            format!("Could not find the '{column}' column of '{table}' in the schema cache");
        Self::pgrst(400, "PGRST204", message)
    }

    /// PGRST205: no such table in the exposed schema.
    pub fn table_not_found(table: &str) -> ApiError {
        let message = format!("Could not find the table 'public.{table}' in the schema cache");
        Self::pgrst(404, "PGRST205", message)
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
            // Lost or broken connection: PostgREST's client error.
            let message = "Database client error. Retrying the connection.".to_owned();
            return Self::full(503, "PGRST001", message, Some(err.to_string()), None);
        };
        let code = db.code().code();
        Self::full(
            status_for_sqlstate(code, db.message(), authenticated),
            code,
            db.message().to_owned(),
            db.detail().map(str::to_owned),
            db.hint().map(str::to_owned),
        )
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
        "42883" | "42P01" => return 404,
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
        // RAISE ... USING ERRCODE = 'PT409' picks the status itself.
        "PT" => code.get(2..).and_then(|n| n.parse().ok()).unwrap_or(500),
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::status_for_sqlstate as status;

    #[test]
    fn maps_like_postgrest_v12() {
        for (code, expected) in [
            ("23503", 409),
            ("23505", 409),
            ("23502", 400),
            ("23514", 400),
            ("22P02", 400),
            ("42703", 400),
            ("42P01", 404),
            ("42883", 404),
            ("40001", 500),
            ("57014", 500),
            ("57P01", 503),
            ("08006", 503),
            ("53300", 503),
            ("25006", 405),
            ("P0001", 400),
            ("P0002", 500),
            ("PT402", 402),
            ("XX000", 500),
        ] {
            assert_eq!(status(code, "", true), expected, "{code}");
        }
        assert_eq!(status("42501", "", false), 401);
        assert_eq!(status("42501", "", true), 403);
        assert_eq!(status("21000", "DELETE requires a WHERE clause", true), 400);
        assert_eq!(status("21000", "more than one row returned", true), 500);
    }
}
