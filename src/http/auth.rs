//! Bearer tokens and shared secrets: reading `Authorization: Bearer <token>` and comparing a
//! presented token with a configured secret in constant time. HMAC signatures are
//! [`super::signature`]'s.

use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Constant-time equality of a presented token and the configured secret. Both are hashed first
/// so that neither the comparison's time nor an early length check reveals anything.
pub fn token_matches(presented: &str, secret: &SecretString) -> bool {
    use sha2::Digest;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.expose_secret().as_bytes());
    a.ct_eq(&b).into()
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_token() {
        let secret = SecretString::from("s3cret-value-of-some-length");
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
        assert!(token_matches("s3cret-value-of-some-length", &secret));
        assert!(!token_matches("s3cret-value-of-some-lengtH", &secret));
        assert!(!token_matches("", &secret));
    }
}
