//! Clinic-owned columns a portal user changed in Supabase (README "Who wins"). The reverse path
//! never writes them into SQL Server once the row exists, so without this Supabase would keep
//! the portal's value until the clinic next changed the row. When an event shows Supabase
//! holding another value than SQL Server's current row, the applier queues the record forward
//! and the forward path pushes the clinic's value back over it. Values compare in the canonical
//! form verify uses, so the echo of that push, which carries SQL Server's own values, queues
//! nothing: no loop. Pure: the applier reads the row and queues the record.

use serde_json::{Map, Value};

use super::event::NewEvent;
use crate::mapping::canonical::same;
use crate::mapping::json::from_json;
use crate::mapping::resolved::MappedColumn;
use crate::mapping::ResolvedTable;
use crate::sqlserver::{RecordKey, Row, SqlValue};

fn clinic_owned(table: &ResolvedTable) -> impl Iterator<Item = &MappedColumn> {
    table.columns.iter().filter(|c| !c.key && !c.portal_owned)
}

/// Whether `event` may show a clinic-owned column that differs from SQL Server, and so is worth
/// a read of SQL Server's row: its `old_record` shows one changed, or it has no `old_record`
/// (an INSERT, a catch-up row: nothing tells what changed). Deletes never are.
pub(super) fn worth_checking(table: &ResolvedTable, event: &NewEvent) -> bool {
    let Some(record) = event.record.as_ref().filter(|_| !event.kind.is_delete()) else {
        return false;
    };
    let mut carried = clinic_owned(table).filter(|c| record.contains_key(&c.target));
    match &event.old_record {
        None => carried.next().is_some(),
        Some(old) => carried.any(|c| old.get(&c.target) != record.get(&c.target)),
    }
}

/// The clinic-owned columns (Supabase names) whose value in `record` differs from SQL Server's
/// `row`, compared canonically after decoding by the SQL Server column's type. A value SQL
/// Server could not hold differs.
pub(super) fn differing(
    table: &ResolvedTable,
    record: &Map<String, Value>,
    row: &Row,
) -> Vec<String> {
    clinic_owned(table)
        .filter(|c| {
            record.get(&c.target).is_some_and(|json| {
                let ours = row.get(&c.source.name).unwrap_or(&SqlValue::Null);
                from_json(json, &c.source.sql_type).map_or(true, |theirs| !same(ours, &theirs))
            })
        })
        .map(|c| c.target.clone())
        .collect()
}

/// The SQL Server key of `record`, as the queue and `load_rows` spell it.
pub(super) fn queue_key(table: &ResolvedTable, record: &Map<String, Value>) -> Option<RecordKey> {
    let decoded = table.decode_record(record).ok()?;
    let key: Row = decoded
        .into_iter()
        .filter(|(c, _)| c.key)
        .map(|(c, v)| (c.source.name.clone(), v))
        .collect();
    table.key_of_row(&key)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::ResolvedMap;
    use crate::reverse::event::EventKind;
    use crate::sqlserver::{KeyPart, Op};

    fn batch_record(days: i64, notes: &str) -> Map<String, Value> {
        let record = json!({"aligner_batch_id": 1, "aligner_set_id": 1, "batch_sequence": 1,
            "upper_aligner_count": 5, "lower_aligner_count": 5, "days": days,
            "manufacture_date": null, "delivered_to_patient_date": null, "notes": notes,
            "label_code": "\\xdeadbeef", "updated_at": "2026-11-25T10:00:00+00:00"});
        record.as_object().cloned().expect("an object")
    }

    fn update(record: Map<String, Value>, old: Option<Map<String, Value>>) -> NewEvent {
        NewEvent {
            kind: EventKind::Change(Op::Update),
            table: "aligner_batches".into(),
            record_key: r#"{"aligner_batch_id":1}"#.into(),
            record: Some(record),
            old_record: old,
            version: None,
        }
    }

    #[tokio::test]
    async fn only_an_event_that_may_change_a_clinic_owned_column_is_checked() {
        let map = ResolvedMap::sample_clinic().await;
        let table = map.by_target("aligner_batches").expect("batches");
        let was = batch_record(14, "first batch");
        // Days is the portal's: its change alone needs no read of SQL Server.
        assert!(!worth_checking(
            table,
            &update(batch_record(21, "first batch"), Some(was.clone()))
        ));
        assert!(worth_checking(
            table,
            &update(batch_record(14, "portal"), Some(was.clone()))
        ));
        // A catch-up row or a webhook without old_record: nothing says what changed.
        assert!(worth_checking(table, &update(was.clone(), None)));
        let mut delete = update(was.clone(), Some(was));
        delete.kind = EventKind::Change(Op::Delete);
        assert!(!worth_checking(table, &delete));
    }

    #[tokio::test]
    async fn clinic_owned_columns_compare_canonically_with_sql_servers_row() {
        let map = ResolvedMap::sample_clinic().await;
        let table = map.by_target("aligner_batches").expect("batches");
        let record = batch_record(21, "first batch");
        let key = queue_key(table, &record).expect("a key");
        assert_eq!(key.get("AlignerBatchID"), Some(&KeyPart::Int(1)));
        let decoded = table.decode_record(&record).expect("decodes");
        let row: Row = decoded
            .into_iter()
            .map(|(c, v)| (c.source.name.clone(), v))
            .collect();
        // SQL Server's own values, whatever the portal-owned days say: nothing to restore.
        let mut ours = row.clone();
        ours.insert("Days".into(), SqlValue::Int(14));
        assert!(differing(table, &record, &ours).is_empty());
        ours.insert("Notes".into(), SqlValue::Text("clinic".into()));
        ours.insert("UpperAlignerCount".into(), SqlValue::Int(6));
        assert_eq!(
            differing(table, &record, &ours),
            ["upper_aligner_count", "notes"]
        );
    }
}
