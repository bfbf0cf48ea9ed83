//! What SQL Server's catalog says: the columns of a table, the mapped tables described together
//! (what the table map is resolved against, and what the schema cache keeps), and whether the
//! forward path's set-up is installed.

use serde::{Deserialize, Serialize};

use super::value::SqlType;
use super::{SqlStore, StoreError, TableName};

/// A column of a SQL Server table, from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceColumn {
    pub name: String,
    pub sql_type: SqlType,
    pub nullable: bool,
    pub identity: bool,
    pub computed: bool,
}

/// Tables as the catalog describes them, in the order asked: each name with its columns, or
/// `None` where the table does not exist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct DescribedTables(pub(crate) Vec<(String, Option<Vec<SourceColumn>>)>);

impl DescribedTables {
    /// Describes each of `tables`, one catalog read per table.
    pub(crate) async fn read(
        store: &dyn SqlStore,
        tables: impl IntoIterator<Item = TableName>,
    ) -> Result<Self, StoreError> {
        let mut out = Vec::new();
        for table in tables {
            let name = table.to_string();
            let columns = store.describe_table(&name).await?;
            out.push((name, columns));
        }
        Ok(Self(out))
    }

    /// The columns of `table` (however either spelled it: [`TableName::same_as`]), or `None`
    /// when it was not described or does not exist.
    pub(crate) fn columns(&self, table: &TableName) -> Option<&[SourceColumn]> {
        self.0
            .iter()
            .find(|(name, _)| table.is(name))
            .and_then(|(_, cols)| cols.as_deref())
    }
}

/// What the forward path needs installed in SQL Server, for `syncbridge check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "test-support", derive(serde::Serialize, serde::Deserialize))]
pub struct SetupReport {
    /// `Ole Automation Procedures` is on (`sp_NotifyAppOfSync` can POST).
    pub ole_automation: bool,
    /// `SyncConfig.NotifyUrl`, if set.
    pub notify_url: Option<String>,
    /// Tables (as `schema.table`) that have an enabled `trg_<table>_SyncQueue` trigger.
    pub tables_with_trigger: Vec<String>,
}
