//! The benchmark's burst: families of four rows (patient → work → aligner set → aligner
//! batch, the parent-first order of the table map), some already on both sides, and one burst
//! of changes over them — inserts of new families, updates of existing ones, deletes of
//! existing ones (children first, as the clinic's application would) — each change touching a
//! distinct record, so changes = rows and the ceiling sends the same rows.

use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::memory::MemoryStore;
use syncbridge::sqlserver::{RecordKey, Row, SqlValue};

use crate::fixtures;

/// The four tables, parents first, with their key columns.
pub const TABLES: [(&str, &str); 4] = [
    ("tblPatients", "PersonID"),
    ("tblWork", "WorkID"),
    ("tblAlignerSets", "AlignerSetID"),
    ("tblAlignerBatches", "AlignerBatchID"),
];

/// One change: table index into [`TABLES`], key, the row after it (`None`: deleted).
#[derive(Clone)]
pub struct Change {
    pub table: usize,
    pub key: RecordKey,
    pub row: Option<Row>,
}

pub struct Burst {
    /// Rows on both sides before the burst (parents first).
    pub existing: Vec<Change>,
    /// The burst, in the order the clinic writes it.
    pub changes: Vec<Change>,
    /// Rows each table holds after the burst.
    pub rows_per_table: i64,
}

/// The table map the benchmark runs with: the sample clinic's, as shipped (`aligner_batches.Days`
/// and the notes' text portal-owned, so those tables take the versioned push,
/// `rpc/syncbridge_push`, one request per batch).
pub fn bench_map() -> TableMap {
    TableMap::sample_clinic()
}

fn long_text(id: i64) -> SqlValue {
    SqlValue::Text(format!(
        "ملاحظة {id}: upper and lower arches, attachments on 13-23, review in six weeks; patient asked about whitening. {}",
        "x".repeat((id % 7 * 20) as usize)
    ))
}

/// The four rows of family `id`, as of `version` (0: as created).
fn family(id: i64, version: i64) -> [Change; 4] {
    let mut p = fixtures::patient(id, &format!("مریض {id} — Patient {id} v{version}"));
    p.insert("Notes".to_owned(), long_text(id + version));
    let mut w = fixtures::work(id, id);
    w.insert("Finished".to_owned(), SqlValue::Bit(version % 2 == 1));
    let mut s = fixtures::aligner_set(id, id);
    s.insert("UpperAlignersCount".to_owned(), SqlValue::Int(20 + version));
    let b = fixtures::batch(id, id, 14 + version);
    let rows = [p, w, s, b];
    let mut i = 0;
    rows.map(|row| {
        let change = Change {
            table: i,
            key: fixtures::key(TABLES[i].1, id),
            row: Some(row),
        };
        i += 1;
        change
    })
}

/// `changes` changes (rounded down to whole families): 70 % inserts, 20 % updates, 10 %
/// deletes, interleaved; the updated and deleted families exist beforehand.
pub fn burst(changes: usize) -> Burst {
    let families = (changes / 4) as i64;
    let (inserts, updates) = (families * 7 / 10, families * 2 / 10);
    let deletes = families - inserts - updates;
    let existing_families = updates + deletes;
    let existing = (1..=existing_families)
        .flat_map(|id| family(id, 0))
        .collect();
    let mut out = Vec::with_capacity(changes);
    for k in 0..inserts.max(updates).max(deletes) {
        if k < inserts {
            out.extend(family(existing_families + 1 + k, 0));
        }
        if k < updates {
            out.extend(family(1 + k, 1));
        }
        if k < deletes {
            let mut gone = family(updates + 1 + k, 0);
            gone.reverse();
            out.extend(gone.into_iter().map(|c| Change { row: None, ..c }));
        }
    }
    Burst {
        existing,
        changes: out,
        rows_per_table: existing_families + inserts - deletes,
    }
}

/// Writes `changes` into the double as the clinic would (its triggers queue them).
pub fn write(store: &MemoryStore, changes: &[Change]) {
    for c in changes {
        store.clinic_write(TABLES[c.table].0, &c.key, c.row.clone());
    }
}
