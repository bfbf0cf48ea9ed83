//! What Supabase's API gateway and PostgREST decide from the `apikey` and `Authorization`
//! headers: whether the request gets in, and as which database role.
//!
//! - `apikey` (header or query parameter) is required and must be one of the project's keys.
//! - `Authorization: Bearer <jwt>`, when present, must be an HS256 JWT signed with the project
//!   secret; its `role` claim picks the role. New-style `sb_...` keys are not JWTs, so they are
//!   refused there.
//! - Without `Authorization`, a `sb_secret_...` apikey acts as service_role; anything else
//!   (publishable key, legacy JWT alone) is anonymous. Legacy keys have to be sent in both headers.

use axum::http::{header::AUTHORIZATION, HeaderMap};
use serde_json::{json, Value};

use super::error::ApiError;
use crate::keys::ApiKeys;

/// Who the request runs as.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub role: String,
    pub claims: Value,
}

impl Caller {
    /// PostgREST answers permission errors with 401 for the anonymous role, 403 otherwise.
    pub fn authenticated(&self) -> bool {
        self.role != "anon"
    }
}

pub(crate) fn authenticate(
    keys: &ApiKeys,
    headers: &HeaderMap,
    raw_query: &str,
    now_unix: i64,
) -> Result<Caller, ApiError> {
    let from_query = || {
        url::form_urlencoded::parse(raw_query.as_bytes())
            .find(|(name, _)| name == "apikey")
            .map(|(_, value)| value.into_owned())
    };
    let apikey = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(from_query)
        .filter(|key| !key.is_empty());
    let Some(apikey) = apikey else {
        return Err(ApiError::gateway(
            401,
            "No API key found in request",
            "No `apikey` request header or url param was found.",
        ));
    };
    if !keys.is_known_apikey(&apikey) {
        return Err(ApiError::gateway(
            401,
            "Invalid API key",
            "Double check the provided API key",
        ));
    }

    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default().trim();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => value,
        };
        if token.is_empty() {
            return Err(ApiError::bad_jwt(
                "Empty JWT is sent in Authorization header".to_owned(),
            ));
        }
        let claims = keys
            .verify_jwt(token, now_unix)
            .map_err(ApiError::bad_jwt)?;
        let role = claims
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("anon")
            .to_owned();
        return Ok(Caller { role, claims });
    }

    if apikey == keys.secret_key() {
        Ok(Caller {
            role: "service_role".to_owned(),
            claims: json!({"iss": "supabase", "role": "service_role"}),
        })
    } else {
        Ok(Caller {
            role: "anon".to_owned(),
            claims: json!({"role": "anon"}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("valid header"));
        }
        map
    }

    #[test]
    fn roles_from_each_kind_of_key() {
        let keys = ApiKeys::generate();
        let service = authenticate(
            &keys,
            &headers(&[
                ("apikey", keys.service_role_jwt()),
                (
                    "authorization",
                    &format!("Bearer {}", keys.service_role_jwt()),
                ),
            ]),
            "",
            0,
        );
        assert_eq!(
            service.map(|c| c.role).ok().as_deref(),
            Some("service_role")
        );
        let secret = authenticate(&keys, &headers(&[("apikey", keys.secret_key())]), "", 0);
        assert_eq!(secret.map(|c| c.role).ok().as_deref(), Some("service_role"));
        let legacy_alone = authenticate(
            &keys,
            &headers(&[("apikey", keys.service_role_jwt())]),
            "",
            0,
        );
        assert_eq!(legacy_alone.map(|c| c.role).ok().as_deref(), Some("anon"));
        let in_query = authenticate(
            &keys,
            &HeaderMap::new(),
            &format!("apikey={}", keys.publishable_key()),
            0,
        );
        assert_eq!(in_query.map(|c| c.role).ok().as_deref(), Some("anon"));
    }

    #[test]
    fn refusals() {
        let keys = ApiKeys::generate();
        let missing = authenticate(&keys, &HeaderMap::new(), "", 0).expect_err("no key");
        assert_eq!(missing.body["message"], "No API key found in request");
        let unknown = authenticate(&keys, &headers(&[("apikey", "sb_secret_x")]), "", 0)
            .expect_err("unknown");
        assert_eq!(unknown.body["message"], "Invalid API key");
        let sb_bearer = authenticate(
            &keys,
            &headers(&[
                ("apikey", keys.secret_key()),
                ("authorization", &format!("Bearer {}", keys.secret_key())),
            ]),
            "",
            0,
        )
        .expect_err("sb key is not a JWT");
        assert_eq!(
            (sb_bearer.status, sb_bearer.body["code"].as_str()),
            (401, Some("PGRST301"))
        );
    }
}
