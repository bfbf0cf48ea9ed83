//! The process fault suite, part three: the real binary while its SQL Server (the
//! out-of-process double) fails in the middle of a batch or is unreachable at start-up, and two
//! binaries on one queue, one of them killed mid-batch. Every change arrives once in effect,
//! nothing stays claimed past its lease (5 s here, the shortest allowed), both sides end equal.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::process::{AgentProcess, Sides};
use common::*;
use tokio::time::Instant;

/// A batch claimed and sent to a slow PostgREST; then `method` on the double fails once while
/// the batch is in flight. Returns how many items were in flight.
async fn fail_mid_batch(sides: &Sides, agent: &AgentProcess, method: &str, first: i64) -> usize {
    sides.rest.set_latency(Duration::from_millis(800));
    sides.clinic_changes(first, 5);
    agent.notify(&sides.http).await;
    wait_for("a batch in flight", || async { sides.in_flight() > 0 }).await;
    let in_flight = sides.in_flight();
    let before = sides.double.calls(method);
    sides.double.fail_next(method, 1);
    wait_for("the failed call", || async {
        sides.double.calls(method) > before
    })
    .await;
    sides.rest.set_latency(Duration::ZERO);
    in_flight
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_failing_mid_batch_strands_nothing_past_the_lease() {
    let sides = Sides::start().await;
    let agent = sides.agent("agent-a", &[("SYNC_BATCH_SIZE", "4")]).await;
    // The rows reached Supabase but their settlement failed: sent again after the lease.
    let started = Instant::now();
    let mut resent = fail_mid_batch(&sides, &agent, "settle", 1).await;
    sides.wait_synced(&[&agent]).await;
    println!(
        "settle failed mid-batch: all synced {:?} later",
        started.elapsed()
    );
    // The next batch's rows could not be read.
    let reads = sides.double.calls("load_rows");
    sides.double.fail_next("load_rows", 1);
    sides.clinic_changes(20, 3);
    agent.notify(&sides.http).await;
    wait_for("the failed read", || async {
        sides.double.calls("load_rows") > reads
    })
    .await;
    let failed_at = Instant::now();
    sides.wait_synced(&[&agent]).await;
    println!(
        "load_rows failed: all synced {:?} later",
        failed_at.elapsed()
    );
    // SQL Server down while a batch is in flight, then back.
    sides.rest.set_latency(Duration::from_millis(800));
    sides.clinic_changes(40, 5);
    agent.notify(&sides.http).await;
    wait_for("a batch in flight", || async { sides.in_flight() > 0 }).await;
    resent += sides.in_flight();
    // The batch's next call to SQL Server (its rows' read or its settlement) is refused.
    let calls = || sides.double.calls("load_rows") + sides.double.calls("settle");
    let before = calls();
    sides.sql().set_down(true);
    wait_for("the batch's next call refused while down", || async {
        calls() > before
    })
    .await;
    sides.sql().set_down(false);
    sides.rest.set_latency(Duration::ZERO);
    agent.notify(&sides.http).await;
    sides
        .nothing_lost("SQL Server failing mid-batch", resent)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_unreachable_at_start_up_then_back() {
    let sides = Sides::start().await;
    sides
        .double
        .set_unreachable(true)
        .await
        .expect("unreachable");
    let mut agent = sides.spawn("agent-a", &[]);
    agent.wait_listening(&sides).await;
    sides.clinic_changes(1, 5);
    wait_for("the agent waiting for SQL Server", || async {
        agent.console().contains("waiting for SQL Server")
    })
    .await;
    let status = agent.status(&sides.http).await;
    assert_eq!(
        status["agent"]["ready"],
        serde_json::json!(false),
        "{status}"
    );
    sides
        .double
        .set_unreachable(false)
        .await
        .expect("reachable");
    agent.wait_ready(&sides).await;
    agent.notify(&sides.http).await;
    sides
        .nothing_lost("SQL Server unreachable at start-up", 0)
        .await;
}

fn claimed_by(sides: &Sides, agent: &str) -> usize {
    sides
        .sql()
        .queue()
        .iter()
        .filter(|q| q.claimed_by.as_deref() == Some(agent))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_binaries_on_one_queue_share_it_and_outlive_each_other() {
    let sides = Sides::start().await;
    // A retry schedule that outlasts the 5 s lease even at its shortest (9 retries of at least
    // half of 50 ms doubling to a 4 s cap: 7.2 s); the test below has a shorter one.
    let settings = [
        ("SYNC_BATCH_SIZE", "5"),
        ("SYNC_MAX_ATTEMPTS", "10"),
        ("SYNC_BACKOFF_CAP", "4s"),
    ];
    let a = sides.agent("agent-a", &settings).await;
    let mut b = sides.agent("agent-b", &settings).await;
    sides.rest.set_latency(Duration::from_millis(20));
    sides.clinic_changes(1, 60);
    a.notify(&sides.http).await;
    b.notify(&sides.http).await;
    sides.wait_synced(&[&a, &b]).await;
    let (by_a, by_b) = (claimed_by(&sides, "agent-a"), claimed_by(&sides, "agent-b"));
    println!("two agents: agent-a settled {by_a} items, agent-b {by_b}");
    assert!(by_a > 0 && by_b > 0, "both took part: {by_a} and {by_b}");
    // agent-b dies mid-batch and stays dead: agent-a takes its items once their lease ends.
    sides.rest.set_latency(Duration::from_millis(1500));
    sides.clinic_changes(100, 10);
    b.notify(&sides.http).await;
    wait_for("agent-b's batch in flight", || async {
        sides
            .sql()
            .queue()
            .iter()
            .any(|q| q.claim.is_some() && q.claimed_by.as_deref() == Some("agent-b"))
    })
    .await;
    b.kill();
    let stranded = sides.in_flight();
    assert!(stranded > 0, "the kill landed mid-batch");
    sides.rest.set_latency(Duration::ZERO);
    a.notify(&sides.http).await;
    // A child row agent-a sends while its parent waits out agent-b's lease is refused by the
    // foreign key; the parent is still queued, so no attempt is spent on it (see the test below).
    sides
        .nothing_lost("two agents, one killed mid-batch", stranded)
        .await;
}

/// Found by the test above with 3 attempts: a child row whose parent is stranded in a killed
/// agent's claim is refused by Supabase's foreign key (23503). It used to count as the row's
/// own fault, so with a retry schedule shorter than `SYNC_CLAIM_LEASE` (3 attempts from 50 ms
/// here, a 5 s lease) the child ended `Failed`, never synced. A parent still in the queue is
/// not the child's reason: the child is released without spending an attempt until the
/// parent's lease ends and the survivor sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_outlives_its_parent_stranded_in_a_dead_agents_claim() {
    let sides = Sides::start().await;
    let a = sides.agent("agent-a", &[]).await;
    let mut b = sides.agent("agent-b", &[]).await;
    sides.rest.set_latency(Duration::from_millis(1500));
    sides.sql().clinic_write(
        "tblPatients",
        &key("PersonID", 7),
        Some(patient(7, "parent")),
    );
    b.notify(&sides.http).await;
    wait_for("the parent claimed by agent-b", || async {
        sides.in_flight() > 0
    })
    .await;
    b.kill();
    sides.rest.set_latency(Duration::ZERO);
    sides
        .sql()
        .clinic_write("tblWork", &key("WorkID", 7), Some(work(7, 7)));
    a.notify(&sides.http).await;
    // Synced with no attempt spent: the refusals while the parent was stranded were not its.
    sides
        .nothing_lost("child of a parent stranded by a dead agent", 1)
        .await;
}
