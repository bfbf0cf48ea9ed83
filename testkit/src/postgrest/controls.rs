//! Test controls of the fake server: injected failures and delays, the outage switch, and the log
//! of the requests it answered. Shared between the `FakePostgrest` handle and request handlers.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

/// One `/rest/v1` request as the fake answered it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// Full path, e.g. `/rest/v1/aligner_notes`.
    pub path: String,
    /// Raw query string, still percent-encoded.
    pub query: String,
    /// The `Prefer` header(s), joined with `, `.
    pub prefer: Option<String>,
    pub status: u16,
    /// Objects in the JSON body: an array's length, 1 for an object, 0 without a body.
    pub body_rows: usize,
    /// The JSON body, when there was one and it parsed.
    pub body: Option<Value>,
}

impl LoggedRequest {
    /// The table the request addressed (the path after `/rest/v1/`).
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

/// What the next request gets instead of (or before) normal processing.
#[derive(Debug)]
pub(crate) enum Fault {
    /// `set_down(true)`: 503 from the "gateway", nothing reaches the database.
    Down,
    /// `fail_next`: this status and body, nothing reaches the database.
    Answer { status: u16, body: Value },
    /// `delay_next`: wait, then process normally.
    Delay(Duration),
}

#[derive(Default)]
struct State {
    fail: Option<(usize, u16, Value)>,
    delay: Option<(usize, Duration)>,
    retry_after: Option<u32>,
    down: bool,
    log: Vec<LoggedRequest>,
}

pub(crate) struct Controls {
    state: Mutex<State>,
    logged: watch::Sender<usize>,
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

    /// Decides the fault for one incoming request, consuming a `fail_next`/`delay_next` slot.
    pub fn take_fault(&self) -> Option<Fault> {
        let mut state = self.state();
        if state.down {
            return Some(Fault::Down);
        }
        if let Some((remaining, status, body)) = state.fail.take() {
            if remaining > 1 {
                state.fail = Some((remaining - 1, status, body.clone()));
            }
            return Some(Fault::Answer { status, body });
        }
        if let Some((remaining, delay)) = state.delay.take() {
            if remaining > 1 {
                state.delay = Some((remaining - 1, delay));
            }
            return Some(Fault::Delay(delay));
        }
        None
    }

    pub fn fail_next(&self, n: usize, status: u16, body: Value) {
        self.state().fail = (n > 0).then_some((n, status, body));
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

    pub fn record(&self, request: LoggedRequest) {
        let mut state = self.state();
        state.log.push(request);
        let count = state.log.len();
        drop(state);
        self.logged.send_replace(count);
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().log.clone()
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

    #[test]
    fn failures_then_delays_are_consumed_in_order() {
        let controls = Controls::new();
        controls.fail_next(2, 503, json!({"message": "x"}));
        controls.delay_next(1, Duration::from_millis(5));
        assert!(matches!(
            controls.take_fault(),
            Some(Fault::Answer { status: 503, .. })
        ));
        assert!(matches!(
            controls.take_fault(),
            Some(Fault::Answer { status: 503, .. })
        ));
        assert!(matches!(controls.take_fault(), Some(Fault::Delay(_))));
        assert!(controls.take_fault().is_none());
    }

    #[test]
    fn down_wins_and_consumes_nothing() {
        let controls = Controls::new();
        controls.fail_next(1, 500, json!({}));
        controls.set_down(true);
        assert!(matches!(controls.take_fault(), Some(Fault::Down)));
        controls.set_down(false);
        assert!(matches!(
            controls.take_fault(),
            Some(Fault::Answer { status: 500, .. })
        ));
    }
}
