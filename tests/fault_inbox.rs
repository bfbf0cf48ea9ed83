//! The inbox's disk full (fault suite): webhooks the inbox cannot keep are
//! answered 503 with a JSON reason (nothing acknowledged that was not kept), and once space
//! returns the retried webhooks are accepted; both sides compared row for row at the end.
//!
//! A real condition, not a hook: the data directory is a small tmpfs (this needs root, as CI
//! and the development machines here have; without it the test says so and does nothing).
//! A read-only file system is not tried: Linux will not remount one read-only while the agent
//! holds its database open for writing, and root ignores file modes.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;
use syncbridge::mapping::TableMap;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte; returns the filler's path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0u8]);
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A note the portal wrote into Supabase, and the webhook record Supabase sends for it.
async fn portal_note(h: &Harness, n: usize) -> (String, Value) {
    let uid = format!("00000000-0000-4000-8000-{n:012}");
    let body = format!("note {n} ").repeat(200);
    h.db.client()
        .batch_execute(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text) VALUES ('{uid}', 1, 'Doctor', '{body}')"
        ))
        .await
        .expect("portal insert");
    let rows = h
        .pg_rows(&format!(
            "SELECT row_to_json(n)::text AS r FROM aligner_notes n WHERE note_uid = '{uid}'"
        ))
        .await;
    let record: Value =
        serde_json::from_str(rows[0]["r"].as_str().expect("json text")).expect("record");
    (uid, record)
}

async fn send(h: &Harness, record: &Value) -> (u16, Value) {
    let (status, body) = h
        .webhook(
            &hook("INSERT", "aligner_notes", Some(record.clone()), None),
            None,
        )
        .await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_disk_answers_503_and_recovers_when_space_returns() {
    let Some(disk) = Tmpfs::mount("2m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data_dir: &'static str = Box::leak(disk.path().display().to_string().into_boxed_str());
    let h = Harness::start_with(Options {
        settings: vec![("SYNC_DATA_DIR", data_dir)],
        ..Options::default()
    })
    .await;
    // The parents reach Supabase the ordinary way, so both sides start equal.
    seed_parents(&h.sql);
    h.notify().await;
    h.wait_synced().await;
    let (uid, record) = portal_note(&h, 0).await;
    assert_eq!(send(&h, &record).await.0, 200);
    h.wait_store("first note applied", |s| note_text(s, &uid).is_some())
        .await;

    // Disk full: every webhook is either kept (200) or refused with a reason (503).
    let filler = disk.fill();
    let mut refused = Vec::new();
    let mut kept = 0;
    for n in 1..=200 {
        let (_, record) = portal_note(&h, n).await;
        let (status, body) = send(&h, &record).await;
        match status {
            200 => kept += 1,
            503 => {
                assert!(
                    body["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains("could not be stored"),
                    "{body}"
                );
                refused.push(record);
            }
            other => panic!("{other}: {body}"),
        }
        if refused.len() >= 5 {
            break;
        }
    }
    println!(
        "inbox full: {kept} kept before the first refusals, {} refused",
        refused.len()
    );
    assert!(!refused.is_empty(), "a full disk refused nothing");

    // Space returns; the refused webhooks, sent again (as a retry or catch-up would), are kept.
    std::fs::remove_file(filler).expect("free the disk");
    for record in &refused {
        assert_eq!(
            send(&h, record).await.0,
            200,
            "accepted once space returned"
        );
    }

    let total = 1 + kept + refused.len();
    h.wait_store("every note applied", |s| {
        s.rows("tblAlignerNotes").len() == total
    })
    .await;
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await >= total);
}
