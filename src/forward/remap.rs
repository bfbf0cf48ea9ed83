//! When Supabase's schema changes under a running forward path (a column dropped, PostgREST
//! answering `PGRST204`/`42703`): the [`Remap`] seam that re-reads Supabase's schema and
//! resolves the table map again (the agent implements it: it also caches the schema and
//! reports the drift), and [`CurrentMap`], the map the next batch is sent with.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::mapping::ResolvedMap;
use crate::supabase::PostgrestError;

/// Resolves the table map again against Supabase's schema as it is now.
#[async_trait]
pub(crate) trait Remap: Send + Sync {
    /// Re-reads Supabase's schema and resolves the map against it: the new map, or `None` when
    /// its tables are the same as `current`'s (then the refusal was not drift).
    async fn remap(&self, current: &ResolvedMap) -> Result<Option<ResolvedMap>, PostgrestError>;
}

/// The resolved map the forward path sends with; replaced when Supabase's schema drifted.
pub(crate) struct CurrentMap(RwLock<Arc<ResolvedMap>>);

impl CurrentMap {
    pub(crate) fn new(map: Arc<ResolvedMap>) -> Self {
        Self(RwLock::new(map))
    }

    pub(crate) fn get(&self) -> Arc<ResolvedMap> {
        // A map is replaced whole, so even a poisoned lock holds a complete one.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, map: ResolvedMap) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }
}
