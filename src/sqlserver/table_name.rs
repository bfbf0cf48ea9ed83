//! A SQL Server table's name, parsed once: `tblX`, `dbo.tblX`, `[dbo].[tblX]` and `"dbo"."tblX"`
//! are the same table, in any case (as SQL Server resolves names under the case-insensitive
//! collations every default install uses). The change triggers write `SyncQueue.TableName` bare
//! for `dbo` and `schema.table` otherwise; [`TableName`]'s `Display` is that spelling.

use std::fmt;

use super::key::same_identifier;

/// The schema a table name without one is in.
const DEFAULT_SCHEMA: &str = "dbo";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a table name (expected table or schema.table)")]
pub struct BadTableName(pub String);

/// `(schema, table)`; compare with [`TableName::same_as`], not `==`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// Splits `table`, `schema.table`, `[schema].[table]` or `"schema"."table"` (`]]` and `""`
    /// escape the closing quote); the schema defaults to `dbo`.
    pub fn parse(input: &str) -> Result<Self, BadTableName> {
        let invalid = || BadTableName(input.chars().take(300).collect());
        let mut parts = Vec::new();
        let mut chars = input.trim().chars().peekable();
        loop {
            let mut part = String::new();
            match chars.peek() {
                Some(&open @ ('[' | '"')) => {
                    chars.next();
                    let close = if open == '[' { ']' } else { '"' };
                    loop {
                        match chars.next() {
                            Some(c) if c == close && chars.peek() == Some(&close) => {
                                chars.next();
                                part.push(close);
                            }
                            Some(c) if c == close => break,
                            Some(c) => part.push(c),
                            None => return Err(invalid()),
                        }
                    }
                }
                _ => {
                    while let Some(&c) = chars.peek() {
                        if c == '.' {
                            break;
                        }
                        part.push(c);
                        chars.next();
                    }
                }
            }
            if part.trim().is_empty() {
                return Err(invalid());
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(_) => return Err(invalid()),
            }
        }
        let mut parts = parts.into_iter();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => Ok(Self {
                schema: DEFAULT_SCHEMA.to_owned(),
                name,
            }),
            (Some(schema), Some(name), None) => Ok(Self { schema, name }),
            _ => Err(invalid()),
        }
    }

    /// Whether both name the same table, as SQL Server resolves names ([`same_identifier`]).
    pub fn same_as(&self, other: &Self) -> bool {
        same_identifier(&self.schema, &other.schema) && same_identifier(&self.name, &other.name)
    }

    /// Whether `text` (a queue `TableName`, a catalog `schema.table`) names this table.
    pub fn is(&self, text: &str) -> bool {
        Self::parse(text).is_ok_and(|other| self.same_as(&other))
    }

    /// `schema.table` with the schema always written (for messages and `check`).
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn in_default_schema(&self) -> bool {
        same_identifier(&self.schema, DEFAULT_SCHEMA)
    }
}

/// The change triggers' spelling: bare in `dbo`, `schema.table` otherwise.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_default_schema() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}.{}", self.schema, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TableName {
        TableName::parse(s).expect("a table name")
    }

    #[test]
    fn every_spelling_of_a_dbo_table_is_the_same_table() {
        let bare = p("tblPatients");
        for spelling in [
            "dbo.tblPatients",
            "[dbo].[tblPatients]",
            "\"dbo\".\"tblPatients\"",
            "DBO.TBLPATIENTS",
            "[dbo].tblpatients",
            " tblPatients ",
        ] {
            assert!(bare.same_as(&p(spelling)), "{spelling}");
            assert!(bare.is(spelling), "{spelling}");
        }
        assert!(!bare.same_as(&p("sales.tblPatients")));
        assert!(!bare.same_as(&p("tblPatient")));
        assert_eq!(p("[dbo].[tblPatients]").to_string(), "tblPatients");
        assert_eq!(p("sales.Orders").to_string(), "sales.Orders");
        assert_eq!(p("tblPatients").qualified(), "dbo.tblPatients");
    }

    #[test]
    fn quoting_escapes_and_bad_names() {
        assert_eq!(
            p("[my schema].[odd]]name]"),
            TableName {
                schema: "my schema".into(),
                name: "odd]name".into()
            }
        );
        assert_eq!(p("\"s\".\"t.x\"").name, "t.x");
        for bad in ["", "a.b.c", "a.", ".b", "[unclosed", "[a]b"] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
