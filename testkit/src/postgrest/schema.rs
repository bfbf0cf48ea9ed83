//! The stand-in's "schema cache": tables and columns of the `public` schema, read from the
//! catalog. Unlike PostgREST, which caches until told to reload (`NOTIFY pgrst`), it
//! reads them on every request, so what a test creates is visible at once.

use tokio_postgres::GenericClient;

/// One column, with what the SQL builder and the OpenAPI document need.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    /// Quoted `schema.typname`, safe as a cast target (`format_type` would give `character`
    /// for bpchar, which casts to one character).
    pub cast_type: String,
    /// `format_type` without modifiers, e.g. `timestamp with time zone`, `numeric`.
    pub type_name: String,
    pub not_null: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// Primary-key columns in key order.
    pub primary_key: Vec<String>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|column| column.name == name)
    }
}

const TABLES_SQL: &str = "
SELECT c.relname::text,
       a.attname::text,
       quote_ident(tn.nspname) || '.' || quote_ident(t.typname),
       format_type(a.atttypid, NULL),
       a.attnotnull,
       array_position(pk.conkey, a.attnum)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_constraint pk ON pk.conrelid = c.oid AND pk.contype = 'p'
WHERE n.nspname = 'public'
  AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND ($1::text IS NULL OR c.relname = $1)
ORDER BY c.relname, a.attnum";

/// The table called `name`, if the `public` schema has one.
pub(crate) async fn load_table(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<Table>, tokio_postgres::Error> {
    Ok(load_tables(client, Some(name)).await?.into_iter().next())
}

/// Every table and view of the `public` schema (`only`: just that one), by name.
pub(crate) async fn load_tables(
    client: &impl GenericClient,
    only: Option<&str>,
) -> Result<Vec<Table>, tokio_postgres::Error> {
    let mut tables: Vec<Table> = Vec::new();
    let mut key_positions: Vec<Vec<(i32, String)>> = Vec::new();
    for row in client.query(TABLES_SQL, &[&only]).await? {
        let table_name: String = row.try_get(0)?;
        if tables.last().map(|t| &t.name) != Some(&table_name) {
            tables.push(Table {
                name: table_name,
                columns: Vec::new(),
                primary_key: Vec::new(),
            });
            key_positions.push(Vec::new());
        }
        let column = Column {
            name: row.try_get(1)?,
            cast_type: row.try_get(2)?,
            type_name: row.try_get(3)?,
            not_null: row.try_get(4)?,
        };
        let key_position: Option<i32> = row.try_get(5)?;
        if let (Some(position), Some(keys)) = (key_position, key_positions.last_mut()) {
            keys.push((position, column.name.clone()));
        }
        if let Some(table) = tables.last_mut() {
            table.columns.push(column);
        }
    }
    for (table, mut keys) in tables.iter_mut().zip(key_positions) {
        keys.sort();
        table.primary_key = keys.into_iter().map(|(_, name)| name).collect();
    }
    Ok(tables)
}
