//! Building answers (status, headers, body) and reading the `Prefer` header the way PostgREST
//! does: the first occurrence of each preference wins and unknown ones are ignored, as under
//! the default `handling=lenient`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::error::ApiError;

pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";

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
        Reply::with_type(status, JSON_UTF8, body)
    }

    pub fn with_type(status: u16, content_type: &'static str, body: String) -> Reply {
        let mut reply = Reply::empty(status);
        reply.body = Some(body);
        reply.header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = self.body.map(Bytes::from).unwrap_or_default();
        let mut response = Response::new(Full::new(body));
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
        Reply::json(err.status, err.body.to_string())
    }
}

/// How `Prefer: resolution=...` resolves a conflict on POST.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolution {
    Merge,
    Ignore,
}

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Representation {
    Minimal,
    /// `representation` or `headers-only`: real PostgREST answers them; this stand-in refuses.
    Other,
}

/// The preferences the stand-in acts on.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Prefer {
    pub resolution: Option<Resolution>,
    pub representation: Option<Representation>,
    /// `params=single-object` (deprecated in v12.2, removed in v13): the whole body is the one
    /// json/jsonb argument of an RPC.
    pub single_object: bool,
}

impl Prefer {
    pub fn parse(headers: &HeaderMap) -> Prefer {
        let values = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let mut prefer = Prefer::default();
        let mut params_seen = false;
        for item in values.flat_map(|v| v.split(',')).map(str::trim) {
            let (resolution, representation) = (prefer.resolution, prefer.representation);
            match item {
                "resolution=merge-duplicates" if resolution.is_none() => {
                    prefer.resolution = Some(Resolution::Merge)
                }
                "resolution=ignore-duplicates" if resolution.is_none() => {
                    prefer.resolution = Some(Resolution::Ignore)
                }
                "return=minimal" if representation.is_none() => {
                    prefer.representation = Some(Representation::Minimal)
                }
                "return=representation" | "return=headers-only" if representation.is_none() => {
                    prefer.representation = Some(Representation::Other)
                }
                _ if item.starts_with("params=") && !params_seen => {
                    params_seen = true;
                    prefer.single_object = item == "params=single-object";
                }
                _ => {}
            }
        }
        prefer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_preference_of_each_kind_wins_and_unknown_ones_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.append(
            "prefer",
            HeaderValue::from_static("return=minimal, resolution=ignore-duplicates, bogus"),
        );
        headers.append(
            "prefer",
            HeaderValue::from_static("resolution=merge-duplicates,return=representation"),
        );
        let prefer = Prefer::parse(&headers);
        assert_eq!(
            prefer,
            Prefer {
                resolution: Some(Resolution::Ignore),
                representation: Some(Representation::Minimal),
                single_object: false,
            }
        );
        headers.insert("prefer", HeaderValue::from_static("params=single-object"));
        assert!(Prefer::parse(&headers).single_object);
    }
}
