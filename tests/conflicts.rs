//! Issue 6.10 (and 6.3, 6.4): the same note edited on both sides, in every order and
//! interleaving, over real PostgreSQL (with `sql/supabase/03_versions.sql`), real webhooks (the
//! relay) and the SQL Server double. The rule (README "Who wins"): for a portal-owned column the
//! newest edit wins, by UTC time (the clinic's queue `CreatedAt`, the portal's per-column
//! stamp); every test ends with both sides equal and holding the winner the rule names.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::SqlValue;
use syncbridge_testkit::WebhookRelay;

/// A note created at the clinic and synced, with the portal's webhooks installed (the agent's
/// own writes skipped) and delivered by the relay.
async fn synced_note(h: &Harness) -> WebhookRelay {
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerNotes",
        &note_key(NOTE_A),
        Some(note(NOTE_A, 1, "Doctor", "first")),
    );
    h.notify().await;
    h.wait_synced().await;
    h.db.client()
        .execute(
            "SELECT public.syncbridge_install_webhooks($1, $2, true)",
            &[&h.url("/api/sync/webhook"), &WEBHOOK_SECRET],
        )
        .await
        .expect("install webhooks");
    WebhookRelay::start(h.db.url()).await.expect("relay")
}

/// The clinic edits the note's text (queued now, not yet seen by the agent).
async fn clinic_edits(body: &str, h: &Harness) {
    wait_clock_past(h).await;
    h.sql.clinic_update(
        "tblAlignerNotes",
        &note_key(NOTE_A),
        &[("NoteText", text(body))],
    );
}

/// The portal edits the note's text; returns the webhook payload the relay handled for it.
async fn portal_edits(body: &str, h: &Harness, relay: &WebhookRelay) -> Value {
    wait_clock_past(h).await;
    let before = relay.deliveries().len();
    h.db.client()
        .execute(
            &format!("UPDATE aligner_notes SET note_text = $1 WHERE note_uid = '{NOTE_A}'"),
            &[&body],
        )
        .await
        .expect("portal edit");
    let delivered = relay
        .wait_for_deliveries(before + 1, DEADLINE)
        .await
        .expect("the webhook fired");
    delivered[before].payload.clone()
}

