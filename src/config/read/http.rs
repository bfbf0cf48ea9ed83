//! The HTTP server's limits (`SYNC_HTTP_*`), read with the same `Reader` as the rest.

use std::time::Duration;

use super::{duration, ranged, Reader};
use crate::config::HttpLimits;

impl Reader<'_> {
    pub(in crate::config) fn http_limits(&mut self) -> HttpLimits {
        let d = HttpLimits::default();
        let max_connections = self.parsed(
            "SYNC_HTTP_MAX_CONNECTIONS",
            d.max_connections,
            ranged(16usize, 65_536),
        );
        let mut timeout = |key: &'static str, default: Duration| {
            let value = self.parsed(key, default, duration);
            if value < Duration::from_millis(100) || value > Duration::from_secs(3600) {
                self.fail(key, "must be from 100ms to 1h");
            }
            value
        };
        HttpLimits {
            max_connections,
            header_timeout: timeout("SYNC_HTTP_HEADER_TIMEOUT", d.header_timeout),
            request_timeout: timeout("SYNC_HTTP_REQUEST_TIMEOUT", d.request_timeout),
            idle_timeout: timeout("SYNC_HTTP_IDLE_TIMEOUT", d.idle_timeout),
        }
    }
}
