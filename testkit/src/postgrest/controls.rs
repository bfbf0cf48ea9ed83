//! Test controls of the PostgREST stand-in: the faults injected into HTTP answers, the added
//! latency, and the log of the requests it answered. Shared between the `FakePostgrest` handle
//! and the server. Faults below HTTP (unreachable, reset connections) are carried out by
//! `server`; this module only decides which request gets which.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

/// One `/rest/v1` request as the stand-in answered it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// Full path, e.g. `/rest/v1/aligner_notes`.
    pub path: String,
    /// Raw query string, still percent-encoded.
    pub query: String,
    /// The `Prefer` header(s), joined with `, `.
    pub prefer: Option<String>,
    /// The status answered; 0 when the connection was reset instead ([`ResetPoint`]).
    pub status: u16,
    /// Objects in the JSON body: an array's length, 1 for an object, 0 without a body.
    pub body_rows: usize,
    /// The JSON body, when there was one and it parsed.
    pub body: Option<Value>,
}

/// What the log keeps of a request: its body as it came, parsed only when a test reads the
/// log ([`Controls::requests`]). Parsing and holding every body as JSON as it was answered
/// cost the server a second parse of each request (PostgREST keeps no such log), a share of
/// the benchmark's CPU on both sides of its comparisons.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub prefer: Option<String>,
    pub status: u16,
    pub body: Bytes,
}

impl Logged {
    fn read(&self) -> LoggedRequest {
        let body: Option<Value> = serde_json::from_slice(&self.body).ok();
        let body_rows = match &body {
            Some(Value::Array(items)) => items.len(),
            Some(Value::Object(_)) => 1,
            _ => 0,
        };
        LoggedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            prefer: self.prefer.clone(),
            status: self.status,
            body_rows,
            body,
        }
    }
}

impl LoggedRequest {
    /// The table or `rpc/<function>` the request addressed (the path after `/rest/v1/`).
    pub fn table(&self) -> &str {
        self.path
            .trim_start_matches("/rest/v1")
            .trim_start_matches('/')
    }

    /// A decoded query parameter, e.g. `on_conflict`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// When [`FakePostgrest::reset_next`](crate::FakePostgrest::reset_next) resets the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPoint {
    /// Before the request reaches the database: nothing happened.
    BeforeHandling,
    /// After the request was carried out and committed: the answer is lost, the write is not.
    AfterHandling,
}

/// What one request gets instead of (or before) normal processing.
#[derive(Debug, PartialEq)]
pub(crate) enum Fault {
    /// `set_down(true)`: 503 from the "gateway", nothing reaches the database.
    Down,
    /// `fail_next` / `fail_every`: this status and body, nothing reaches the database.
    Answer { status: u16, body: Value },
    /// `reset_next`: the connection is reset at this point.
    Reset(ResetPoint),
    /// `delay_next`: wait, then process normally.
    Delay(Duration),
}

