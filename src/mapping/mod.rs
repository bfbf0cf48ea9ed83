//! What maps to what: the table map (which SQL Server table and column becomes which Supabase
//! one, who owns each column, which directions sync) and exact value conversion.
//! No I/O here beyond reading the optional TOML file.

pub mod resolved;
pub mod table_map;
pub mod value;

pub use resolved::{ResolvedMap, ResolvedTable};
pub use table_map::{ReverseSpec, TableMap, TableSpec};
