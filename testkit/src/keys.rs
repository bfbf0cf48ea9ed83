//! The API keys of a fake Supabase project: legacy HS256 JWTs (anon, service_role) signed with
//! the project's JWT secret, and the new-style `sb_secret_...` key.
//! Signing and checking live here; what the gateway does with a key lives in `postgrest::auth`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Legacy keys expire in 2099, like the ten-year keys Supabase hands out: far enough for tests.
const FAR_FUTURE_EXP: i64 = 4_070_908_800;

/// The keys of one fake project.
#[derive(Clone)]
pub struct ApiKeys {
    jwt_secret: String,
    anon_jwt: String,
    service_role_jwt: String,
    secret_key: String,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").finish_non_exhaustive()
    }
}

impl Default for ApiKeys {
    fn default() -> Self {
        Self::generate()
    }
}

impl ApiKeys {
    /// Keys for a project with a random JWT secret.
    pub fn generate() -> ApiKeys {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self::from_jwt_secret(&secret)
    }

    /// Keys derived from `jwt_secret` alone, so a fixed secret always yields the same keys
    /// (handy for the `fake-supabase` binary and `.env` files).
    pub fn from_jwt_secret(jwt_secret: &str) -> ApiKeys {
        let anon_jwt = sign_hs256(
            jwt_secret,
            &json!({"iss": "supabase", "ref": "syncbridge-test", "role": "anon", "iat": 1_700_000_000, "exp": FAR_FUTURE_EXP}),
        );
        let service_role_jwt = sign_hs256(
            jwt_secret,
            &json!({"iss": "supabase", "ref": "syncbridge-test", "role": "service_role", "iat": 1_700_000_000, "exp": FAR_FUTURE_EXP}),
        );
        ApiKeys {
            jwt_secret: jwt_secret.to_owned(),
            anon_jwt,
            service_role_jwt,
            secret_key: format!("sb_secret_{}", derive(jwt_secret, "secret")),
        }
    }

    /// The project's JWT secret (HS256).
    pub fn jwt_secret(&self) -> &str {
        &self.jwt_secret
    }

    /// Legacy `anon` key, a JWT.
    pub fn anon_jwt(&self) -> &str {
        &self.anon_jwt
    }

    /// Legacy `service_role` key, a JWT; clients send it as `apikey` and as `Authorization: Bearer`.
    pub fn service_role_jwt(&self) -> &str {
        &self.service_role_jwt
    }

    /// New-style secret key (`sb_secret_...`), sent as `apikey` only; acts as `service_role`.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Signs arbitrary claims with the project secret, e.g. an expired token for a test.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        sign_hs256(&self.jwt_secret, claims)
    }

    /// Checks an HS256 JWT's signature and `exp`, returning its claims. The error is the message
    /// PostgREST answers with.
    pub(crate) fn verify_jwt(&self, token: &str, now_unix: i64) -> Result<Value, String> {
        let parts: Vec<&str> = token.split('.').collect();
        let [encoded_header, encoded_claims, signature] = parts.as_slice() else {
            return Err(format!("Expected 3 parts in JWT; got {}", parts.len()));
        };
        let header: Value = decode_part(encoded_header)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err("Wrong or unsupported encoding algorithm".to_owned());
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "JWT cryptographic operation failed".to_owned())?;
        let mut mac = new_mac(&self.jwt_secret);
        mac.update(format!("{encoded_header}.{encoded_claims}").as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| "JWT cryptographic operation failed".to_owned())?;
        let claims: Value = decode_part(encoded_claims)?;
        if !claims.is_object() {
            return Err("Parsing claims failed".to_owned());
        }
        match claims.get("exp") {
            None => {}
            Some(exp) => match exp.as_i64() {
                Some(exp) if exp <= now_unix => return Err("JWT expired".to_owned()),
                Some(_) => {}
                None => return Err("The JWT 'exp' claim must be a number".to_owned()),
            },
        }
        Ok(claims)
    }

    /// Whether `key` is one this project accepts as `apikey`.
    pub(crate) fn is_known_apikey(&self, key: &str) -> bool {
        [&self.anon_jwt, &self.service_role_jwt, &self.secret_key]
            .iter()
            .any(|known| subtle::ConstantTimeEq::ct_eq(known.as_bytes(), key.as_bytes()).into())
    }
}

fn sign_hs256(secret: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = new_mac(secret);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn new_mac(secret: &str) -> HmacSha256 {
    // HMAC pads or hashes keys of any length, so new_from_slice has no failing input.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length")
}

fn derive(secret: &str, purpose: &str) -> String {
    let mut mac = new_mac(secret);
    mac.update(purpose.as_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..24])
}

fn decode_part(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "JWT couldn't be decoded".to_owned())?;
    serde_json::from_slice(&bytes).map_err(|_| "JWT couldn't be decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_verify_and_carry_their_role() {
        let keys = ApiKeys::from_jwt_secret("super-secret-jwt-token-with-at-least-32-characters");
        let claims = keys.verify_jwt(keys.service_role_jwt(), 0);
        assert_eq!(
            claims
                .ok()
                .and_then(|c| c["role"].as_str().map(str::to_owned)),
            Some("service_role".to_owned())
        );
        let claims = keys.verify_jwt(keys.anon_jwt(), 0);
        assert_eq!(
            claims
                .ok()
                .and_then(|c| c["role"].as_str().map(str::to_owned)),
            Some("anon".to_owned())
        );
    }

    #[test]
    fn same_secret_same_keys() {
        let a = ApiKeys::from_jwt_secret("s");
        let b = ApiKeys::from_jwt_secret("s");
        assert_eq!(a.secret_key(), b.secret_key());
        assert!(a.secret_key().starts_with("sb_secret_"));
        assert_ne!(a.secret_key(), ApiKeys::from_jwt_secret("t").secret_key());
    }

    #[test]
    fn rejects_foreign_expired_and_malformed_tokens() {
        let keys = ApiKeys::generate();
        let other = ApiKeys::generate();
        assert_eq!(
            keys.verify_jwt(other.service_role_jwt(), 0)
                .err()
                .as_deref(),
            Some("JWT cryptographic operation failed")
        );
        let expired = keys.sign_jwt(&json!({"role": "service_role", "exp": 10}));
        assert_eq!(
            keys.verify_jwt(&expired, 11).err().as_deref(),
            Some("JWT expired")
        );
        assert_eq!(
            keys.verify_jwt(keys.secret_key(), 0).err().as_deref(),
            Some("Expected 3 parts in JWT; got 1")
        );
    }

    #[test]
    fn knows_its_own_keys_only() {
        let keys = ApiKeys::generate();
        assert!(keys.is_known_apikey(keys.secret_key()));
        assert!(keys.is_known_apikey(keys.anon_jwt()));
        assert!(!keys.is_known_apikey("sb_secret_nope"));
    }
}
