//! The forward path's one shared backoff while a side is not answering properly (Supabase:
//! connection errors, timeouts, 5xx, 429, 408; SQL Server: unavailable): not the items' fault,
//! so their attempts are left alone and the worker backs off as a whole instead, exponentially
//! by consecutive failures, with jitter, never sooner than a `Retry-After` (clamped to the
//! cap). Logged once when an outage starts, once when it ends, and at most once a minute in
//! between; [`OutageStatus`] is what `GET /api/sync/status` shows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use crate::retry::Backoff;

/// While an outage lasts, its progress is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The side that is not answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Side {
    Supabase,
    SqlServer,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Supabase => "Supabase",
            Self::SqlServer => "SQL Server",
        }
    }
}

/// An outage as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct OutageStatus {
    pub(crate) side: Side,
    pub(crate) since: DateTime<Utc>,
    pub(crate) consecutive_failures: u32,
    pub(crate) last_error: String,
    pub(crate) next_attempt_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Current {
    status: OutageStatus,
    started: Instant,
    next_attempt: Instant,
    last_logged: Instant,
}

/// The outage in progress, if any.
#[derive(Debug, Default)]
pub(crate) struct OutageTracker {
    current: Option<Current>,
}

impl OutageTracker {
    /// An attempt failed because `side` did not answer properly; returns how long the forward
    /// path waits before the next attempt.
    pub(crate) fn failed(
        &mut self,
        backoff: &Backoff,
        side: Side,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Duration {
        if self.current.as_ref().is_some_and(|c| c.status.side != side) {
            self.recovered();
        }
        let now = Instant::now();
        let failures = self
            .current
            .as_ref()
            .map_or(1, |c| c.status.consecutive_failures.saturating_add(1));
        let delay = backoff.next(failures, retry_after);
        let next_attempt_at = Utc::now() + delay;
        match &mut self.current {
            None => {
                tracing::warn!(side = side.name(), error, ?delay, "{} is not answering: forward sync backs off as a whole (items keep their attempts)", side.name());
                self.current = Some(Current {
                    status: OutageStatus {
                        side,
                        since: Utc::now(),
                        consecutive_failures: failures,
                        last_error: error.to_owned(),
                        next_attempt_at,
                    },
                    started: now,
                    next_attempt: now + delay,
                    last_logged: now,
                });
            }
            Some(c) => {
                c.status.consecutive_failures = failures;
                c.status.last_error = error.to_owned();
                c.status.next_attempt_at = next_attempt_at;
                c.next_attempt = now + delay;
                if now.duration_since(c.last_logged) >= LOG_EVERY {
                    c.last_logged = now;
                    tracing::warn!(side = side.name(), error, failures, since = %c.status.since, ?delay, "{} still not answering", side.name());
                } else {
                    tracing::debug!(
                        side = side.name(),
                        error,
                        failures,
                        ?delay,
                        "still not answering"
                    );
                }
            }
        }
        delay
    }

    /// `side` answered properly: the outage on that side, if any, is over.
    pub(crate) fn answered(&mut self, side: Side) {
        if self.current.as_ref().is_some_and(|c| c.status.side == side) {
            self.recovered();
        }
    }

    fn recovered(&mut self) {
        if let Some(c) = self.current.take() {
            let lasted = c.started.elapsed();
            tracing::info!(side = c.status.side.name(), lasted = ?lasted, failed_attempts = c.status.consecutive_failures, "{} is answering again: forward sync resumed", c.status.side.name());
        }
    }

    /// When the shared backoff allows the next attempt, while it does not allow one yet.
    pub(crate) fn waiting_until(&self, now: Instant) -> Option<Instant> {
        self.current
            .as_ref()
            .map(|c| c.next_attempt)
            .filter(|at| *at > now)
    }

    pub(crate) fn status(&self) -> Option<OutageStatus> {
        self.current.as_ref().map(|c| c.status.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(2),
        cap: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn backs_off_by_consecutive_failures_and_ends_when_answered() {
        let mut t = OutageTracker::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            delays.push(t.failed(&B, Side::Supabase, "HTTP 503", None));
        }
        for (i, d) in delays.iter().enumerate() {
            let full = B.delay(i as u32 + 1, 1.0);
            assert!(*d >= full / 2 && *d <= full, "failure {}: {d:?}", i + 1);
        }
        let status = t.status().expect("an outage");
        assert_eq!(
            (status.consecutive_failures, status.side),
            (8, Side::Supabase)
        );
        let now = Instant::now();
        assert!(t.waiting_until(now).is_some());
        tokio::time::advance(B.cap).await;
        assert_eq!(t.waiting_until(Instant::now()), None, "the wait is over");
        t.answered(Side::SqlServer);
        assert!(
            t.status().is_some(),
            "SQL Server answering says nothing of Supabase"
        );
        t.answered(Side::Supabase);
        assert_eq!(t.status(), None);
        let d = t.failed(&B, Side::Supabase, "timeout", None);
        assert!(
            d <= B.base,
            "a new outage starts from the base delay: {d:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_but_clamped_to_the_cap() {
        let mut t = OutageTracker::default();
        let asked = t.failed(&B, Side::Supabase, "429", Some(Duration::from_secs(30)));
        assert_eq!(asked, Duration::from_secs(30));
        let hostile = t.failed(&B, Side::Supabase, "503", Some(Duration::from_secs(86_400)));
        assert_eq!(hostile, B.cap);
    }
}
