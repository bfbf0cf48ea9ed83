//! What maps to what: the table map (which SQL Server table and column becomes which Supabase
//! one, who owns each column, which directions sync), the map resolved against both schemas
//! (SQL Server's catalog, Supabase's OpenAPI; columns on one side only are `drift`), and exact
//! value conversion between SQL Server values and PostgREST JSON (`json`), and the canonical
//! form values compare in (`canonical`).
//! No I/O here beyond reading the optional TOML file.

pub(crate) mod canonical;
pub(crate) mod drift;
pub(crate) mod json;
pub(crate) mod resolve;
pub(crate) mod resolved;
pub mod table_map;

pub(crate) use drift::DriftLog;
pub(crate) use resolve::ResolveError;
pub(crate) use resolved::{ResolvedMap, ResolvedTable};
pub use table_map::{ReverseSpec, TableMap, TableMapError, TableSpec};
