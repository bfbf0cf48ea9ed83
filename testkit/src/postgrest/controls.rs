//! Test controls of the PostgREST stand-in: the faults injected into HTTP answers and the log
//! of the requests it answered. Shared between the `FakePostgrest` handle and the server.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

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
    /// The status answered.
    pub status: u16,
    /// Objects in the JSON body: an array's length, 1 for an object, 0 without a body.
    pub body_rows: usize,
    /// The JSON body, when there was one and it parsed.
    pub body: Option<Value>,
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

/// What one request gets instead of (or before) normal processing.
#[derive(Debug, PartialEq)]
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
    down: bool,
    fail: Option<(usize, (u16, Value))>,
    delay: Option<(usize, Duration)>,
    retry_after: Option<u32>,
    log: Vec<LoggedRequest>,
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
    /// `fail_next`, `delay_next`.
    pub fn take_fault(&self) -> Option<Fault> {
        let mut state = self.state();
        if state.down {
            return Some(Fault::Down);
        }
        if let Some((status, body)) = take(&mut state.fail) {
            return Some(Fault::Answer { status, body });
        }
        take(&mut state.delay).map(Fault::Delay)
    }

    pub fn fail_next(&self, n: usize, status: u16, body: Value) {
        self.state().fail = (n > 0).then_some((n, (status, body)));
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
        controls.delay_next(1, Duration::from_millis(5));
        assert_eq!(controls.take_fault(), answer(503));
        assert_eq!(controls.take_fault(), answer(503));
        assert_eq!(
            controls.take_fault(),
            Some(Fault::Delay(Duration::from_millis(5)))
        );
        assert_eq!(controls.take_fault(), None);
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