/// Waits until the clock has moved past every time either side stamped so far by more than a
/// millisecond (the clinic's queue keeps milliseconds), so that "later" means later.
async fn wait_clock_past(h: &Harness) {
    let newest: Option<DateTime<Utc>> = h.sql.queue().iter().map(|q| q.created_at).max();
    let stamped = h
        .pg_rows("SELECT max(updated_at) AS at FROM aligner_notes")
        .await;
    let portal = stamped[0]["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let after = newest.max(portal).unwrap_or_else(Utc::now) + chrono::Duration::milliseconds(2);
    wait_for("the clock moved on", || async move { Utc::now() > after }).await;
}

/// Holds webhooks back: the next portal edit's webhook is dropped (and returned by
/// [`portal_edits`] for the test to deliver when it chooses).
fn hold_webhooks(relay: &WebhookRelay) {
    relay.set_dropping(true);
}

/// Both sides quiet, equal, and holding `winner` as the note's text.
async fn both_hold(h: &Harness, winner: &str) {
    h.notify().await;
    h.wait_synced().await;
    h.wait_inbox_empty().await;
    h.wait_store("SQL Server holds the winner", |s| {
        note_text(s, NOTE_A).as_deref() == Some(winner)
    })
    .await;
    let pg = h
        .pg_rows(&format!(
            "SELECT note_text FROM aligner_notes WHERE note_uid = '{NOTE_A}'"
        ))
        .await;
    assert_eq!(
        pg,
        vec![json!({"note_text": winner})],
        "Supabase holds the winner"
    );
    assert!(assert_sides_equal(h, &TableMap::sample_clinic()).await > 0);
    let status = h.status().await;
    assert_eq!(status["reverse"]["inbox"]["dead"], json!(0), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinic_then_portal_the_portal_wins() {
    let h = Harness::start().await;
    let relay = synced_note(&h).await;
    clinic_edits("clinic", &h).await;
    h.notify().await;
    h.wait_synced().await;
    portal_edits("portal", &h, &relay).await;
    both_hold(&h, "portal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_then_clinic_the_clinic_wins() {
    let h = Harness::start().await;
    let relay = synced_note(&h).await;
    portal_edits("portal", &h, &relay).await;
    h.wait_store("portal edit applied", |s| {
        note_text(s, NOTE_A).as_deref() == Some("portal")
    })
    .await;
    clinic_edits("clinic", &h).await;
    both_hold(&h, "clinic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_clinic_then_portal_webhook_first_the_portal_wins() {
    let h = Harness::start().await;
    let relay = synced_note(&h).await;
    hold_webhooks(&relay);
    clinic_edits("clinic", &h).await;
    let webhook = portal_edits("portal", &h, &relay).await;
    h.webhook_accepted(&webhook).await;
    both_hold(&h, "portal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_clinic_then_portal_forward_batch_first_the_portal_wins() {
    let h = Harness::start().await;
    let relay = synced_note(&h).await;
    hold_webhooks(&relay);
    clinic_edits("clinic", &h).await;
    let webhook = portal_edits("portal", &h, &relay).await;
    // The clinic's older edit is refused by Supabase and the portal's is written back.
    h.notify().await;
    h.wait_synced().await;
    h.wait_store("portal edit written back", |s| {
        note_text(s, NOTE_A).as_deref() == Some("portal")
    })
    .await;
    h.webhook_accepted(&webhook).await;
    both_hold(&h, "portal").await;
    let status = h.status().await;
    assert_eq!(
        status["forward"]["state"]["conflicts_portal_won"],
        json!(1),
        "counted as a conflict: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_portal_then_clinic_webhook_first_the_clinic_wins() {
    let h = Harness::start().await;
    let relay = synced_note(&h).await;
    hold_webhooks(&relay);
    let webhook = portal_edits("portal", &h, &relay).await;
    clinic_edits("clinic", &h).await;
    // Held back by the newer queued clinic edit, without spending an attempt.
    h.webhook_accepted(&webhook).await;
    both_hold(&h, "clinic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_portal_then_clinic_forward_batch_first_the_clinic_wins() {
    let h = Harness::start().await;
    let relay = synced_note(&h).await;
    hold_webhooks(&relay);
    let webhook = portal_edits("portal", &h, &relay).await;
    clinic_edits("clinic", &h).await;
    h.notify().await;
    h.wait_synced().await;
    h.webhook_accepted(&webhook).await;
    both_hold(&h, "clinic").await;
}

/// 6.3: catch-up (no old_record) after a restart never reverts a clinic edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_a_restart_keeps_the_clinic_edit() {
    let o = Options::default();
    let mut h = Harness::start_with(o.clone()).await;
    let _relay = synced_note(&h).await;
    h.stop().await;
    clinic_edits("clinic while the agent was down", &h).await;
    h.launch(&o).await;
    h.trigger("postgres-to-sql").await;
    both_hold(&h, "clinic while the agent was down").await;
}

/// A portal edit made while the agent was down, newer than a clinic edit made meanwhile,
/// arrives by catch-up and wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_a_restart_brings_a_newer_portal_edit() {
    let o = Options::default();
    let mut h = Harness::start_with(o.clone()).await;
    let relay = synced_note(&h).await;
    h.stop().await;
    clinic_edits("clinic", &h).await;
    // The agent is down: the webhook is lost.
    portal_edits("portal while the agent was down", &h, &relay).await;
    h.launch(&o).await;
    both_hold(&h, "portal while the agent was down").await;
}

/// 6.4: an UPDATE of the note's text that died (SQL Server refused it) and is revived after a
/// later event of the same note (is_edited) was applied keeps the doctor's correction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revived_dead_update_keeps_the_correction() {
    let h = Harness::start_with(Options {
        max_attempts: 1,
        ..Options::default()
    })
    .await;
    let relay = synced_note(&h).await;
    h.sql.reject_next_applies(1);
    portal_edits("the doctor's correction", &h, &relay).await;
    h.wait_status("the text update died", |s| {
        s["reverse"]["inbox"]["dead"] == json!(1)
    })
    .await;
    wait_clock_past(&h).await;
    h.db.client()
        .execute(
            &format!("UPDATE aligner_notes SET is_edited = true WHERE note_uid = '{NOTE_A}'"),
            &[],
        )
        .await
        .expect("portal edit");
    h.wait_store("is_edited applied", |s| {
        s.row("tblAlignerNotes", &note_key(NOTE_A))
            .is_some_and(|r| r["IsEdited"] == SqlValue::Bit(true))
    })
    .await;
    let revived = h.trigger("postgres-to-sql").await;
    assert_eq!(
        revived["result"]["postgres_to_sql"]["dead_events_revived"],
        json!(1),
        "{revived}"
    );
    both_hold(&h, "the doctor's correction").await;
}

/// Issue 9: a batch of a table with portal-owned columns is one request, whatever its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_notes_is_pushed_in_one_request() {
    let h = Harness::start().await;
    seed_parents(&h.sql);
    h.notify().await;
    h.wait_synced().await;
    h.rest.clear_requests();
    for n in 1..=20u128 {
        let uid = uuid::Uuid::from_u128(n).to_string();
        h.sql.clinic_write(
            "tblAlignerNotes",
            &note_key(&uid),
            Some(note(&uid, 1, "Lab", &format!("note {n}"))),
        );
    }
    h.notify().await;
    h.wait_synced().await;
    let writes: Vec<String> = h
        .rest
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.table()))
        .collect();
    assert_eq!(
        writes,
        ["POST rpc/syncbridge_push"],
        "one request for 20 rows"
    );
    assert_eq!(h.pg_rows("SELECT 1 FROM aligner_notes").await.len(), 20);
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}

/// Ties go to the portal, in the real `syncbridge_push`: a clinic time equal to the column's
/// version is refused (and answered with Supabase's value); one microsecond newer is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tie_goes_to_the_portal() {
    use syncbridge::supabase::{PushRow, PushTable, SupabaseApi};
    let h = Harness::start().await;
    let _relay = synced_note(&h).await;
    let rows = h
        .pg_rows(&format!(
            "SELECT to_jsonb(n) - 'sync_versions' - 'updated_at' AS row, sync_versions ->> 'note_text' AS v
             FROM aligner_notes n WHERE note_uid = '{NOTE_A}'"
        ))
        .await;
    let version = DateTime::parse_from_rfc3339(rows[0]["v"].as_str().expect("a version"))
        .expect("a timestamp")
        .with_timezone(&Utc);
    let mut row = rows[0]["row"].as_object().cloned().expect("the row");
    row.insert("note_text".into(), json!("clinic"));
    let client = service_client(&h);
    let (keys, shared) = (
        vec!["note_uid".to_owned()],
        vec![
            "note_text".to_owned(),
            "is_edited".to_owned(),
            "edited_at".to_owned(),
        ],
    );
    let table = PushTable {
        table: "aligner_notes",
        keys: &keys,
        shared: &shared,
    };
    let push = |at: DateTime<Utc>| {
        vec![PushRow {
            row: row.clone(),
            changed: [("note_text".to_owned(), at)].into_iter().collect(),
        }]
    };
    let refused = client.push(&table, &push(version)).await.expect("push");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].column.as_str(), refused[0].value.clone()),
        ("note_text", json!("first"))
    );
    let newer = version + chrono::Duration::microseconds(1);
    let refused = client.push(&table, &push(newer)).await.expect("push");
    assert!(refused.is_empty(), "{refused:?}");
    let text = h
        .pg_rows(&format!(
            "SELECT note_text FROM aligner_notes WHERE note_uid = '{NOTE_A}'"
        ))
        .await;
    assert_eq!(text, vec![json!({"note_text": "clinic"})]);
}
