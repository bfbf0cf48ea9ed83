//! Retrying, decided in one place: what an error means ([`ErrorClass`], which the error types
//! of each side answer through their `class()`), the durable rule shared by the forward queue
//! and the reverse inbox (`RetryPolicy`: retry with backoff, give up after the maximum
//! attempts), and the backoff arithmetic behind it. Pure: the callers own the clocks and the
//! randomness source.

use std::time::Duration;

/// What to do about an error. Only the error types answer it (`PostgrestError::class`,
/// `StoreError::class`); nobody else reads status codes or error numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The other side is not answering properly (connection, DNS or TLS failure, timeout,
    /// 5xx, 429, 408; SQL Server down or deadlocked): not the row's fault. The same request may
    /// succeed later; the caller backs off as a whole and spends no item's attempts.
    Outage,
    /// This row cannot be written yet, but waiting can fix it (its parent row is not in
    /// Supabase yet): isolate it and retry it on its own schedule.
    RowRetryable,
    /// This row's data was refused: isolate it; retrying it burns its attempts.
    Rejected,
    /// The key, the permissions or the schema are wrong: stop work without burning attempts.
    ConfigFault,
}

impl ErrorClass {
    /// Whether the same request may succeed later as it is.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Outage | Self::RowRetryable)
    }

    /// Whether the error is caused by some row of the request rather than by the request as a
    /// whole, so that sending fewer rows can isolate the culprit.
    pub fn is_row_specific(self) -> bool {
        matches!(self, Self::RowRetryable | Self::Rejected)
    }
}

/// The durable retry rule: an item (queue row, inbox event) that failed for its own reasons is
/// retried with backoff until `max_attempts` attempts have been made, then given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
}

/// What [`RetryPolicy`] says about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try again after this delay.
    Retry(Duration),
    /// The attempts are used up.
    GiveUp,
}

impl RetryPolicy {
    /// After the attempt following `attempts_before` earlier ones failed; `retry_after` is what
    /// the server asked for, if anything.
    pub(crate) fn after_failure(
        &self,
        attempts_before: u32,
        retry_after: Option<Duration>,
    ) -> Decision {
        let attempt = attempts_before.saturating_add(1);
        if attempt >= self.max_attempts {
            Decision::GiveUp
        } else {
            Decision::Retry(self.backoff.next(attempt, retry_after))
        }
    }
}

/// Exponential backoff with "equal jitter": attempt n waits between half and all of
/// `base * 2^(n-1)`, capped at `cap`, so retries of many items spread out instead of arriving
/// at PostgREST in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 = the first retry). `jitter` is in `[0, 1]`.
    pub(crate) fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let full = self.base.saturating_mul(1u32 << exp.min(31)).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Like [`Backoff::delay`], but never sooner than the server asked (`Retry-After`), and never
    /// later than the cap, so a hostile or buggy `Retry-After: 999999` cannot park the queue.
    pub(crate) fn delay_after(
        &self,
        attempt: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let own = self.delay(attempt, jitter);
        match retry_after {
            Some(asked) => own.max(asked.min(self.cap)),
            None => own,
        }
    }

    /// A jittered delay using the process' random source.
    pub(crate) fn next(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_after(attempt, fastrand::f64(), retry_after)
    }
}

/// Sleeps until `deadline`, or forever when there is none: a worker with nothing scheduled
/// waits only on its notifications (idle means asleep, not a periodic tick).
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(2),
        cap: Duration::from_secs(600),
    };

    #[test]
    fn doubles_per_attempt_within_jitter_bounds() {
        for attempt in 1..=8 {
            let full = Duration::from_secs(2 * (1 << (attempt - 1)));
            assert_eq!(B.delay(attempt, 1.0), full, "attempt {attempt} upper bound");
            assert_eq!(
                B.delay(attempt, 0.0),
                full / 2,
                "attempt {attempt} lower bound"
            );
        }
    }

    #[test]
    fn is_capped_and_never_overflows() {
        assert_eq!(B.delay(9, 1.0), Duration::from_secs(512));
        assert_eq!(B.delay(10, 1.0), Duration::from_secs(600));
        assert_eq!(B.delay(u32::MAX, 1.0), Duration::from_secs(600));
        assert_eq!(B.delay(u32::MAX, 0.0), Duration::from_secs(300));
    }

    #[test]
    fn jitter_is_clamped() {
        assert_eq!(B.delay(1, 7.0), B.delay(1, 1.0));
        assert_eq!(B.delay(1, -3.0), B.delay(1, 0.0));
    }

    #[test]
    fn the_policy_gives_up_after_the_last_attempt_only() {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff: B,
        };
        assert!(
            matches!(policy.after_failure(0, None), Decision::Retry(d) if d <= Duration::from_secs(2))
        );
        assert!(
            matches!(policy.after_failure(1, None), Decision::Retry(d) if d >= Duration::from_secs(2))
        );
        assert_eq!(policy.after_failure(2, None), Decision::GiveUp);
        assert_eq!(policy.after_failure(u32::MAX, None), Decision::GiveUp);
        let asked = Some(Duration::from_secs(30));
        assert_eq!(
            policy.after_failure(0, asked),
            Decision::Retry(Duration::from_secs(30))
        );
    }

    #[test]
    fn row_specific_classes_are_the_ones_bisection_can_isolate() {
        use ErrorClass::*;
        assert!(RowRetryable.is_retryable() && RowRetryable.is_row_specific());
        assert!(Outage.is_retryable() && !Outage.is_row_specific());
        assert!(!Rejected.is_retryable() && Rejected.is_row_specific());
        assert!(!ConfigFault.is_retryable() && !ConfigFault.is_row_specific());
    }

    #[test]
    fn retry_after_is_honoured_but_clamped_to_the_cap() {
        let asked = Some(Duration::from_secs(30));
        assert_eq!(B.delay_after(1, 1.0, asked), Duration::from_secs(30));
        assert_eq!(B.delay_after(6, 1.0, asked), Duration::from_secs(64));
        let hostile = Some(Duration::from_secs(1_000_000));
        assert_eq!(B.delay_after(1, 0.0, hostile), Duration::from_secs(600));
    }
}
