//! What a process test does to both sides and how it ends: clinic writes and portal notes
//! with their webhooks, the queue watched, and the final comparison with its counts.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{AgentProcess, Sides};
use crate::common::{
    assert_nothing_lost, assert_sides_equal, hook, key, patient, wait_for, work, DEADLINE,
};

impl Sides {
    /// `n` new patients with a work row each, numbered from `first`, as the clinic writes them
    /// (two queue items each).
    pub fn clinic_changes(&self, first: i64, n: i64) {
        for id in first..first + n {
            let sql = self.sql();
            sql.clinic_write(
                "tblPatients",
                &key("PersonID", id),
                Some(patient(id, "new")),
            );
            sql.clinic_write("tblWork", &key("WorkID", id), Some(work(id, id)));
        }
    }

    /// Waits until every queue item is `Synced`; on timeout names the others and shows the
    /// consoles of `agents`.
    pub async fn wait_synced(&self, agents: &[&AgentProcess]) {
        let deadline = Instant::now() + DEADLINE;
        let mut recheck = tokio::time::interval(Duration::from_millis(10));
        loop {
            let queue = self.sql().queue();
            if queue.iter().all(|q| q.status == "Synced") {
                return;
            }
            if Instant::now() > deadline {
                let left: Vec<_> = queue.iter().filter(|q| q.status != "Synced").collect();
                let consoles: Vec<String> = agents.iter().map(|a| a.console()).collect();
                panic!(
                    "timed out waiting for every item Synced: {left:?}\n{}",
                    consoles.join("\n----\n")
                );
            }
            recheck.tick().await;
        }
    }

    /// Items in the queue claimed and not settled (`Pending` under a claim).
    pub fn in_flight(&self) -> usize {
        self.sql()
            .queue()
            .iter()
            .filter(|q| q.status == "Pending" && q.claim.is_some())
            .count()
    }

    /// The end of every process fault test: nothing lost, none left in between, both sides
    /// equal row for row; prints the counts (`FAULT <name>: ...`) for the fault table.
    pub async fn nothing_lost(&self, fault: &str, resent: usize) {
        let map = syncbridge::mapping::TableMap::sample_clinic();
        assert_nothing_lost(self, &map).await;
        let queue = self.sql().queue();
        let records: std::collections::BTreeSet<_> =
            queue.iter().map(|q| (&q.table, &q.record_id)).collect();
        let equal = assert_sides_equal(self, &map).await;
        println!(
            "FAULT {fault}: changes made {} ({} records), rows equal on both sides {equal}, lost 0, duplicated 0, in flight at the fault and sent again {resent}",
            queue.len(),
            records.len()
        );
    }

    /// The end of a fault test in which attempts may be spent: every item `Synced` (none
    /// `Failed`, none left in between), both sides equal row for row; prints the counts.
    pub async fn nothing_failed(&self, fault: &str, resent: usize) {
        let store = self.sql();
        wait_for("queue drained", || async {
            store.queue().iter().all(|q| q.status != "Pending")
        })
        .await;
        let queue = store.queue();
        let failed: Vec<_> = queue.iter().filter(|q| q.status != "Synced").collect();
        assert!(failed.is_empty(), "not synced: {failed:?}");
        let map = syncbridge::mapping::TableMap::sample_clinic();
        let equal = assert_sides_equal(self, &map).await;
        let spent: u32 = queue.iter().map(|q| q.attempts).sum();
        println!(
            "FAULT {fault}: changes made {}, rows equal on both sides {equal}, lost 0, duplicated 0, in flight at the fault and sent again {resent}, attempts spent {spent}",
            queue.len()
        );
    }

    /// The portal's edit of note `uid`, and the webhook body Supabase sends for it.
    pub async fn portal_edit_note(&self, uid: &str, body: &str) -> Value {
        let read = || async {
            self.db
                .query_json(&format!(
                    "SELECT * FROM aligner_notes WHERE note_uid = '{uid}'"
                ))
                .await
                .expect("the note")
                .first()
                .cloned()
        };
        let old = read().await;
        self.db
            .client()
            .execute(
                "UPDATE aligner_notes SET note_text = $2, is_edited = true WHERE note_uid = $1::text::uuid",
                &[&uid, &body],
            )
            .await
            .expect("portal edit");
        hook("UPDATE", "aligner_notes", read().await, old)
    }

    /// A note the portal writes in Supabase (set 1 must be there), and the webhook body
    /// Supabase sends for it.
    pub async fn portal_note(&self, uid: &str, body: &str) -> Value {
        self.db
            .client()
            .execute(
                "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text)
                 VALUES ($1::text::uuid, 1, 'Doctor', $2)",
                &[&uid, &body],
            )
            .await
            .expect("portal note");
        let rows = self
            .db
            .query_json(&format!(
                "SELECT * FROM aligner_notes WHERE note_uid = '{uid}'"
            ))
            .await
            .expect("the note");
        hook("INSERT", "aligner_notes", rows.first().cloned(), None)
    }
}
