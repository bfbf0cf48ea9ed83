//! The sample clinic schema of `sql/sqlserver/01_sample_schema.sql`, as the double's tables.

use super::MemoryStore;
use crate::sqlserver::SourceColumn;
use crate::sqlserver::SqlType;

fn col(name: &str, sql_type: SqlType, nullable: bool) -> SourceColumn {
    SourceColumn {
        name: name.to_owned(),
        sql_type,
        nullable,
        identity: false,
        computed: false,
    }
}

impl MemoryStore {
    /// The five tables of `sql/sqlserver/01_sample_schema.sql`.
    pub fn sample_clinic() -> Self {
        use SqlType::*;
        let int = Int { bits: 32 };
        let text = |n| Text {
            unicode: true,
            max_chars: n,
        };
        let store = Self::new();
        store.create_table(
            "tblPatients",
            vec![
                col("PersonID", int.clone(), false),
                col("PatientName", text(Some(200)), false),
                col("Phone", text(Some(50)), true),
                col("DateOfBirth", Date, true),
                col("IsActive", Bit, false),
                col("PatientGUID", Guid, false),
                col("Notes", text(None), true),
                col("DateAdded", DateTime, false),
            ],
        );
        store.create_table(
            "tblWork",
            vec![
                col("WorkID", int.clone(), false),
                col("PersonID", int.clone(), false),
                col("TypeOfWork", text(Some(100)), false),
                col("TotalRequired", Money, true),
                col(
                    "Currency",
                    Text {
                        unicode: false,
                        max_chars: Some(3),
                    },
                    false,
                ),
                col("StartDate", Date, true),
                col("Finished", Bit, false),
                col("AdditionTime", DateTime2 { scale: 3 }, false),
            ],
        );
        store.create_table(
            "tblAlignerSets",
            vec![
                col("AlignerSetID", int.clone(), false),
                col("WorkID", int.clone(), false),
                col("SetSequence", int.clone(), false),
                col("UpperAlignersCount", int.clone(), false),
                col("LowerAlignersCount", int.clone(), false),
                col(
                    "SetCost",
                    Decimal {
                        precision: 12,
                        scale: 2,
                    },
                    true,
                ),
                col("IsActive", Bit, false),
                col("CreationDate", DateTimeOffset { scale: 3 }, false),
            ],
        );
        store.create_table(
            "tblAlignerBatches",
            vec![
                col("AlignerBatchID", int.clone(), false),
                col("AlignerSetID", int.clone(), false),
                col("BatchSequence", int.clone(), false),
                col("UpperAlignerCount", int.clone(), false),
                col("LowerAlignerCount", int.clone(), false),
                col("Days", int.clone(), true),
                col("ManufactureDate", Date, true),
                col("DeliveredToPatientDate", Date, true),
                col("Notes", text(Some(500)), true),
                col(
                    "LabelCode",
                    Binary {
                        max_bytes: Some(64),
                    },
                    true,
                ),
            ],
        );
        let mut note_id = col("NoteID", int.clone(), false);
        note_id.identity = true;
        store.create_table(
            "tblAlignerNotes",
            vec![
                note_id,
                col("NoteUID", Guid, false),
                col("AlignerSetID", int, false),
                col("NoteType", text(Some(20)), false),
                col("NoteText", text(None), false),
                col("CreatedAt", DateTime2 { scale: 3 }, false),
                col("IsEdited", Bit, false),
                col("EditedAt", DateTime2 { scale: 3 }, true),
                col("IsRead", Bit, false),
            ],
        );
        store
    }
}
