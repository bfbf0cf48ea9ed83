//! Catch-up's paging and resume rules against the in-memory Supabase double.

use serde_json::{json, Map, Value};

use super::*;
use crate::local_db::LocalDb;
use crate::supabase::memory::{MemorySupabase, RequestKind};

fn note(n: u128, updated_at: &str) -> Map<String, Value> {
    let uid = uuid::Uuid::from_u128(n).hyphenated().to_string();
    json!({"note_uid": uid, "aligner_set_id": 1, "note_type": "Doctor", "note_text": format!("note {n}"),
           "created_at": "2026-11-25T10:00:00.000", "is_edited": false, "edited_at": null,
           "is_read": false, "updated_at": updated_at})
    .as_object()
    .cloned()
    .expect("object")
}

struct Fixture {
    supabase: MemorySupabase,
    inbox: Inbox,
    map: ResolvedMap,
    drift: DriftLog,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = LocalDb::open(dir.path()).expect("local database");
    Fixture {
        supabase: MemorySupabase::new(),
        inbox: Inbox::open(db).expect("inbox"),
        map: ResolvedMap::sample_clinic().await,
        drift: DriftLog::default(),
        _dir: dir,
    }
}

impl Fixture {
    async fn run(&self, page: usize) -> Result<CatchupReport, CatchupError> {
        run(&self.supabase, &self.map, &self.inbox, &self.drift, page).await
    }

    fn note_pages(&self) -> usize {
        self.supabase
            .requests()
            .iter()
            .filter(|r| r.kind == RequestKind::Select && r.table == "aligner_notes")
            .count()
    }

    async fn stored_notes(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .inbox
            .due(10_000)
            .await
            .expect("due")
            .into_iter()
            .map(|e| e.event.record_key)
            .collect();
        keys.sort();
        keys
    }
}

#[tokio::test]
async fn pages_cover_every_row_once_when_versions_tie_across_a_page_boundary() {
    let f = fixture().await;
    // Every row has the same version: only the key tells the pages apart.
    f.supabase.insert_rows(
        "aligner_notes",
        (1..=23).rev().map(|n| note(n, "2026-11-25T10:00:00+00:00")),
    );
    let report = f.run(5).await.expect("catch-up");
    assert_eq!((report.rows_fetched, report.events_stored), (23, 23));
    assert_eq!(f.note_pages(), 5, "pages of 5, 5, 5, 5 and 3");
    let keys = f.stored_notes().await;
    keys.windows(2)
        .for_each(|w| assert_ne!(w[0], w[1], "a row stored twice"));
    assert_eq!(keys.len(), 23);
}

#[tokio::test]
async fn a_last_full_page_is_followed_by_one_empty_page() {
    let f = fixture().await;
    f.supabase.insert_rows(
        "aligner_notes",
        (1..=10).map(|n| note(n, "2026-11-25T10:00:00+00:00")),
    );
    let report = f.run(5).await.expect("catch-up");
    assert_eq!(report.events_stored, 10);
    assert_eq!(f.note_pages(), 3);
}

#[tokio::test]
async fn a_second_run_resumes_at_the_watermark_less_the_overlap() {
    let f = fixture().await;
    f.supabase.insert_rows(
        "aligner_notes",
        [
            note(1, "2026-11-25T09:00:00+00:00"),
            note(2, "2026-11-25T09:00:00+00:00"),
            note(3, "2026-11-25T10:00:00+00:00"),
            note(4, "2026-11-25T13:00:00+03:00"),
        ],
    );
    f.run(1000).await.expect("first run");
    let watermarks = f.inbox.watermarks().await.expect("watermarks");
    let (_, mark) = watermarks
        .iter()
        .find(|(t, _)| t == "aligner_notes")
        .expect("notes watermark");
    // The last row in (version, key) order: note 4, at the same instant as note 3.
    assert_eq!(mark.version, "2026-11-25T13:00:00+03:00");
    assert!(
        mark.key.contains(&uuid::Uuid::from_u128(4).to_string()),
        "{mark:?}"
    );

    f.supabase
        .insert_rows("aligner_notes", [note(5, "2026-11-25T10:02:00+00:00")]);
    let report = f.run(1000).await.expect("second run");
    // 10:00 less five minutes: notes 3 and 4 again (the overlap), the new note 5, not the 9:00
    // ones.
    assert_eq!(report.rows_fetched, 3);
}

