//! The process fault suite (issue 6, "Prove it"), part one: the real binary over the
//! out-of-process SQL Server double and the PostgREST test server, killed with SIGKILL in the
//! middle of a batch, stopped with SIGTERM or SIGINT with a batch and webhooks in flight, and
//! killed with accepted webhooks not yet applied. Each test ends with both sides compared row
//! for row and nothing left in between.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::process::{AgentProcess, Sides};
use common::*;
use serde_json::json;

/// How long a stopped agent may take from the signal to its exit, with a batch in flight that
/// PostgREST answers after a second (the agent's own grace is 30 s; a service manager's is
/// usually about 20 s).
const STOP_BOUND: Duration = Duration::from_secs(10);

/// Makes PostgREST answer slowly, writes `n` patients, notifies and waits until a batch is
/// claimed and in flight.
async fn batch_in_flight(sides: &Sides, agent: &AgentProcess, first: i64, n: i64) {
    sides.rest.set_latency(Duration::from_millis(1500));
    sides.clinic_changes(first, n);
    agent.notify(&sides.http).await;
    wait_for("a batch claimed and in flight", || async {
        sides.in_flight() > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_over_the_test_double_syncs_both_ways() {
    let sides = Sides::start().await;
    seed_parents(sides.sql());
    let agent = sides.agent("agent-a", &[]).await;
    sides.clinic_changes(10, 5);
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
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
    sides.nothing_lost("none (both ways)", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_batch_then_restart_loses_nothing() {
    let sides = Sides::start().await;
    let mut agent = sides.agent("agent-a", &[("SYNC_BATCH_SIZE", "8")]).await;
    batch_in_flight(&sides, &agent, 1, 20).await;
    agent.kill();
    // The process is gone: what is claimed now was claimed and never settled.
    let stranded = sides.in_flight();
    assert!(stranded > 0, "the kill landed mid-batch");
    sides.clinic_changes(100, 5);
    sides.rest.set_latency(Duration::ZERO);
    agent.start();
    agent.wait_ready(&sides).await;
    // The restart releases its own stranded claims at once, without waiting out the lease.
    agent.notify(&sides.http).await;
    sides
        .nothing_lost("SIGKILL mid-batch, restart", stranded)
        .await;
    assert!(
        agent
            .console()
            .contains("released claims left by a previous run"),
        "{}",
        agent.console()
    );
}

/// SIGTERM or SIGINT with a batch in flight and accepted webhooks not yet applied: the batch
/// is settled or released, the accepted events are kept, the exit is 0 within
/// [`STOP_BOUND`]; after a restart everything arrives.
async fn graceful_stop(signal: &str) {
    let sides = Sides::start().await;
    seed_parents(sides.sql());
    let mut agent = sides.agent("agent-a", &[("SYNC_BATCH_SIZE", "8")]).await;
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
    let bodies = [
        sides.portal_note(NOTE_A, "first").await,
        sides.portal_note(NOTE_B, "second").await,
    ];
    // SQL Server refuses the applier's writes for now: the events wait in the inbox.
    sides.double.fail_next("apply", 1_000_000);
    for body in &bodies {
        assert_eq!(agent.webhook(&sides.http, body).await, 200);
    }
    batch_in_flight(&sides, &agent, 1, 20).await;
    let exit = agent.stop_with(signal, STOP_BOUND).await;
    assert_eq!(exit.code, Some(0), "SIG{signal}: {}", agent.console());
    println!("SIG{signal}: exit 0 after {:?}", exit.took);
    assert_eq!(
        sides.in_flight(),
        0,
        "the batch in flight was settled or released"
    );
    assert!(note_text(sides.sql(), NOTE_A).is_none(), "not applied yet");
    sides.double.clear_faults();
    sides.rest.set_latency(Duration::ZERO);
    agent.start();
    agent.wait_ready(&sides).await;
    agent.notify(&sides.http).await;
    wait_for("the kept webhooks applied", || async {
        note_text(sides.sql(), NOTE_A).is_some() && note_text(sides.sql(), NOTE_B).is_some()
    })
    .await;
    sides
        .nothing_lost(&format!("SIG{signal} mid-batch"), 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_settles_the_batch_keeps_the_inbox_and_exits_0_in_time() {
    graceful_stop("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_settles_the_batch_keeps_the_inbox_and_exits_0_in_time() {
    graceful_stop("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_accepted_then_sigkill_before_applying_are_applied_after_restart() {
    let sides = Sides::start().await;
    seed_parents(sides.sql());
    let mut agent = sides.agent("agent-a", &[]).await;
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
    sides.double.fail_next("apply", 1_000_000);
    let mut bodies = Vec::new();
    for (uid, text) in [(NOTE_A, "kept one"), (NOTE_B, "kept two")] {
        bodies.push(sides.portal_note(uid, text).await);
    }
    for body in &bodies {
        assert_eq!(agent.webhook(&sides.http, body).await, 200);
    }
    wait_for("the applier tried and failed", || async {
        sides.double.calls("apply") > 0
    })
    .await;
    let status = agent.status(&sides.http).await;
    assert_eq!(status["reverse"]["inbox"]["depth"], json!(2), "{status}");
    agent.kill();
    assert!(note_text(sides.sql(), NOTE_A).is_none() && note_text(sides.sql(), NOTE_B).is_none());
    sides.double.clear_faults();
    agent.start();
    agent.wait_ready(&sides).await;
    wait_for("both accepted webhooks applied", || async {
        note_text(sides.sql(), NOTE_A).as_deref() == Some("kept one")
            && note_text(sides.sql(), NOTE_B).as_deref() == Some("kept two")
    })
    .await;
    sides
        .nothing_lost("SIGKILL with accepted webhooks unapplied", 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_a_reverse_write_before_its_answer_applies_it_once_in_effect() {
    let sides = Sides::start().await;
    seed_parents(sides.sql());
    let mut agent = sides.agent("agent-a", &[]).await;
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
    // SQL Server writes the row, then the answer is held: the agent dies not knowing.
    sides.double.delay("apply", Duration::from_secs(30));
    let body = sides.portal_note(NOTE_A, "written once").await;
    assert_eq!(agent.webhook(&sides.http, &body).await, 200);
    wait_for("the write made in SQL Server", || async {
        note_text(sides.sql(), NOTE_A).is_some()
    })
    .await;
    agent.kill();
    sides.double.clear_faults();
    let (_, writes_before) = sides.sql().apply_counts();
    agent.start();
    agent.wait_ready(&sides).await;
    wait_for("the event applied again and settled", || async {
        sides.double.calls("apply") >= 2
    })
    .await;
    wait_for("the inbox empty", || async {
        agent.status(&sides.http).await["reverse"]["inbox"]["depth"] == json!(0)
    })
    .await;
    let (applies, writes) = sides.sql().apply_counts();
    assert!(applies >= 2, "applied again after the restart");
    assert_eq!(writes, writes_before, "the second apply changed nothing");
    assert_eq!(
        note_text(sides.sql(), NOTE_A).as_deref(),
        Some("written once")
    );
    sides
        .nothing_lost("SIGKILL between a reverse write and its answer", 1)
        .await;
}
