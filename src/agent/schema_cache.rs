//! The schema cache: SQL Server's description of the mapped tables as an earlier run read it,
//! kept in the local database (`meta` table, key `schema`) so that an agent started while SQL
//! Server is unreachable can still resolve its table map and accept webhooks.

use rusqlite::{params, OptionalExtension};

use crate::local_db::{LocalDb, LocalDbError};
use crate::sqlserver::DescribedTables;

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);";
const KEY: &str = "schema";

#[derive(Clone)]
pub(crate) struct SchemaCache {
    db: LocalDb,
}

impl SchemaCache {
    /// The cache in `db`, its table created if needed.
    pub(crate) fn open(db: LocalDb) -> Result<Self, LocalDbError> {
        db.create(SCHEMA)?;
        Ok(Self { db })
    }

    /// The cached description, if there is one and it reads.
    pub(crate) async fn load(&self) -> Option<DescribedTables> {
        let text = self
            .db
            .with(|conn| {
                conn.query_row(
                    "SELECT value FROM meta WHERE name = ?1",
                    params![KEY],
                    |r| r.get::<_, String>(0),
                )
                .optional()
            })
            .await;
        match text {
            Ok(text) => text.and_then(|t| serde_json::from_str(&t).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cached SQL Server schema");
                None
            }
        }
    }

    /// Replaces the cached description; a failure is logged, not fatal (the cache only helps
    /// a later start during an outage).
    pub(crate) async fn store(&self, described: &DescribedTables) {
        let Ok(json) = serde_json::to_string(described) else {
            return;
        };
        let stored = self
            .db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![KEY, json],
                )
                .map(drop)
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cannot cache the SQL Server schema");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlserver::{SourceColumn, SqlType};

    #[tokio::test]
    async fn the_cached_schema_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = SchemaCache::open(LocalDb::open(dir.path()).expect("db")).expect("cache");
        assert_eq!(cache.load().await, None);
        let described = DescribedTables(vec![
            ("tblX".to_owned(), None),
            (
                "tblY".to_owned(),
                Some(vec![SourceColumn {
                    name: "ID".to_owned(),
                    sql_type: SqlType::Int { bits: 32 },
                    nullable: false,
                    identity: true,
                    computed: false,
                }]),
            ),
        ]);
        cache.store(&described).await;
        drop(cache);
        let cache = SchemaCache::open(LocalDb::open(dir.path()).expect("db")).expect("cache");
        assert_eq!(cache.load().await, Some(described));
    }
}
