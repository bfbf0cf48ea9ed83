//! Issue 6(a): a portal edit of a clinic-owned column, through real Supabase-style webhooks
//! (the `sql/supabase/` triggers firing into the relay) and the agent's HTTP endpoint, over real
//! PostgreSQL and the SQL Server double. The clinic owns the column (README "Who wins"), so its
//! value comes back to Supabase; a portal-owned column edited in the same UPDATE still reaches
//! SQL Server; the forward push that restores the value, coming back as a webhook, queues
//! nothing more. Every test ends with both sides equal, row for row.

mod common;

use common::*;
use serde_json::json;
use syncbridge::mapping::TableMap;
use syncbridge::sqlserver::SqlValue;
use syncbridge_testkit::WebhookRelay;

/// Batch 1 created at the clinic (days 14, notes "first batch") and synced; then the webhook
/// triggers installed (`skip_agent_writes` as given) and the relay delivering them.
async fn synced_batch(h: &Harness, skip_agent_writes: bool) -> WebhookRelay {
    seed_parents(&h.sql);
    h.sql.clinic_write(
        "tblAlignerBatches",
        &key("AlignerBatchID", 1),
        Some(batch(1, 1, 14)),
    );
    h.notify().await;
    h.wait_synced().await;
    h.db.client()
        .execute(
            "SELECT public.syncbridge_install_webhooks($1, $2, $3)",
            &[
                &h.url("/api/sync/webhook"),
                &WEBHOOK_SECRET,
                &skip_agent_writes,
            ],
        )
        .await
        .expect("install webhooks");
    WebhookRelay::start(h.db.url()).await.expect("relay")
}

/// A portal user's UPDATE of batch 1, and its webhook delivered and answered 200.
async fn portal_updates(h: &Harness, relay: &WebhookRelay, set: &str) {
    let before = relay.deliveries().len();
    h.db.client()
        .batch_execute(&format!(
            "UPDATE aligner_batches SET {set} WHERE aligner_batch_id = 1"
        ))
        .await
        .expect("portal edit");
    let delivered = relay
        .wait_for_deliveries(before + 1, DEADLINE)
        .await
        .expect("the webhook fired");
    assert_eq!(delivered[before].status(), Some(200), "{delivered:?}");
}

/// Quiet: every webhook applied and every queue item sent. The agent queues a restoring item
/// before it completes the event that showed the difference, so once the inbox is empty and
/// nothing is pending, nothing more is on its way.
async fn quiet(h: &Harness) {
    h.wait_inbox_empty().await;
    h.wait_synced().await;
}

async fn supabase_batch(h: &Harness) -> Vec<serde_json::Value> {
    h.pg_rows("SELECT days, notes, upper_aligner_count FROM aligner_batches")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_edit_of_a_clinic_owned_column_is_undone_by_the_clinics_value() {
    let h = Harness::start().await;
    let relay = synced_batch(&h, true).await;
    let queued = h.sql.queue().len();
    portal_updates(
        &h,
        &relay,
        "notes = 'edited in the portal', upper_aligner_count = 9",
    )
    .await;
    h.wait_store("the record queued forward again", |s| {
        s.queue().len() > queued
    })
    .await;
    quiet(&h).await;
    assert_eq!(
        supabase_batch(&h).await,
        [json!({"days": 14, "notes": "first batch", "upper_aligner_count": 5})],
        "Supabase holds the clinic's values again"
    );
    let row = h
        .sql
        .row("tblAlignerBatches", &key("AlignerBatchID", 1))
        .expect("row");
    assert_eq!(row["Notes"], text("first batch"), "SQL Server kept its own");
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_update_of_both_kinds_applies_the_portals_column_and_restores_the_clinics() {
    let h = Harness::start().await;
    let relay = synced_batch(&h, true).await;
    portal_updates(&h, &relay, "days = 21, notes = 'edited in the portal'").await;
    h.wait_store("days applied to SQL Server", |s| {
        days(s, 1) == Some(SqlValue::Int(21))
    })
    .await;
    quiet(&h).await;
    assert_eq!(
        supabase_batch(&h).await,
        [json!({"days": 21, "notes": "first batch", "upper_aligner_count": 5})],
        "the portal's days kept, the clinic's notes restored"
    );
    let row = h
        .sql
        .row("tblAlignerBatches", &key("AlignerBatchID", 1))
        .expect("row");
    assert_eq!(
        (row["Days"].clone(), row["Notes"].clone()),
        (SqlValue::Int(21), text("first batch"))
    );
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restoring_push_coming_back_as_a_webhook_queues_nothing_more() {
    let h = Harness::start().await;
    // Supabase-side filtering off: the agent's restoring push really comes back as a webhook.
    let relay = synced_batch(&h, false).await;
    let queued = h.sql.queue().len();
    portal_updates(&h, &relay, "notes = 'edited in the portal'").await;
    // The portal's webhook, then the echo of the push that restored the clinic's value.
    let delivered = relay
        .wait_for_deliveries(2, DEADLINE)
        .await
        .expect("the echo of the restoring push");
    assert_eq!(
        delivered[1].payload["record"]["notes"],
        json!("first batch")
    );
    quiet(&h).await;
    assert_eq!(
        h.sql.queue().len(),
        queued + 1,
        "one item restored the value; its echo queued none: {:?}",
        h.sql.queue()
    );
    assert_eq!(relay.deliveries().len(), 2, "the exchange stopped");
    let report = h.trigger("sql-to-postgres").await;
    assert_eq!(
        report["result"]["sql_to_postgres"]["items_synced"],
        json!(0)
    );
    assert_eq!(
        supabase_batch(&h).await,
        [json!({"days": 14, "notes": "first batch", "upper_aligner_count": 5})]
    );
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_edit_of_a_clinic_owned_column_read_by_catch_up_is_undone_too() {
    let o = Options::default();
    let mut h = Harness::start_with(o.clone()).await;
    let relay = synced_batch(&h, true).await;
    h.stop().await;
    // The agent is down: the webhook is lost; catch-up reads the row after the restart.
    relay.set_dropping(true);
    h.db.client()
        .batch_execute(
            "UPDATE aligner_batches SET notes = 'edited while down' WHERE aligner_batch_id = 1",
        )
        .await
        .expect("portal edit");
    h.launch(&o).await;
    h.trigger("postgres-to-sql").await;
    quiet(&h).await;
    assert_eq!(
        supabase_batch(&h).await,
        [json!({"days": 14, "notes": "first batch", "upper_aligner_count": 5})],
        "the clinic's notes back in Supabase"
    );
    assert!(assert_sides_equal(&h, &TableMap::sample_clinic()).await > 0);
}