#[tokio::test]
async fn rows_that_cannot_be_applied_are_counted_and_not_stored() {
    let f = fixture().await;
    let mut bad = note(2, "2026-11-25T10:00:00+00:00");
    bad["aligner_set_id"] = json!("one");
    f.supabase
        .insert_rows("aligner_notes", [note(1, "2026-11-25T10:00:00+00:00"), bad]);
    let report = f.run(1000).await.expect("catch-up");
    assert_eq!((report.events_stored, report.rows_rejected), (1, 1));
}

impl Fixture {
    async fn notes_watermark(&self) -> Option<Watermark> {
        let marks = self.inbox.watermarks().await.expect("watermarks");
        marks
            .into_iter()
            .find(|(t, _)| t == "aligner_notes")
            .map(|(_, w)| w)
    }

    /// Widens (or narrows) `tblAlignerNotes.NoteType`, as a corrected table map would.
    fn set_note_type_chars(&mut self, max_chars: Option<u32>) {
        let notes = self
            .map
            .tables
            .iter_mut()
            .find(|t| t.target == "aligner_notes")
            .expect("notes");
        let col = notes
            .columns
            .iter_mut()
            .find(|c| c.target == "note_type")
            .expect("note_type");
        col.source.sql_type = crate::sqlserver::SqlType::Text {
            unicode: true,
            max_chars,
        };
    }
}

#[tokio::test]
async fn the_watermark_never_passes_a_row_that_could_not_be_applied() {
    let mut f = fixture().await;
    let mut long = note(2, "2026-11-25T10:00:00+00:00");
    long["note_type"] = json!("a note type far longer than twenty characters");
    f.supabase.insert_rows(
        "aligner_notes",
        [
            note(1, "2026-11-25T09:00:00+00:00"),
            long,
            note(3, "2026-11-25T11:00:00+00:00"),
        ],
    );
    let report = f.run(2).await.expect("catch-up");
    assert_eq!((report.events_stored, report.rows_rejected), (2, 1));
    let mark = f.notes_watermark().await.expect("a watermark");
    assert_eq!(
        mark.version, "2026-11-25T09:00:00+00:00",
        "held just before the rejected row, across pages"
    );

    // Read again next time, and stored once the map can hold it; only then does it move on.
    let report = f.run(2).await.expect("again");
    assert_eq!(report.rows_rejected, 1);
    f.set_note_type_chars(None);
    let report = f.run(2).await.expect("after the fix");
    assert_eq!(report.rows_rejected, 0);
    let stored = f.stored_notes().await;
    assert!(
        stored
            .iter()
            .any(|k| k.contains(&uuid::Uuid::from_u128(2).to_string())),
        "{stored:?}"
    );
    let mark = f.notes_watermark().await.expect("a watermark");
    assert_eq!(mark.version, "2026-11-25T11:00:00+00:00");
}

#[tokio::test]
async fn a_rejected_first_row_stores_no_watermark() {
    let f = fixture().await;
    let mut bad = note(1, "2026-11-25T09:00:00+00:00");
    bad["aligner_set_id"] = json!("one");
    f.supabase
        .insert_rows("aligner_notes", [bad, note(2, "2026-11-25T10:00:00+00:00")]);
    let report = f.run(1000).await.expect("catch-up");
    assert_eq!((report.events_stored, report.rows_rejected), (1, 1));
    assert_eq!(f.notes_watermark().await, None);
}

#[tokio::test]
async fn columns_the_map_does_not_know_are_ignored_and_reported() {
    let f = fixture().await;
    let mut row = note(1, "2026-11-25T09:00:00+00:00");
    row.insert("colour".into(), json!("blue"));
    f.supabase.insert_rows("aligner_notes", [row]);
    let report = f.run(1000).await.expect("catch-up");
    assert_eq!((report.events_stored, report.rows_rejected), (1, 0));
    let drift = f.drift.snapshot();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(
        (drift[0].table.as_str(), drift[0].column.as_str()),
        ("aligner_notes", "colour")
    );
}

#[tokio::test]
async fn a_failed_page_fails_the_run_and_keeps_the_watermark() {
    let f = fixture().await;
    f.supabase.set_failing(Some(503));
    let err = f.run(1000).await.expect_err("Supabase down");
    assert!(
        matches!(&err, CatchupError::Postgrest { table, .. } if table == "aligner_batches"),
        "{err}"
    );
    assert!(f.inbox.watermarks().await.expect("watermarks").is_empty());
}
