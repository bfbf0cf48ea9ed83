//! The process fault suite (issue 6, "Prove it"): the real binary over the out-of-process SQL
//! Server double and the PostgREST test server, killed, stopped, cut off and slowed down; each
//! test ends with both sides compared row for row and nothing left in between.
#![cfg(unix)]

mod common;

use common::process::Sides;
use common::*;
use syncbridge::mapping::TableMap;

/// Five patients with a work row each, numbered from `first`.
fn clinic_changes(sides: &Sides, first: i64) {
    for id in first..first + 5 {
        sides.sql().clinic_write(
            "tblPatients",
            &key("PersonID", id),
            Some(patient(id, "new")),
        );
        sides
            .sql()
            .clinic_write("tblWork", &key("WorkID", id), Some(work(id, id)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_over_the_test_double_syncs_both_ways() {
    let sides = Sides::start().await;
    seed_parents(sides.sql());
    let agent = sides.agent("agent-a", &[]).await;
    clinic_changes(&sides, 10);
    agent.notify(&sides.http).await;
    wait_for("the parents in Supabase", || async {
        sides.sql().queue().iter().all(|q| q.status == "Synced")
    })
    .await;
    let body = sides.portal_note(NOTE_A, "from the portal").await;
    assert_eq!(agent.webhook(&sides.http, &body).await, 200);
    wait_for("the note applied", || async {
        note_text(sides.sql(), NOTE_A).is_some()
    })
    .await;
    assert_eq!(
        note_text(sides.sql(), NOTE_A).as_deref(),
        Some("from the portal")
    );
    assert_nothing_lost(&sides, &TableMap::sample_clinic()).await;
}
