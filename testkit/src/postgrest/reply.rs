//! Building answers: status, headers (`Content-Range`, `Preference-Applied`, ...) and body, and
//! reading the `Prefer` header the way PostgREST does (first occurrence of each preference wins,
//! unknown preferences are ignored, as under `handling=lenient`).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use super::error::ApiError;
use super::sql::Resolution;

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A finished answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<String>,
}

impl Reply {
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn json(status: u16, body: String) -> Reply {
        Reply::empty(status)
            .header(header::CONTENT_TYPE, JSON_UTF8)
            .with_body(body)
    }

    pub fn with_body(mut self, body: String) -> Reply {
        self.body = Some(body);
        self
    }

    /// Adds a header; values that are not valid header text are skipped (they come from the
    /// fake's own formatting, never from the client).
    pub fn header(mut self, name: HeaderName, value: &str) -> Reply {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    pub fn maybe_header(self, name: HeaderName, value: Option<String>) -> Reply {
        match value {
            Some(value) => self.header(name, &value),
            None => self,
        }
    }

    pub fn into_response(self) -> Response {
        let mut response = Response::new(self.body.map(Body::from).unwrap_or_else(Body::empty));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Reply {
        let mut reply = Reply::json(err.status_code().as_u16(), err.body.to_string());
        reply.headers.extend(err.headers);
        reply
    }
}

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Representation {
    Full,
    Minimal,
    HeadersOnly,
}

/// The preferences the fake acts on.
#[derive(Debug, Default)]
pub(crate) struct Prefer {
    pub resolution: Option<Resolution>,
    pub representation: Option<Representation>,
    pub count_exact: bool,
}

impl Prefer {
    pub fn parse(headers: &HeaderMap) -> Prefer {
        let values: Vec<&str> = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let mut prefer = Prefer::default();
        let mut counted = false;
        for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            match item {
                "resolution=merge-duplicates" if prefer.resolution.is_none() => {
                    prefer.resolution = Some(Resolution::Merge)
                }
                "resolution=ignore-duplicates" if prefer.resolution.is_none() => {
                    prefer.resolution = Some(Resolution::Ignore)
                }
                "return=representation" if prefer.representation.is_none() => {
                    prefer.representation = Some(Representation::Full)
                }
                "return=minimal" if prefer.representation.is_none() => {
                    prefer.representation = Some(Representation::Minimal)
                }
                "return=headers-only" if prefer.representation.is_none() => {
                    prefer.representation = Some(Representation::HeadersOnly)
                }
                "count=exact" | "count=planned" | "count=estimated" if !counted => {
                    counted = true;
                    prefer.count_exact = item == "count=exact";
                }
                _ => {}
            }
        }
        prefer
    }

    /// `Preference-Applied`, listing what was honoured in PostgREST's order.
    pub fn applied(&self, resolution: bool, representation: bool, count: bool) -> Option<String> {
        let mut applied = Vec::new();
        if resolution {
            match self.resolution {
                Some(Resolution::Merge) => applied.push("resolution=merge-duplicates"),
                Some(Resolution::Ignore) => applied.push("resolution=ignore-duplicates"),
                None => {}
            }
        }
        if representation {
            match self.representation {
                Some(Representation::Full) => applied.push("return=representation"),
                Some(Representation::Minimal) => applied.push("return=minimal"),
                Some(Representation::HeadersOnly) => applied.push("return=headers-only"),
                None => {}
            }
        }
        if count && self.count_exact {
            applied.push("count=exact");
        }
        (!applied.is_empty()).then(|| applied.join(", "))
    }
}

/// PostgREST's `Content-Range`: `first-last/total`, or `*/total` for an empty range; total is
/// `*` unless counted.
pub(crate) fn content_range(first: i64, rows: i64, total: Option<i64>) -> String {
    let total = total.map_or("*".to_owned(), |t| t.to_string());
    if rows > 0 {
        format!("{first}-{}/{total}", first + rows - 1)
    } else {
        format!("*/{total}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_preference_of_each_kind_wins() {
        let mut headers = HeaderMap::new();
        headers.append(
            "prefer",
            HeaderValue::from_static("return=minimal, resolution=ignore-duplicates"),
        );
        headers.append(
            "prefer",
            HeaderValue::from_static("resolution=merge-duplicates,return=representation,bogus"),
        );
        let prefer = Prefer::parse(&headers);
        assert_eq!(prefer.resolution, Some(Resolution::Ignore));
        assert_eq!(prefer.representation, Some(Representation::Minimal));
        assert_eq!(
            prefer.applied(true, true, false).as_deref(),
            Some("resolution=ignore-duplicates, return=minimal")
        );
        assert_eq!(prefer.applied(false, false, false), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(0, 3, None), "0-2/*");
        assert_eq!(content_range(10, 2, Some(40)), "10-11/40");
        assert_eq!(content_range(0, 0, None), "*/*");
    }
}
