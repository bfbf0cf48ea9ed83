//! `syncbridge verify` end to end over the SQL Server double and the PostgREST-compatible
//! server: after a sync both sides verify the same; then differences of every kind are
//! injected behind the agent's back (a row missing on either side, an extra row in a
//! clinic-created and in a portal-created table, a changed value in each mapped type:
//! nvarchar, unicode text, date, bit, uuid, NULL, datetime, money, char, datetime2, decimal,
//! datetimeoffset, varbinary, int, and portal-owned columns); verify names each (key and
//! columns); `--fix` repairs each in the direction column ownership gives, and verify then
//! finds both sides equal, row for row.

mod common;

use std::sync::Arc;

use common::*;
use syncbridge::cli::verify::{execute, render, TableVerdict, VerifyArgs, VerifyReport};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::SqlValue;
use syncbridge::Agent;

const NOTE_C: &str = "11111111-2222-4333-8444-555555555555";

fn cli_agent(h: &Harness) -> Agent {
    let key = h.keys.service_role_jwt().to_owned();
    let mut config = config(&h.sql, &h.rest.url(), key, &h.data_dir, &Options::default());
    config.listen_addr = h.addr;
    Agent {
        config,
        store: Arc::new(h.sql.clone()),
        map: TableMap::sample_clinic(),
    }
}

fn seed(h: &Harness) {
    let s = &h.sql;
    for id in 1..=20 {
        s.clinic_write(
            "tblPatients",
            &key("PersonID", id),
            Some(patient(id, &format!("P{id}"))),
        );
    }
    for id in 1..=3 {
        s.clinic_write("tblWork", &key("WorkID", id), Some(work(id, id)));
    }
    for id in 1..=2 {
        s.clinic_write(
            "tblAlignerSets",
            &key("AlignerSetID", id),
            Some(aligner_set(id, 1)),
        );
    }
    for id in 1..=3 {
        s.clinic_write(
            "tblAlignerBatches",
            &key("AlignerBatchID", id),
            Some(batch(id, 1, 10)),
        );
    }
    for uid in [NOTE_A, NOTE_B] {
        s.clinic_write(
            "tblAlignerNotes",
            &note_key(uid),
            Some(note(uid, 1, "Lab", "from the lab")),
        );
    }
}

async fn verify(h: &Harness, fix: bool) -> VerifyReport {
    let args = VerifyArgs {
        fix,
        ..VerifyArgs::default()
    };
    execute(&cli_agent(h), &service_client(h), &args)
        .await
        .expect("verify")
}

fn table<'a>(report: &'a VerifyReport, name: &str) -> &'a TableVerdict {
    report
        .tables
        .iter()
        .find(|t| t.table == name)
        .expect("table in the report")
}

fn differing(t: &TableVerdict) -> Vec<(String, Vec<String>)> {
    t.differing.clone()
}

fn k(column: &str, id: i64) -> String {
    key(column, id).to_json()
}

fn d(column: &str, id: i64, cols: &[&str]) -> (String, Vec<String>) {
    (
        k(column, id),
        cols.iter().map(|c| (*c).to_owned()).collect(),
    )
}

