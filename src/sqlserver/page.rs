//! Whole tables read and queued in key order, a page at a time: what `syncbridge backfill`
//! enqueues and `syncbridge verify` reads ([`KeyPage`]), and the queue's spelling of a record
//! written from outside a trigger ([`trigger_record_id`]).

use super::key::{same_identifier, KeyPart, RecordKey};

/// One keyset page of a table: its rows in key order (the order of `keys`, as SQL Server
/// orders them: the key columns' own types and collations), strictly after `after` (from the
/// start when `None`), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// The table as the change triggers spell it in `SyncQueue.TableName` (bare in `dbo`).
    pub table: String,
    /// The key columns as declared, in key order.
    pub keys: Vec<String>,
    pub after: Option<RecordKey>,
    pub limit: usize,
}

/// What [`super::SqlStore::backfill_page`] queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// Queue items written (one per row of the page).
    pub enqueued: u64,
    /// The key of the page's last row, where the next page starts; `None` when the page was
    /// empty: the table is done.
    pub last: Option<RecordKey>,
}

/// `key`'s parts in the order of `columns` (matched as SQL Server matches names), or `None`
/// when a column is missing from the key.
pub(crate) fn ordered_parts<'a>(
    key: &'a RecordKey,
    columns: &[String],
) -> Option<Vec<&'a KeyPart>> {
    columns
        .iter()
        .map(|c| {
            key.get(c).or_else(|| {
                key.0
                    .iter()
                    .find(|(name, _)| same_identifier(name, c))
                    .map(|(_, part)| part)
            })
        })
        .collect()
}

/// `SyncQueue.RecordID` for `key` as the change trigger writes it (`FOR JSON PATH,
/// WITHOUT_ARRAY_WRAPPER` over the key columns in key order): `{"WorkID":5,"ToothNo":11}`, so
/// an item queued by backfill or verify coalesces with the trigger's items of the same record.
/// `None` when `key` lacks one of `columns`.
pub(crate) fn trigger_record_id(key: &RecordKey, columns: &[String]) -> Option<String> {
    let parts = ordered_parts(key, columns)?;
    let fields: Vec<String> = columns
        .iter()
        .zip(parts)
        .map(|(name, part)| {
            let value = match part {
                KeyPart::Int(i) => i.to_string(),
                KeyPart::Text(t) => serde_json::Value::String(t.clone()).to_string(),
            };
            format!("{}:{value}", serde_json::Value::String(name.clone()))
        })
        .collect();
    Some(format!("{{{}}}", fields.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_list_the_key_columns_in_key_order_as_the_trigger_does() {
        let key = RecordKey(
            [
                ("WorkID".to_owned(), KeyPart::Int(5)),
                ("ToothNo".to_owned(), KeyPart::Text("1\"1".to_owned())),
            ]
            .into_iter()
            .collect(),
        );
        let order = ["WorkID".to_owned(), "toothno".to_owned()];
        assert_eq!(
            trigger_record_id(&key, &order).as_deref(),
            Some(r#"{"WorkID":5,"toothno":"1\"1"}"#)
        );
        assert_eq!(
            RecordKey::parse(r#"{"WorkID":5,"ToothNo":"1\"1"}"#),
            Ok(key.clone())
        );
        assert_eq!(trigger_record_id(&key, &["Other".to_owned()]), None);
    }
}