/// `fail_every`: every `n`-th request counted since it was set.
struct Every {
    n: usize,
    seen: usize,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct State {
    down: bool,
    fail: Option<(usize, (u16, Value))>,
    every: Option<Every>,
    reset: Option<(usize, ResetPoint)>,
    delay: Option<(usize, Duration)>,
    retry_after: Option<u32>,
    latency: Duration,
    log: Vec<Logged>,
    /// Requests received so far, answered or not (the log has only the answered ones).
    arrived: usize,
}

pub(crate) struct Controls {
    state: Mutex<State>,
    logged: watch::Sender<usize>,
}

/// Takes one use of a countdown slot, clearing it when the last one is used.
fn take<T: Clone>(slot: &mut Option<(usize, T)>) -> Option<T> {
    let (remaining, value) = slot.take()?;
    if remaining > 1 {
        *slot = Some((remaining - 1, value.clone()));
    }
    Some(value)
}

impl Controls {
    pub fn new() -> Controls {
        Controls {
            state: Mutex::new(State::default()),
            logged: watch::Sender::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides the fault for one incoming request, consuming one use of it. Precedence: down,
    /// `fail_next`, `fail_every` (which counts only requests that got this far), `reset_next`,
    /// `delay_next`.
    pub fn take_fault(&self) -> Option<Fault> {
        let mut state = self.state();
        if state.down {
            return Some(Fault::Down);
        }
        if let Some((status, body)) = take(&mut state.fail) {
            return Some(Fault::Answer { status, body });
        }
        if let Some(every) = state.every.as_mut() {
            every.seen += 1;
            if every.seen % every.n == 0 {
                let (status, body) = (every.status, every.body.clone());
                return Some(Fault::Answer { status, body });
            }
        }
        if let Some(point) = take(&mut state.reset) {
            return Some(Fault::Reset(point));
        }
        take(&mut state.delay).map(Fault::Delay)
    }

    pub fn fail_next(&self, n: usize, status: u16, body: Value) {
        self.state().fail = (n > 0).then_some((n, (status, body)));
    }

    pub fn fail_every(&self, n: usize, status: u16, body: Value) {
        self.state().every = (n > 0).then_some(Every {
            n,
            seen: 0,
            status,
            body,
        });
    }

    pub fn reset_next(&self, n: usize, point: ResetPoint) {
        self.state().reset = (n > 0).then_some((n, point));
    }

    pub fn delay_next(&self, n: usize, delay: Duration) {
        self.state().delay = (n > 0).then_some((n, delay));
    }

    pub fn set_retry_after(&self, seconds: Option<u32>) {
        self.state().retry_after = seconds;
    }

    pub fn retry_after(&self) -> Option<u32> {
        self.state().retry_after
    }

    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    pub fn latency(&self) -> Duration {
        self.state().latency
    }

    /// Every fault and the latency off; the request log stays.
    pub fn clear_faults(&self) {
        let mut state = self.state();
        let log = std::mem::take(&mut state.log);
        let arrived = state.arrived;
        *state = State {
            log,
            arrived,
            ..State::default()
        };
    }

    /// Counts a request received, before its latency or fault.
    pub fn arrive(&self) {
        self.state().arrived += 1;
    }

    pub fn arrived(&self) -> usize {
        self.state().arrived
    }

    pub(crate) fn record(&self, request: Logged) {
        let mut state = self.state();
        state.log.push(request);
        let count = state.log.len();
        drop(state);
        self.logged.send_replace(count);
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        // Copied out (the bodies are shared, not copied) and parsed after the lock is let go:
        // the server takes it for every request it answers.
        let log = self.state().log.clone();
        log.iter().map(Logged::read).collect()
    }

    pub fn clear_requests(&self) {
        self.state().log.clear();
        self.logged.send_replace(0);
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.logged.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16) -> Option<Fault> {
        Some(Fault::Answer {
            status,
            body: json!({}),
        })
    }

    #[test]
    fn faults_are_consumed_in_order_of_precedence() {
        let controls = Controls::new();
        controls.fail_next(2, 503, json!({}));
        controls.reset_next(1, ResetPoint::AfterHandling);
        controls.delay_next(1, Duration::from_millis(5));
        assert_eq!(controls.take_fault(), answer(503));
        assert_eq!(controls.take_fault(), answer(503));
        assert_eq!(
            controls.take_fault(),
            Some(Fault::Reset(ResetPoint::AfterHandling))
        );
        assert_eq!(
            controls.take_fault(),
            Some(Fault::Delay(Duration::from_millis(5)))
        );
        assert_eq!(controls.take_fault(), None);
    }

    #[test]
    fn every_other_request_fails_until_cleared() {
        let controls = Controls::new();
        controls.fail_every(2, 500, json!({}));
        let seen: Vec<bool> = (0..6).map(|_| controls.take_fault().is_some()).collect();
        assert_eq!(seen, [false, true, false, true, false, true]);
        controls.set_latency(Duration::from_millis(50));
        controls.set_down(true);
        controls.clear_faults();
        assert_eq!(controls.take_fault(), None);
        assert_eq!(controls.take_fault(), None);
        assert_eq!(controls.latency(), Duration::ZERO);
    }

    #[test]
    fn down_wins_and_consumes_nothing() {
        let controls = Controls::new();
        controls.fail_next(1, 500, json!({}));
        controls.set_down(true);
        assert_eq!(controls.take_fault(), Some(Fault::Down));
        controls.set_down(false);
        assert_eq!(controls.take_fault(), answer(500));
    }
}
