//! A small connection pool for the fake server: PostgREST keeps a pool too, and opening a
//! connection per request would make every test request pay PostgreSQL's backend start-up.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

/// Enough for a handful of concurrent requests per test while many tests share one server.
const MAX_CONNECTIONS: usize = 8;

pub(crate) struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A connection on loan; it goes back to the pool when dropped, unless it broke.
pub(crate) struct PooledClient {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(mut config: Config) -> Pool {
        config.application_name("syncbridge-testkit-postgrest");
        Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }

    pub async fn get(self: &Arc<Self>) -> Result<PooledClient, tokio_postgres::Error> {
        // The semaphore is never closed, so acquiring can only wait, not fail.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("pool semaphore is never closed");
        let reused = self.idle().pop();
        let client = match reused {
            Some(client) => client,
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(%err, "fake PostgREST connection ended");
                    }
                });
                client
            }
        };
        Ok(PooledClient {
            client: Some(client),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Deref for PooledClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // An unfinished transaction rolls back on its own: tokio-postgres queues ROLLBACK
            // when a Transaction is dropped, ahead of anything the next borrower sends.
            if !client.is_closed() {
                self.pool.idle().push(client);
            }
        }
    }
}
