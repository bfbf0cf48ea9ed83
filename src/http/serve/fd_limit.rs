//! File descriptors: every connection holds one, and so do the agent's own connections to SQL
//! Server and Supabase, its SQLite inbox and its log files. The soft limit (often 1,024) is
//! raised to the hard one at start, and the connection cap kept to at most half of what
//! remains after [`RESERVED`], so a full connection table never starves the agent itself.

/// Descriptors kept for the agent's own use, whatever the cap.
const RESERVED: u64 = 128;

/// The connection cap to use: `configured`, lowered if the descriptor limit is too small for it.
pub(super) fn connection_cap(configured: usize) -> usize {
    let Some(soft) = raise_soft_limit() else {
        return configured;
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED) / 2).unwrap_or(usize::MAX);
    if room < configured {
        let cap = room.max(16);
        tracing::warn!(
            configured,
            cap,
            descriptor_limit = soft,
            "SYNC_HTTP_MAX_CONNECTIONS lowered to fit the file-descriptor limit"
        );
        return cap;
    }
    configured
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit then in force (`None`:
/// unlimited).
#[cfg(unix)]
fn raise_soft_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            // macOS refuses an unlimited soft limit; the old one stays, and the cap fits it.
            tracing::debug!(error = %e, "could not raise the file-descriptor limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Windows has no such per-process limit on sockets.
#[cfg(not(unix))]
fn raise_soft_limit() -> Option<u64> {
    None
}
