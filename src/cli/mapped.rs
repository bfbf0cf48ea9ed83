//! The mapped tables a command works on: the table map resolved against SQL Server's catalog
//! (and, for `verify`, Supabase's schema too), narrowed to the tables `--table` names (by
//! either side's name, in any spelling of the SQL Server name), always in the map's
//! parent-before-child order.

use crate::mapping::{ResolvedMap, ResolvedTable, TableMap};
use crate::sqlserver::{same_identifier, DescribedTables, SqlStore, StoreError, TableName};
use crate::supabase::TargetSchema;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MappedError {
    #[error("cannot read SQL Server's catalog: {0}")]
    Catalog(#[source] StoreError),
    #[error("the table map does not match SQL Server:\n{0}")]
    Map(String),
    #[error("{0:?} is not a table of the table map")]
    Unknown(String),
}

/// `map` resolved against SQL Server (and `target` when given).
pub(crate) async fn resolve(
    store: &dyn SqlStore,
    map: &TableMap,
    target: Option<&TargetSchema>,
) -> Result<ResolvedMap, MappedError> {
    let described = DescribedTables::read(store, map.sources())
        .await
        .map_err(MappedError::Catalog)?;
    ResolvedMap::resolve_against(map, &described, target)
        .map_err(|e| MappedError::Map(e.to_string()))
}

/// The tables `wanted` names (all of them when empty), parents first.
pub(crate) fn select<'a>(
    map: &'a ResolvedMap,
    wanted: &[String],
) -> Result<Vec<&'a ResolvedTable>, MappedError> {
    let names = |t: &ResolvedTable, given: &str| {
        TableName::parse(given).is_ok_and(|n| n.same_as(&t.name))
            || same_identifier(&t.target, given)
    };
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !map.tables.iter().any(|t| names(t, w)))
    {
        return Err(MappedError::Unknown(unknown.clone()));
    }
    Ok(map
        .tables
        .iter()
        .filter(|t| wanted.is_empty() || wanted.iter().any(|w| names(t, w)))
        .collect())
}

/// The key columns of `table` as declared in SQL Server, in the map's key order.
pub(crate) fn key_columns(table: &ResolvedTable) -> Vec<String> {
    table.queue_key_columns()
}