/// Differences made behind the agent's back (it is stopped): on the Supabase side straight in
/// PostgreSQL, on the SQL Server side in the double with the trigger's queue items dropped.
async fn inject(h: &Harness) {
    h.db.client()
        .batch_execute(&format!(
            "DELETE FROM patients WHERE person_id = 20;
             INSERT INTO patients (person_id, patient_name, is_active, patient_guid, date_added)
               VALUES (99, 'stranger', true, gen_random_uuid(), '2026-01-01');
             INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text)
               VALUES ('{NOTE_C}', 1, 'Doctor', 'written in the portal');
             UPDATE patients SET patient_name = 'changed' WHERE person_id = 2;
             UPDATE patients SET date_of_birth = '1991-03-01' WHERE person_id = 3;
             UPDATE patients SET is_active = false WHERE person_id = 4;
             UPDATE patients SET patient_guid = gen_random_uuid() WHERE person_id = 5;
             UPDATE patients SET notes = 'was null' WHERE person_id = 6;
             UPDATE patients SET date_added = '2026-11-25 09:15:30.124' WHERE person_id = 7;
             UPDATE work SET total_required = 1500000.0001 WHERE work_id = 1;
             UPDATE work SET currency = 'USD' WHERE work_id = 2;
             UPDATE work SET addition_time = '2026-11-25 09:20:00.001' WHERE work_id = 3;
             UPDATE aligner_sets SET set_cost = 1250.51 WHERE aligner_set_id = 1;
             UPDATE aligner_sets SET creation_date = '2026-11-25T09:30:00.250+00:00' WHERE aligner_set_id = 2;
             UPDATE aligner_batches SET label_code = '\\xdeadbeee' WHERE aligner_batch_id = 1;
             UPDATE aligner_batches SET batch_sequence = 99 WHERE aligner_batch_id = 2;
             UPDATE aligner_batches SET days = 77 WHERE aligner_batch_id = 3;
             UPDATE aligner_notes SET note_text = 'edited in the portal' WHERE note_uid = '{NOTE_A}';
             UPDATE aligner_notes SET is_read = true WHERE note_uid = '{NOTE_B}';"
        ))
        .await
        .expect("Supabase side changes");
    h.sql.clinic_update(
        "tblPatients",
        &key("PersonID", 8),
        &[("PatientName", SqlValue::Text("سڵاو 👋".to_owned()))],
    );
    h.sql.clear_queue();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_every_kind_of_difference_and_fix_repairs_them() {
    let mut h = Harness::start().await;
    seed(&h);
    h.notify().await;
    h.wait_synced().await;
    let clean = verify(&h, false).await;
    assert!(!clean.differs(), "{}", render(&clean));
    assert_eq!(table(&clean, "tblPatients").sql_rows, 20);
    assert_eq!(table(&clean, "tblPatients").supabase_rows, 20);

    h.stop().await;
    inject(&h).await;
    let found = verify(&h, false).await;
    assert!(found.differs());
    let text = render(&found);
    let patients = table(&found, "tblPatients");
    assert_eq!((patients.sql_rows, patients.supabase_rows), (20, 20));
    assert_eq!(patients.missing_in_supabase, [k("PersonID", 20)], "{text}");
    assert_eq!(
        patients.missing_in_sql_server,
        [k("PersonID", 99)],
        "{text}"
    );
    assert_eq!(
        differing(patients),
        [
            d("PersonID", 2, &["patient_name"]),
            d("PersonID", 3, &["date_of_birth"]),
            d("PersonID", 4, &["is_active"]),
            d("PersonID", 5, &["patient_guid"]),
            d("PersonID", 6, &["notes"]),
            d("PersonID", 7, &["date_added"]),
            d("PersonID", 8, &["patient_name"]),
        ],
        "{text}"
    );
    assert_eq!(
        differing(table(&found, "tblWork")),
        [
            d("WorkID", 1, &["total_required"]),
            d("WorkID", 2, &["currency"]),
            d("WorkID", 3, &["addition_time"]),
        ]
    );
    assert_eq!(
        differing(table(&found, "tblAlignerSets")),
        [
            d("AlignerSetID", 1, &["set_cost"]),
            d("AlignerSetID", 2, &["creation_date"]),
        ]
    );
    assert_eq!(
        differing(table(&found, "tblAlignerBatches")),
        [
            d("AlignerBatchID", 1, &["label_code"]),
            d("AlignerBatchID", 2, &["batch_sequence"]),
            d("AlignerBatchID", 3, &["days"]),
        ]
    );
    let notes = table(&found, "tblAlignerNotes");
    let note = |uid: &str| note_key(uid).to_json();
    assert_eq!(notes.missing_in_sql_server, [note(NOTE_C)]);
    let mut note_diffs = differing(notes);
    note_diffs.sort();
    let mut expected = vec![
        (note(NOTE_A), vec!["note_text".to_owned()]),
        (note(NOTE_B), vec!["is_read".to_owned()]),
    ];
    expected.sort();
    assert_eq!(note_diffs, expected);
    for line in [
        "only in SQL Server: 1",
        "only in Supabase: 1",
        "DIFFERS",
        r#"{"PersonID":2}: patient_name"#,
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }

    let fixed = verify(&h, true).await;
    let repaired = |name: &str| table(&fixed, name).repaired.clone().expect("repaired");
    let p = repaired("tblPatients");
    assert_eq!((p.queued_forward, p.written_back), (9, 0), "{p:?}");
    let b = repaired("tblAlignerBatches");
    assert_eq!(
        (b.queued_forward, b.written_back),
        (2, 1),
        "days: the portal's value wins"
    );
    let n = repaired("tblAlignerNotes");
    assert_eq!(
        (n.queued_forward, n.written_back),
        (1, 2),
        "note C created, note A's text"
    );
    assert_eq!(days(&h.sql, 3), Some(SqlValue::Int(77)));
    assert_eq!(
        note_text(&h.sql, NOTE_A).as_deref(),
        Some("edited in the portal")
    );
    assert_eq!(
        note_text(&h.sql, NOTE_C).as_deref(),
        Some("written in the portal")
    );

    h.launch(&Options::default()).await;
    h.wait_synced().await;
    let after = verify(&h, false).await;
    assert!(!after.differs(), "{}", render(&after));
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}
