//! Backoff arithmetic for the durable retry schedule (queue rows, inbox events).
//! Pure functions: the callers own the clocks and the randomness source.

use std::time::Duration;

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
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let full = self.base.saturating_mul(1u32 << exp.min(31)).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Like [`Backoff::delay`], but never sooner than the server asked (`Retry-After`), and never
    /// later than the cap, so a hostile or buggy `Retry-After: 999999` cannot park the queue.
    pub fn delay_after(
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
    pub fn next(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_after(attempt, fastrand::f64(), retry_after)
    }
}

/// Sleeps until `deadline`, or forever when there is none: a worker with nothing scheduled
/// waits only on its notifications (idle means asleep, not a periodic tick).
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
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
    fn retry_after_is_honoured_but_clamped_to_the_cap() {
        let asked = Some(Duration::from_secs(30));
        assert_eq!(B.delay_after(1, 1.0, asked), Duration::from_secs(30));
        assert_eq!(B.delay_after(6, 1.0, asked), Duration::from_secs(64));
        let hostile = Some(Duration::from_secs(1_000_000));
        assert_eq!(B.delay_after(1, 0.0, hostile), Duration::from_secs(600));
    }
}
