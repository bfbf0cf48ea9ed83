//! The sample clinic schema of `sql/sqlserver/01_sample_schema.sql`, as the double's tables.

use super::MemoryStore;
use crate::sqlserver::SourceColumn;
use crate::sqlserver::SqlType::{self, *};

fn col(name: &str, sql_type: SqlType, nullable: bool) -> SourceColumn {
    SourceColumn {
        name: name.to_owned(),
        sql_type,
        nullable,
        identity: false,
        computed: false,
    }
}

const INT: SqlType = Int { bits: 32 };

/// nvarchar(n), or nvarchar(max) for `None`.
fn text(max_chars: Option<u32>) -> SqlType {
    Text {
        unicode: true,
        max_chars,
    }
}

fn patients() -> Vec<SourceColumn> {
    vec![
        col("PersonID", INT, false),
        col("PatientName", text(Some(200)), false),
        col("Phone", text(Some(50)), true),
        col("DateOfBirth", Date, true),
        col("IsActive", Bit, false),
        col("PatientGUID", Guid, false),
        col("Notes", text(None), true),
        col("DateAdded", DateTime, false),
    ]
}

fn work() -> Vec<SourceColumn> {
    let char3 = Text {
        unicode: false,
        max_chars: Some(3),
    };
    vec![
        col("WorkID", INT, false),
        col("PersonID", INT, false),
        col("TypeOfWork", text(Some(100)), false),
        col("TotalRequired", Money, true),
        col("Currency", char3, false),
        col("StartDate", Date, true),
        col("Finished", Bit, false),
        col("AdditionTime", DateTime2 { scale: 3 }, false),
    ]
}

fn aligner_sets() -> Vec<SourceColumn> {
    let cost = Decimal {
        precision: 12,
        scale: 2,
    };
    vec![
        col("AlignerSetID", INT, false),
        col("WorkID", INT, false),
        col("SetSequence", INT, false),
        col("UpperAlignersCount", INT, false),
        col("LowerAlignersCount", INT, false),
        col("SetCost", cost, true),
        col("IsActive", Bit, false),
        col("CreationDate", DateTimeOffset { scale: 3 }, false),
    ]
}

fn aligner_batches() -> Vec<SourceColumn> {
    let label = Binary {
        max_bytes: Some(64),
    };
    vec![
        col("AlignerBatchID", INT, false),
        col("AlignerSetID", INT, false),
        col("BatchSequence", INT, false),
        col("UpperAlignerCount", INT, false),
        col("LowerAlignerCount", INT, false),
        col("Days", INT, true),
        col("ManufactureDate", Date, true),
        col("DeliveredToPatientDate", Date, true),
        col("Notes", text(Some(500)), true),
        col("LabelCode", label, true),
    ]
}

fn aligner_notes() -> Vec<SourceColumn> {
    let mut note_id = col("NoteID", INT, false);
    note_id.identity = true;
    vec![
        note_id,
        col("NoteUID", Guid, false),
        col("AlignerSetID", INT, false),
        col("NoteType", text(Some(20)), false),
        col("NoteText", text(None), false),
        col("CreatedAt", DateTime2 { scale: 3 }, false),
        col("IsEdited", Bit, false),
        col("EditedAt", DateTime2 { scale: 3 }, true),
        col("IsRead", Bit, false),
    ]
}

impl MemoryStore {
    /// The five tables of `sql/sqlserver/01_sample_schema.sql`.
    pub fn sample_clinic() -> Self {
        let store = Self::new();
        store.create_table("tblPatients", patients());
        store.create_table("tblWork", work());
        store.create_table("tblAlignerSets", aligner_sets());
        store.create_table("tblAlignerBatches", aligner_batches());
        store.create_table("tblAlignerNotes", aligner_notes());
        store
    }
}
