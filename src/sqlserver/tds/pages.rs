//! Whole tables in key order, a page at a time: `backfill_page` queues a page of a table's rows
//! in one statement, `read_page` reads one, and `queue_records` queues named records. Every
//! table and column name comes from the catalog ([`TableInfo`]); values are typed parameters.

use chrono::{DateTime, Utc};
use tiberius::{ColumnData, Query};

use super::catalog::{quote, ColumnInfo, TableInfo};
use super::error::SqlResult;
use super::exec::{all_results, first_result};
use super::pool::TdsClient;
use super::queue::QueueTable;
use super::rows::{decode_row, key_column, select_expr, KeyKind};
use crate::sqlserver::{
    ordered_parts, trigger_record_id, Enqueued, KeyPage, RecordKey, Row, SourceColumn, StoreError,
};

/// Rows per `queue_records` statement: a table value constructor takes at most 1000 rows.
const VALUES_ROWS: usize = 1000;

/// The page's key columns as the catalog names them, and how each is bound.
fn key_columns<'a>(
    info: &'a TableInfo,
    page: &KeyPage,
) -> Result<Vec<(&'a ColumnInfo, KeyKind)>, StoreError> {
    page.keys
        .iter()
        .map(|k| {
            key_column(info, k).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "{} has no key column {k:?} the sync can page by",
                    info.name
                ))
            })
        })
        .collect()
}

