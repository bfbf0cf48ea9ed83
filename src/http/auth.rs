//! Who may call what, checked over the raw request before anything is parsed: the admin token
//! (every admin endpoint), the notify token (`queue-notify` only), and the webhook's shared
//! secret (`Authorization: Bearer` or `X-Webhook-Secret`) or, when configured, its Standard
//! Webhooks signature ([`super::signature`]). Comparisons are constant-time.

use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use warp::http::HeaderMap;

use super::signature::{verify_signature, SignedHeaders};
use crate::config::Config;

/// The secrets requests are checked against.
pub(crate) struct Tokens {
    admin: SecretString,
    /// The token stored in SQL Server's `SyncConfig`, which database readers can see, so it
    /// opens `queue-notify` and nothing else.
    notify: Option<SecretString>,
    webhook_secret: SecretString,
    signing_key: Option<SecretSlice<u8>>,
}

impl Tokens {
    pub(crate) fn from_config(config: &Config) -> Self {
        Self {
            admin: config.admin_token.clone(),
            notify: config.notify_token.clone(),
            webhook_secret: config.webhook_secret.clone(),
            signing_key: config.webhook_signing_key(),
        }
    }

    /// `Authorization: Bearer <SYNC_ADMIN_TOKEN>`.
    pub(crate) fn is_admin(&self, authorization: Option<&str>) -> bool {
        bearer(authorization).is_some_and(|t| token_matches(t, &self.admin))
    }

    /// The notify token or the admin token.
    pub(crate) fn may_notify(&self, authorization: Option<&str>) -> bool {
        let notify = bearer(authorization)
            .zip(self.notify.as_ref())
            .is_some_and(|(t, secret)| token_matches(t, secret));
        notify || self.is_admin(authorization)
    }

    /// What the webhook's headers alone say, before any body byte is read: the shared secret
    /// (either header) settles it; signature headers, when a signing secret is configured,
    /// leave it to [`Tokens::verify_signature`] over the body; anything else is refused. The
    /// reason is for the log only: every client gets the same 401.
    pub(crate) fn webhook_headers(&self, headers: &HeaderMap) -> Result<WebhookAuth, &'static str> {
        let presented = bearer(header(headers, "authorization"))
            .or_else(|| header(headers, "x-webhook-secret"));
        if let Some(token) = presented {
            return if token_matches(token, &self.webhook_secret) {
                Ok(WebhookAuth::Secret)
            } else {
                Err("wrong webhook secret")
            };
        }
        let signed = ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .all(|name| header(headers, name).is_some());
        match (&self.signing_key, signed) {
            (Some(_), true) => Ok(WebhookAuth::NeedsSignature),
            (None, true) => Err("signed webhook but no signing secret configured"),
            _ => Err("no webhook secret or signature"),
        }
    }

    /// A valid Standard Webhooks signature over `body` (after [`WebhookAuth::NeedsSignature`]).
    pub(crate) fn verify_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), &'static str> {
        let key = self
            .signing_key
            .as_ref()
            .ok_or("no signing secret configured")?;
        let signed = SignedHeaders {
            id: header(headers, "webhook-id").ok_or("no webhook-id")?,
            timestamp: header(headers, "webhook-timestamp").ok_or("no webhook-timestamp")?,
            signature: header(headers, "webhook-signature").ok_or("no webhook-signature")?,
        };
        let now = chrono::Utc::now().timestamp();
        verify_signature(key.expose_secret(), signed, body, now)
            .map_err(|_| "invalid or expired webhook signature")
    }
}

/// How a webhook's headers authenticate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebhookAuth {
    /// The shared secret: authenticated.
    Secret,
    /// Standard Webhooks headers: authenticated once the signature over the body checks out.
    NeedsSignature,
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Constant-time equality of a presented token and the configured secret. Both are hashed first
/// so that neither the comparison's time nor an early length check reveals anything.
pub(crate) fn token_matches(presented: &str, secret: &SecretString) -> bool {
    use sha2::Digest;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.expose_secret().as_bytes());
    a.ct_eq(&b).into()
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer(header: Option<&str>) -> Option<&str> {
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
