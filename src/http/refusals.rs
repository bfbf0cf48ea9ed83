//! Log lines for refusals a stranger can trigger (a wrong secret, a slow client, a full
//! connection table), rate-limited per reason: the first refusal of a kind is logged at once,
//! the rest within [`WINDOW`] only counted, and the count reported on the next line of that kind.
//! A loop of bad requests thus writes one line per reason per window, not one per request, and
//! cannot fill the clinic's disk.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per reason per window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// Why a request or connection was refused; each has its own rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    WebhookUnauthenticated,
    AdminUnauthenticated,
    BodyTooLarge,
    LengthRequired,
    BadRequest,
    NoSuchEndpoint,
    MethodNotAllowed,
    HeadersTooSlow,
    BodyTooSlow,
    IdleClosed,
    ConnectionShed,
    ConnectionRefused,
    AcceptFailed,
    SignatureBusy,
}

impl Refusal {
    /// The log line's words. Webhook refusals keep "webhook refused" so an operator can grep
    /// for them.
    fn describe(self) -> &'static str {
        match self {
            Self::WebhookUnauthenticated => "webhook refused: not authenticated",
            Self::AdminUnauthenticated => "admin request refused: not authenticated",
            Self::BodyTooLarge => "request refused: body over SYNC_MAX_BODY_BYTES",
            Self::LengthRequired => "request refused: no Content-Length",
            Self::BadRequest => "request refused: bad request",
            Self::NoSuchEndpoint => "request refused: no such endpoint",
            Self::MethodNotAllowed => "request refused: method not allowed",
            Self::HeadersTooSlow => {
                "connection closed: headers not finished within SYNC_HTTP_HEADER_TIMEOUT"
            }
            Self::BodyTooSlow => {
                "request refused: body not finished within SYNC_HTTP_REQUEST_TIMEOUT"
            }
            Self::IdleClosed => "connection closed: idle for SYNC_HTTP_IDLE_TIMEOUT",
            Self::ConnectionShed => {
                "connection closed: SYNC_HTTP_MAX_CONNECTIONS reached, oldest idle one shed"
            }
            Self::ConnectionRefused => {
                "connection refused: SYNC_HTTP_MAX_CONNECTIONS reached, none idle"
            }
            Self::AcceptFailed => "accepting a connection failed (file descriptors exhausted?)",
            Self::SignatureBusy => "webhook refused: too many signed bodies being read at once",
        }
    }

    /// Idle closes are normal; everything else is worth a warning.
    fn is_normal(self) -> bool {
        matches!(self, Self::IdleClosed)
    }
}

#[derive(Default)]
struct Slot {
    logged_at: Option<Instant>,
    unlogged: u64,
}

/// The per-reason counts since each reason's last line.
#[derive(Default)]
pub(crate) struct RefusalLog {
    slots: Mutex<HashMap<Refusal, Slot>>,
}

impl RefusalLog {
    /// Counts one refusal and logs it unless a line of that kind was written within [`WINDOW`].
    pub(crate) fn record(&self, refusal: Refusal) {
        if let Some(earlier) = self.due(refusal, Instant::now()) {
            let what = refusal.describe();
            if refusal.is_normal() {
                tracing::debug!(more_since_last_line = earlier, "{what}");
            } else {
                tracing::warn!(more_since_last_line = earlier, "{what}");
            }
        }
    }

    /// `Some(refusals counted but not logged since the last line)` when a line is due at `now`.
    fn due(&self, refusal: Refusal, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(refusal).or_default();
        match slot.logged_at {
            Some(at) if now.saturating_duration_since(at) < WINDOW => {
                slot.unlogged += 1;
                None
            }
            _ => {
                slot.logged_at = Some(now);
                Some(std::mem::take(&mut slot.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_window_with_the_count_of_the_rest() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // 1,000 refusals of one kind over 25 s, 10 of another kind mixed in.
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i * 25);
            if let Some(n) = log.due(Refusal::WebhookUnauthenticated, now) {
                lines.push(("webhook", n));
            }
            if i % 100 == 0 {
                if let Some(n) = log.due(Refusal::HeadersTooSlow, now) {
                    lines.push(("headers", n));
                }
            }
        }
        let webhook: Vec<u64> = lines
            .iter()
            .filter(|(k, _)| *k == "webhook")
            .map(|(_, n)| *n)
            .collect();
        // Lines at 0 s, 10 s and 20 s; each reports the refusals it did not log.
        assert_eq!(webhook, vec![0, 399, 399]);
        let headers = lines.iter().filter(|(k, _)| *k == "headers").count();
        assert_eq!(headers, 3, "{lines:?}");
    }
}
