//! The schema cache: both sides' descriptions of the mapped tables as an earlier run read them
//! (SQL Server's catalog, Supabase's OpenAPI), kept in the local database (`meta` table, keys
//! `schema` and `supabase_schema`) so that an agent started while either side is unreachable
//! still resolves its table map as it was last seen, and accepts webhooks.

use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::local_db::{LocalDb, LocalDbError};
use crate::sqlserver::DescribedTables;
use crate::supabase::TargetSchema;

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);";
const SQL_SERVER: &str = "schema";
const SUPABASE: &str = "supabase_schema";

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

    /// The cached SQL Server description, if there is one and it reads.
    pub(crate) async fn load(&self) -> Option<DescribedTables> {
        self.load_json(SQL_SERVER).await
    }

    /// Replaces the cached SQL Server description.
    pub(crate) async fn store(&self, described: &DescribedTables) {
        self.store_json(SQL_SERVER, described).await;
    }

    /// The cached Supabase schema, if there is one and it reads.
    pub(crate) async fn load_supabase(&self) -> Option<TargetSchema> {
        self.load_json(SUPABASE).await
    }

    /// Replaces the cached Supabase schema.
    pub(crate) async fn store_supabase(&self, schema: &TargetSchema) {
        self.store_json(SUPABASE, schema).await;
    }

    async fn load_json<T: DeserializeOwned>(&self, key: &'static str) -> Option<T> {
        let text = self
            .db
            .with(move |conn| {
                conn.query_row(
                    "SELECT value FROM meta WHERE name = ?1",
                    params![key],
                    |r| r.get::<_, String>(0),
                )
                .optional()
            })
            .await;
        match text {
            Ok(text) => text.and_then(|t| serde_json::from_str(&t).ok()),
            Err(e) => {
                tracing::warn!(error = %e, key, "cannot read the cached schema");
                None
            }
        }
    }

    /// A failure is logged, not fatal: the cache only helps a later start during an outage.
    async fn store_json<T: Serialize>(&self, key: &'static str, value: &T) {
        let Ok(json) = serde_json::to_string(value) else {
            return;
        };
        let stored = self
            .db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![key, json],
                )
                .map(drop)
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, key, "cannot cache the schema");
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
        assert_eq!(cache.load_supabase().await, None);
        let supabase = TargetSchema::from_openapi(
            &serde_json::json!({"definitions": {"x": {"properties": {"id": {"format": "integer"}}}}}),
        );
        cache.store_supabase(&supabase).await;
        drop(cache);
        let cache = SchemaCache::open(LocalDb::open(dir.path()).expect("db")).expect("cache");
        assert_eq!(cache.load().await, Some(described));
        assert_eq!(cache.load_supabase().await, Some(supabase));
    }
}
