//! Standard Webhooks HMAC signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`),
//! verified over the raw body before any parsing. Bearer tokens are [`super::auth`]'s.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Signatures older or newer than this are replays or clock trouble.
pub(crate) const TOLERANCE_SECS: i64 = 5 * 60;

/// The Standard Webhooks headers of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedHeaders<'a> {
    pub(crate) id: &'a str,
    pub(crate) timestamp: &'a str,
    pub(crate) signature: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("webhook-timestamp is not a number")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 5 minutes from now")]
    Expired,
    #[error("no valid v1 signature")]
    Mismatch,
}

/// Verifies a Standard Webhooks signature over `body` at time `now` (seconds since the epoch).
pub(crate) fn verify_signature(
    key: &[u8],
    headers: SignedHeaders<'_>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    // Saturating: a hostile timestamp near i64::MIN must not overflow.
    if now.saturating_sub(ts).saturating_abs() > TOLERANCE_SECS {
        return Err(SignatureError::Expired);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| SignatureError::Mismatch)?;
    mac.update(headers.id.as_bytes());
    mac.update(b".");
    mac.update(headers.timestamp.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = headers
        .signature
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|sig| bool::from(sig.as_slice().ct_eq(expected.as_slice())));
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs like a Standard Webhooks sender; for tests.
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode_signing_secret;

    #[test]
    fn standard_webhooks_roundtrip_and_tolerance() {
        // The example secret from the Standard Webhooks specification.
        let key =
            decode_signing_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
        let body = br#"{"type":"INSERT"}"#;
        let sig = sign(&key, "msg_1", 1_700_000_000, body);
        let headers = SignedHeaders {
            id: "msg_1",
            timestamp: "1700000000",
            signature: &sig,
        };
        assert_eq!(verify_signature(&key, headers, body, 1_700_000_100), Ok(()));
        assert_eq!(
            verify_signature(&key, headers, b"{}", 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&key, headers, body, 1_700_000_301),
            Err(SignatureError::Expired)
        );
        let multi = format!("v1,AAAA {sig}");
        let headers = SignedHeaders {
            signature: &multi,
            ..headers
        };
        assert_eq!(verify_signature(&key, headers, body, 1_700_000_000), Ok(()));
        assert!(decode_signing_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
    }

    #[test]
    fn matches_the_specification_example() {
        // From the Standard Webhooks spec: id msg_p5jXN8AQM9LWM0D4loKWxJek, ts 1614265330.
        let key =
            decode_signing_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
        let body = br#"{"test": 2432232314}"#;
        let headers = SignedHeaders {
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: "1614265330",
            signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        };
        assert_eq!(verify_signature(&key, headers, body, 1_614_265_330), Ok(()));
    }
}