/// `WHERE` for the rows after `page.after` in key order, with its parameters (numbered from
/// `first`): `k1 >= @a1 AND (k1 > @a1 OR (k1 = @a1 AND k2 > @a2) ...)`, so the engine seeks
/// on the leading key column. The comparisons are the columns' own (type and collation), the
/// same that `ORDER BY` uses, so pages neither overlap nor skip.
fn after_clause(
    keys: &[(&ColumnInfo, KeyKind)],
    page: &KeyPage,
    first: usize,
) -> Result<(String, Vec<ColumnData<'static>>), StoreError> {
    let Some(after) = &page.after else {
        return Ok((String::new(), Vec::new()));
    };
    let bad = || StoreError::Invalid(format!("{after} is not a key of {}", page.table));
    let parts = ordered_parts(after, &page.keys).ok_or_else(bad)?;
    let mut params = Vec::new();
    let mut refs = Vec::new();
    for ((col, kind), part) in keys.iter().zip(parts) {
        params.push(kind.param(part).ok_or_else(bad)?);
        let p = format!("@P{}", first + refs.len());
        let value = match kind {
            KeyKind::Text => format!("CAST({p} AS varchar(8000))"),
            _ => p,
        };
        refs.push((format!("t.{}", quote(&col.source.name)), value));
    }
    let mut alternatives = Vec::new();
    for i in 0..refs.len() {
        let mut terms: Vec<String> = refs[..i]
            .iter()
            .map(|(c, v)| format!("{c} = {v}"))
            .collect();
        terms.push(format!("{} > {}", refs[i].0, refs[i].1));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    let lead = format!("{} >= {}", refs[0].0, refs[0].1);
    Ok((
        format!("WHERE {lead} AND ({})", alternatives.join(" OR ")),
        params,
    ))
}

fn order_by(keys: &[(&ColumnInfo, KeyKind)]) -> String {
    keys.iter()
        .map(|(c, _)| format!("t.{}", quote(&c.source.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The backfill statement. The RecordID is built exactly as the change trigger builds it (FOR
/// JSON PATH over the key columns under their declared names), so a backfill item coalesces
/// with a trigger's item of the same record. `INSERT ... SELECT ... ORDER BY` assigns the
/// IDENTITY values in that order, so the highest QueueID written holds the page's last key.
/// OUTPUT goes INTO a table variable: SyncQueue has a trigger (the notification), and OUTPUT
/// without INTO is not allowed on a table with an enabled trigger.
pub(super) fn backfill_sql(
    queue: &QueueTable,
    info: &TableInfo,
    keys: &[(&ColumnInfo, KeyKind)],
    after: &str,
) -> String {
    let json = keys
        .iter()
        .map(|(c, _)| format!("t.{q} AS {q}", q = quote(&c.source.name)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SET NOCOUNT ON;
DECLARE @out TABLE (QueueID bigint NOT NULL, RecordID nvarchar(450) NOT NULL);
INSERT INTO {queue} (TableName, RecordID, Operation)
OUTPUT inserted.QueueID, inserted.RecordID INTO @out (QueueID, RecordID)
SELECT TOP (@P1) @P2, (SELECT {json} FOR JSON PATH, WITHOUT_ARRAY_WRAPPER), 'UPDATE'
FROM {table} AS t
{after}
ORDER BY {order};
SELECT COUNT_BIG(*) AS Enqueued,
       (SELECT TOP (1) o.RecordID FROM @out AS o ORDER BY o.QueueID DESC) AS LastRecordID
FROM @out;",
        queue = queue.name(),
        table = info.quoted(),
        order = order_by(keys),
    )
}

pub(super) async fn backfill(
    client: &mut TdsClient,
    queue: &QueueTable,
    info: &TableInfo,
    page: &KeyPage,
) -> Result<Enqueued, StoreError> {
    let keys = key_columns(info, page)?;
    let (after, params) = after_clause(&keys, page, 3)?;
    let mut query = Query::new(backfill_sql(queue, info, &keys, &after));
    query.bind(i64::try_from(page.limit).unwrap_or(i64::MAX));
    query.bind(page.table.clone());
    for p in params {
        query.bind(p);
    }
    let results = all_results(query, client).await?;
    let row = results
        .last()
        .and_then(|set| set.first())
        .ok_or_else(|| StoreError::Transient("backfill returned no count".to_owned()))?;
    let enqueued: i64 = row.try_get(0).sql()?.unwrap_or(0);
    let last: Option<&str> = row.try_get(1).sql()?;
    let last = last
        .map(RecordKey::parse)
        .transpose()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(Enqueued {
        enqueued: u64::try_from(enqueued).unwrap_or(0),
        last,
    })
}

pub(super) async fn read(
    client: &mut TdsClient,
    info: &TableInfo,
    page: &KeyPage,
    columns: &[SourceColumn],
) -> Result<Vec<Row>, StoreError> {
    let keys = key_columns(info, page)?;
    let selected = columns
        .iter()
        .map(|c| select_expr(info.column(&c.name)?).map(|e| (c.name.clone(), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let list = selected
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| format!("{expr} AS [c{i}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let (after, params) = after_clause(&keys, page, 2)?;
    let sql = format!(
        "SELECT TOP (@P1) {list}\nFROM {table} AS t\n{after}\nORDER BY {order};",
        table = info.quoted(),
        order = order_by(&keys),
    );
    let mut query = Query::new(sql);
    query.bind(i64::try_from(page.limit).unwrap_or(i64::MAX));
    for p in params {
        query.bind(p);
    }
    first_result(query, client)
        .await?
        .iter()
        .map(|row| decode_row(row, &selected))
        .collect()
}

pub(super) async fn queue_records(
    client: &mut TdsClient,
    queue: &QueueTable,
    table: &str,
    key_columns: &[String],
    records: &[RecordKey],
    unless_newer_than: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    let ids = records
        .iter()
        .map(|k| {
            trigger_record_id(k, key_columns)
                .ok_or_else(|| StoreError::Invalid(format!("{k} does not name the key columns")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut queued = 0;
    for chunk in ids.chunks(VALUES_ROWS) {
        let values = (0..chunk.len())
            .map(|i| format!("(@P{})", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        // A record with an item still waiting unclaimed gets no second one (it reads the row
        // later anyway), nor one with an item newer than the cutoff; the probe seeks
        // IX_SyncQueue_Record (TableName, RecordID).
        let sql = format!(
            "INSERT INTO {queue} (TableName, RecordID, Operation)\n\
             SELECT @P1, v.RecordID, 'UPDATE'\n\
             FROM (VALUES {values}) AS v (RecordID)\n\
             WHERE NOT EXISTS (SELECT 1 FROM {queue} AS q WITH (INDEX (IX_SyncQueue_Record))\n\
                 WHERE q.TableName = @P1 AND q.RecordID = v.RecordID\n\
                   AND ((q.Status = 'Pending' AND q.ClaimToken IS NULL)\n\
                        OR q.CreatedAt > @P2));",
            queue = queue.name()
        );
        let mut query = Query::new(sql);
        query.bind(table.to_owned());
        // datetime2 against CreatedAt (datetime2(3), UTC); NULL (no cutoff) matches no item.
        query.bind(unless_newer_than.map(|t| t.naive_utc()));
        for id in chunk {
            query.bind(id.clone());
        }
        let done = query.execute(client).await.sql()?;
        queued += done.total();
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlserver::{KeyPart, SqlType};

    fn info() -> TableInfo {
        let col = |name: &str, sql_type: SqlType, type_name: &str| ColumnInfo {
            source: SourceColumn {
                name: name.to_owned(),
                sql_type,
                nullable: false,
                identity: false,
                computed: false,
            },
            type_name: type_name.to_owned(),
            decl: Some(type_name.to_owned()),
        };
        TableInfo {
            schema: "dbo".to_owned(),
            name: "tblTeeth".to_owned(),
            columns: vec![
                col("WorkID", SqlType::Int { bits: 32 }, "int"),
                col(
                    "ToothNo",
                    SqlType::Text {
                        unicode: false,
                        max_chars: Some(4),
                    },
                    "varchar",
                ),
            ],
        }
    }

    #[test]
    fn a_backfill_page_is_one_insert_select_in_key_order_after_the_last_key() {
        let info = info();
        let page = KeyPage {
            table: "tblTeeth".to_owned(),
            keys: vec!["WorkID".to_owned(), "ToothNo".to_owned()],
            after: Some(RecordKey(
                [
                    ("WorkID".to_owned(), KeyPart::Int(5)),
                    ("ToothNo".to_owned(), KeyPart::Text("11".to_owned())),
                ]
                .into_iter()
                .collect(),
            )),
            limit: 1000,
        };
        let keys = key_columns(&info, &page).expect("keys");
        let (after, params) = after_clause(&keys, &page, 3).expect("after");
        assert_eq!(params.len(), 2);
        assert_eq!(
            after,
            "WHERE t.[WorkID] >= @P3 AND ((t.[WorkID] > @P3) OR (t.[WorkID] = @P3 AND t.[ToothNo] > CAST(@P4 AS varchar(8000))))"
        );
        let sql = backfill_sql(&QueueTable::default(), &info, &keys, &after);
        assert!(sql.contains("SELECT TOP (@P1) @P2, (SELECT t.[WorkID] AS [WorkID], t.[ToothNo] AS [ToothNo] FOR JSON PATH, WITHOUT_ARRAY_WRAPPER), 'UPDATE'"), "{sql}");
        assert!(sql.contains("ORDER BY t.[WorkID], t.[ToothNo];"), "{sql}");
        assert!(
            sql.contains("OUTPUT inserted.QueueID, inserted.RecordID INTO @out"),
            "{sql}"
        );
        let first = KeyPage {
            after: None,
            ..page
        };
        assert_eq!(after_clause(&keys, &first, 3).expect("none").0, "");
    }
}
