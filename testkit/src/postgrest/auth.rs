//! What Supabase's API gateway and PostgREST decide from the `apikey` and `Authorization`
//! headers: whether the request gets in, and as which database role.
//!
//! - `apikey` is required and must be one of the project's keys (else the gateway's 401).
//! - `Authorization: Bearer <jwt>`, when present, must be an HS256 JWT signed with the project
//!   secret; its `role` claim picks the role (PostgREST's PGRST301 otherwise). An `sb_secret_`
//!   key is not a JWT, so it is refused there.
//! - Without `Authorization`, an `sb_secret_` apikey acts as `service_role` (the gateway mints
//!   the token); a legacy JWT apikey alone is anonymous, which is why clients send legacy keys
//!   in both headers.

use hyper::header::{HeaderMap, AUTHORIZATION};
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
    now_unix: i64,
) -> Result<Caller, ApiError> {
    let apikey = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .filter(|key| !key.is_empty());
    let Some(apikey) = apikey else {
        return Err(ApiError::gateway(
            401,
            "No API key found in request",
            "No `apikey` request header or url param was found.",
        ));
    };
    if !keys.is_known_apikey(apikey) {
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
        let claims = json!({"iss": "supabase", "role": "service_role"});
        return Ok(Caller {
            role: "service_role".to_owned(),
            claims,
        });
    }
    Ok(Caller {
        role: "anon".to_owned(),
        claims: json!({"role": "anon"}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn role(keys: &ApiKeys, pairs: &[(&'static str, String)]) -> Result<String, ApiError> {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("valid header"));
        }
        authenticate(keys, &map, 0).map(|caller| caller.role)
    }

    #[test]
    fn each_kind_of_key_runs_as_its_role() {
        let keys = ApiKeys::generate();
        let legacy = keys.service_role_jwt().to_owned();
        let bearer = format!("Bearer {legacy}");
        let both = [("apikey", legacy.clone()), ("authorization", bearer)];
        assert_eq!(role(&keys, &both).ok().as_deref(), Some("service_role"));
        let secret = [("apikey", keys.secret_key().to_owned())];
        assert_eq!(role(&keys, &secret).ok().as_deref(), Some("service_role"));
        let legacy_alone = [("apikey", legacy)];
        assert_eq!(role(&keys, &legacy_alone).ok().as_deref(), Some("anon"));
    }

    #[test]
    fn refusals_name_the_problem() {
        let keys = ApiKeys::generate();
        let missing = role(&keys, &[]).expect_err("no key");
        assert_eq!(missing.body["message"], "No API key found in request");
        let unknown = role(&keys, &[("apikey", "sb_secret_x".to_owned())]).expect_err("unknown");
        assert_eq!(
            (unknown.status, unknown.body["message"].as_str()),
            (401, Some("Invalid API key"))
        );
        let secret = keys.secret_key().to_owned();
        let sb_bearer = [
            ("apikey", secret.clone()),
            ("authorization", format!("Bearer {secret}")),
        ];
        let refused = role(&keys, &sb_bearer).expect_err("an sb_ key is not a JWT");
        assert_eq!(
            (refused.status, refused.body["code"].as_str()),
            (401, Some("PGRST301"))
        );
    }
}
