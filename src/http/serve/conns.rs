//! The table of open connections: how many there are, which of them are between requests, and
//! which one to close when the cap is reached. A stranger can open connections cheaply, so the
//! cap is enforced here, before hyper sees a byte, and room is made for the clinic's own
//! `queue-notify` (a loopback peer) by shedding the oldest connection that has no request in
//! flight, strangers' (non-loopback) first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where a connection is in its life; what its deadline is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for a request: `fresh` until its first request, `first_byte` once a byte of the
    /// next request has arrived.
    AwaitingHead {
        since: Instant,
        first_byte: Option<Instant>,
        fresh: bool,
    },
    /// A request is being handled (its body may still be arriving; that has its own deadline).
    InRequest,
}

/// One connection's state, shared by its task, its I/O wrapper and its service.
pub(super) struct ConnState {
    id: u64,
    pub(super) loopback: bool,
    phase: Mutex<Phase>,
    /// Wakes the connection's task when its phase (and so its deadline) changes.
    pub(super) changed: Notify,
    /// Cancelled when the table sheds this connection.
    pub(super) shed: CancellationToken,
}

impl ConnState {
    pub(super) fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived: the first one of a request starts its header deadline.
    pub(super) fn saw_bytes(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::AwaitingHead {
            first_byte: first @ None,
            ..
        } = &mut *phase
        {
            *first = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    pub(super) fn begin_request(&self) {
        self.set(Phase::InRequest);
    }

    pub(super) fn end_request(&self) {
        self.set(Phase::AwaitingHead {
            since: Instant::now(),
            first_byte: None,
            fresh: false,
        });
    }
}

/// What the table decided for a newly accepted connection.
pub(super) enum Admission {
    /// Serve it; dropping the guard removes it from the table.
    Admitted(Arc<ConnState>, Slot),
    /// The table is full and nothing could be shed: close it at once.
    Refused,
}

/// The open connections, capped.
pub(super) struct ConnTable {
    cap: usize,
    /// Non-loopback peers may hold at most this many, so loopback always finds room.
    stranger_cap: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl ConnTable {
    pub(super) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            stranger_cap: cap - cap / 8,
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a connection from `peer`, shedding one with no request in flight if the table
    /// is full (the shed connection's task logs that).
    pub(super) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Admission {
        let loopback = peer.ip().is_loopback();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let limit = if loopback {
            self.cap
        } else {
            self.stranger_cap
        };
        if open.len() >= limit {
            let Some(id) = Self::victim(&open, loopback) else {
                return Admission::Refused;
            };
            if let Some(victim) = open.remove(&id) {
                victim.shed.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            id,
            loopback,
            phase: Mutex::new(Phase::AwaitingHead {
                since: Instant::now(),
                first_byte: None,
                fresh: true,
            }),
            changed: Notify::new(),
            shed: CancellationToken::new(),
        });
        open.insert(id, state.clone());
        let slot = Slot {
            table: self.clone(),
            id,
        };
        Admission::Admitted(state, slot)
    }

    /// The connection to shed: one with no request in flight, a stranger's before a loopback
    /// peer's, the longest waiting first. A stranger never sheds a loopback connection.
    fn victim(open: &HashMap<u64, Arc<ConnState>>, for_loopback: bool) -> Option<u64> {
        open.values()
            .filter(|c| for_loopback || !c.loopback)
            .filter_map(|c| match c.phase() {
                Phase::AwaitingHead { since, .. } => Some((c.loopback, since, c.id)),
                Phase::InRequest => None,
            })
            .min()
            .map(|(_, _, id)| id)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A connection's place in the table, given back when the connection ends.
pub(super) struct Slot {
    table: Arc<ConnTable>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(loopback: bool) -> SocketAddr {
        if loopback {
            SocketAddr::from(([127, 0, 0, 1], 5000))
        } else {
            SocketAddr::from(([203, 0, 113, 7], 5000))
        }
    }

    fn admitted(a: Admission) -> (Arc<ConnState>, Slot) {
        match a {
            Admission::Admitted(state, slot) => (state, slot),
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn strangers_leave_headroom_and_are_shed_before_loopback_peers() {
        let table = ConnTable::new(16);
        let mut held = Vec::new();
        // Strangers fill their 14 places; the 15th sheds the oldest of them.
        for _ in 0..14 {
            held.push(admitted(table.admit(peer(false))));
            tokio::time::advance(std::time::Duration::from_millis(1)).await;
        }
        let extra = admitted(table.admit(peer(false)));
        assert!(held[0].0.shed.is_cancelled(), "the oldest stranger went");
        assert_eq!(table.len(), 14);
        // Loopback peers use the headroom without shedding anyone.
        let a = admitted(table.admit(peer(true)));
        let b = admitted(table.admit(peer(true)));
        assert_eq!(table.len(), 16);
        assert!(!held[1].0.shed.is_cancelled());
        // Full: a loopback peer sheds a stranger, not the other loopback peers.
        let c = admitted(table.admit(peer(true)));
        assert!(held[1].0.shed.is_cancelled());
        assert!(!a.0.shed.is_cancelled() && !b.0.shed.is_cancelled());
        // Connections in a request are never shed; when all are, a newcomer is refused.
        for (state, _) in held.iter().skip(2) {
            state.begin_request();
        }
        for s in [&a.0, &b.0, &c.0, &extra.0] {
            s.begin_request();
        }
        assert!(matches!(table.admit(peer(true)), Admission::Refused));
        assert!(matches!(table.admit(peer(false)), Admission::Refused));
        // Dropping a connection gives its place back.
        drop(held.pop());
        assert_eq!(table.len(), 15);
    }
}
