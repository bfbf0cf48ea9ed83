//! Group commit for webhooks: one writer task takes every webhook event waiting when it is
//! free and stores them in one transaction, so one fsync makes a whole group durable; each
//! request is answered only after its group's commit, and every request of a group that failed
//! to commit gets the error (nothing is acknowledged that is not on disk). Events are stored in
//! the order their requests arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rusqlite::Transaction;
use tokio::sync::{mpsc, oneshot};

use super::{insert_events, Inbox, InboxError};
use crate::local_db::{durable, LocalDb, LocalDbError};
use crate::reverse::event::NewEvent;

/// Most events one transaction takes: bounds how long one group holds the database.
const MAX_GROUP: usize = 512;

struct Request {
    event: NewEvent,
    answer: oneshot::Sender<Result<i64, Arc<LocalDbError>>>,
}

/// The writer's inbox end, started on first use (it needs the runtime); the task stops when
/// the last [`Inbox`] clone is dropped.
#[derive(Default)]
pub(super) struct GroupWriter {
    requests: OnceLock<mpsc::UnboundedSender<Request>>,
    /// Group transactions committed (for tests: fewer than the events when they group).
    pub(super) commits: Arc<AtomicU64>,
}

impl Inbox {
    /// Stores one webhook's event durably (fsync'd) in the next group commit; returns its id.
    pub(crate) async fn append_webhook(&self, event: NewEvent) -> Result<i64, InboxError> {
        let requests = self.group.requests.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let commits = Arc::clone(&self.group.commits);
            tokio::spawn(write_groups(self.db.clone(), rx, commits));
            tx
        });
        let (answer, answered) = oneshot::channel();
        requests
            .send(Request { event, answer })
            .map_err(|_| LocalDbError::WriterStopped)?;
        match answered.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(LocalDbError::GroupCommit(e)),
            Err(_) => Err(LocalDbError::WriterStopped),
        }
    }
}

async fn write_groups(
    db: LocalDb,
    mut rx: mpsc::UnboundedReceiver<Request>,
    commits: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let (events, answers): (Vec<NewEvent>, Vec<_>) =
            group.into_iter().map(|r| (r.event, r.answer)).unzip();
        let stored = db
            .with(move |conn| {
                durable(conn, true)?;
                let tx = conn.transaction()?;
                let ids = insert_events(&tx, &events)?;
                Transaction::commit(tx)?;
                Ok(ids)
            })
            .await;
        if stored.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        match stored {
            Ok(ids) => {
                for (answer, id) in answers.into_iter().zip(ids) {
                    let _ = answer.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = answers.len(), "inbox group commit failed");
                let e = Arc::new(e);
                for answer in answers {
                    let _ = answer.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}
