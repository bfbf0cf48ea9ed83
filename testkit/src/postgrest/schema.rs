//! The stand-in's "schema cache": tables, columns and functions of the `public` schema, read
//! from the catalog. Unlike PostgREST, which caches until told to reload (`NOTIFY pgrst`), it
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

/// What a function call returns, which decides the shape of the JSON answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Returns {
    Void,
    Scalar,
    /// A table or composite type, or OUT/TABLE columns.
    Composite,
    /// `record` without OUT columns: needs a column definition list the caller cannot give.
    Untyped,
}

/// One overload of a function in `public`.
#[derive(Debug, Clone)]
pub(crate) struct Function {
    /// Input parameters (IN, INOUT, VARIADIC) in order.
    pub params: Vec<Param>,
    /// How many trailing input parameters have defaults.
    pub defaults: usize,
    pub returns: Returns,
    pub returns_set: bool,
    /// `VOLATILE` functions run read-write; `STABLE` and `IMMUTABLE` ones read-only.
    pub volatile: bool,
}

/// One input parameter of a function.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// Empty when unnamed.
    pub name: String,
    /// `format_type`, e.g. `integer`, `jsonb`: for messages and the json/jsonb checks.
    pub type_name: String,
    /// Quoted `schema.typname`, for SQL (`character` would mean `char(1)`).
    pub cast_type: String,
}

impl Function {
    /// The input parameters a call must name.
    pub fn required(&self) -> &[Param] {
        &self.params[..self.params.len().saturating_sub(self.defaults)]
    }
}

const FUNCTIONS_SQL: &str = "
SELECT coalesce(args.names, '{}'),
       coalesce(args.types, '{}'),
       coalesce(args.cast_types, '{}'),
       p.pronargdefaults::int4,
       CASE WHEN p.prorettype = 'pg_catalog.void'::regtype THEN 'void'
            WHEN rt.typtype = 'c' THEN 'composite'
            WHEN p.prorettype = 'pg_catalog.record'::regtype
                 AND p.proargmodes && ARRAY['o', 'b', 't']::pg_catalog.\"char\"[] THEN 'composite'
            WHEN p.prorettype = 'pg_catalog.record'::regtype THEN 'untyped'
            ELSE 'scalar' END,
       p.proretset,
       p.provolatile = 'v'
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype
LEFT JOIN LATERAL (
    SELECT array_agg(coalesce(a.name, '') ORDER BY a.ord) AS names,
           array_agg(format_type(a.type, NULL) ORDER BY a.ord) AS types,
           array_agg(quote_ident(tn.nspname) || '.' || quote_ident(t.typname) ORDER BY a.ord)
               AS cast_types
    FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargmodes, p.proargnames)
         WITH ORDINALITY AS a(type, mode, name, ord)
    JOIN pg_catalog.pg_type t ON t.oid = a.type
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
    WHERE coalesce(a.mode, 'i') IN ('i', 'b', 'v')
) args ON true
WHERE p.pronamespace = 'public'::regnamespace
  AND p.proname = $1
  AND p.prokind = 'f'
  AND p.prorettype NOT IN ('pg_catalog.trigger'::regtype, 'pg_catalog.event_trigger'::regtype)
ORDER BY p.oid";

/// Every overload of `public.<name>`.
pub(crate) async fn load_functions(
    client: &impl GenericClient,
    name: &str,
) -> Result<Vec<Function>, tokio_postgres::Error> {
    let mut functions = Vec::new();
    for row in client.query(FUNCTIONS_SQL, &[&name]).await? {
        let names: Vec<String> = row.try_get(0)?;
        let types: Vec<String> = row.try_get(1)?;
        let cast_types: Vec<String> = row.try_get(2)?;
        let params = names
            .into_iter()
            .zip(types.into_iter().zip(cast_types))
            .map(|(name, (type_name, cast_type))| Param {
                name,
                type_name,
                cast_type,
            })
            .collect();
        let returns = match row.try_get::<_, String>(4)?.as_str() {
            "void" => Returns::Void,
            "composite" => Returns::Composite,
            "untyped" => Returns::Untyped,
            _ => Returns::Scalar,
        };
        functions.push(Function {
            params,
            defaults: usize::try_from(row.try_get::<_, i32>(3)?).unwrap_or(0),
            returns,
            returns_set: row.try_get(5)?,
            volatile: row.try_get(6)?,
        });
    }
    Ok(functions)
}
