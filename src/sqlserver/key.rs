//! A record's identity as the queue writes it: key column → integer or text, stored in
//! `SyncQueue.RecordID` as a JSON object.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::value::SqlValue;

/// One part of a record's primary key. Clinic keys are integers, GUIDs or short strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyPart {
    Int(i64),
    Text(String),
}

impl KeyPart {
    pub fn to_sql(&self) -> SqlValue {
        match self {
            Self::Int(i) => SqlValue::Int(*i),
            Self::Text(s) => SqlValue::Text(s.clone()),
        }
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Text(s) => f.write_str(s),
        }
    }
}

/// A record's key: source key column → value. `SyncQueue.RecordID` stores it as a JSON object,
/// e.g. `{"PersonID":123}` or `{"WorkID":5,"ToothNo":11}`, which is what the triggers in
/// `sql/sqlserver/` write with `FOR JSON PATH, WITHOUT_ARRAY_WRAPPER`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey(pub BTreeMap<String, KeyPart>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RecordID {0:?} is not a JSON object of key columns to integers or strings")]
pub struct RecordKeyError(pub String);

impl RecordKey {
    pub fn parse(record_id: &str) -> Result<Self, RecordKeyError> {
        let bad = || RecordKeyError(record_id.chars().take(200).collect());
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(record_id).map_err(|_| bad())?;
        if map.is_empty() {
            return Err(bad());
        }
        map.into_iter()
            .map(|(column, value)| {
                let part = match value {
                    serde_json::Value::Number(n) => KeyPart::Int(n.as_i64().ok_or_else(bad)?),
                    serde_json::Value::String(s) => KeyPart::Text(s),
                    _ => return Err(bad()),
                };
                Ok((column, part))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The canonical JSON text (columns sorted), as stored in `RecordID`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    pub fn get(&self, column: &str) -> Option<&KeyPart> {
        self.0.get(column)
    }

    /// The same key with each column named as `declared` spells it, matched as SQL Server
    /// matches identifiers ([`same_identifier`]): a RecordID written as `{"personid":1}` by a
    /// trigger installed with `@KeyColumns = N'personid'` is the key of `PersonID`. Parts that
    /// match no declared name keep theirs.
    pub(crate) fn with_declared_names<'a>(
        &self,
        declared: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let declared: Vec<&str> = declared.into_iter().collect();
        let name = |column: &str| {
            declared
                .iter()
                .find(|d| **d == column)
                .or_else(|| declared.iter().find(|d| same_identifier(d, column)))
                .map_or_else(|| column.to_owned(), |d| (*d).to_owned())
        };
        Self(
            self.0
                .iter()
                .map(|(column, part)| (name(column), part.clone()))
                .collect(),
        )
    }
}

/// Whether two identifiers name the same column or table the way SQL Server resolves names under
/// a case-insensitive collation (every default install): equal once lower-cased. Callers try an
/// exact match first, so a case-sensitive database with both `a` and `A` still resolves each.
pub(crate) fn same_identifier(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

#[cfg(test)]
#[path = "key_props.rs"]
mod props;
