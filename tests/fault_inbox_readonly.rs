//! The inbox's file system read-only (fault suite, beside `fault_inbox`'s disk full), with the
//! real binary: while the data directory cannot be written, webhooks are answered 503 with a
//! JSON reason and nothing is acknowledged that was not kept; an agent started on a read-only
//! data directory exits 1 naming it.
//!
//! Real conditions, not hooks (both need root, as CI and the development machines here have;
//! without it each test says so and does nothing):
//! - under the running agent: the data directory is an ext4 image on a loop device mounted
//!   `errors=remount-ro`, and `/sys/fs/ext4/<dev>/trigger_fs_error` makes the kernel take it
//!   read-only as it does on a disk error (`emergency_ro`). `mount -o remount,ro` cannot do it
//!   (Linux refuses while the agent holds its database open for writing) and root ignores file
//!   modes. Such a file system stays read-only until it is unmounted and checked, which needs
//!   the agent stopped: recovery here is stop, `e2fsck`, mount, start on the same inbox;
//! - at start: a tmpfs remounted read-only.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::process::Sides;
use common::*;
use serde_json::Value;

/// Runs a command, true when it exits 0.
fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// An ext4 image mounted on a loop device for one test, unmounted when dropped.
struct Ext4Disk {
    dir: tempfile::TempDir,
}

impl Ext4Disk {
    fn create() -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let disk = Self { dir };
        std::fs::File::create(disk.image())
            .and_then(|f| f.set_len(16 << 20))
            .ok()?;
        std::fs::create_dir(disk.mount_point()).ok()?;
        let made = run("mkfs.ext4", &["-q", "-F", disk.image_str()]);
        (made && disk.mount()).then_some(disk)
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }

    fn image_str(&self) -> &'static str {
        Box::leak(self.image().display().to_string().into_boxed_str())
    }

    fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn mount(&self) -> bool {
        let target = self.mount_point().display().to_string();
        run(
            "mount",
            &["-o", "loop,errors=remount-ro", self.image_str(), &target],
        )
    }

    /// The loop device's name (`loop3`), as `/sys/fs/ext4/` lists it.
    fn device(&self) -> String {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(self.mount_point())
            .output()
            .expect("findmnt");
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        source.trim_start_matches("/dev/").to_owned()
    }

    /// Makes the kernel take the file system read-only under whoever has it open.
    fn force_read_only(&self) {
        let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device());
        std::fs::write(&trigger, "1").unwrap_or_else(|e| panic!("{trigger}: {e}"));
        let probe = self.mount_point().join("probe");
        assert!(
            std::fs::write(&probe, "x").is_err(),
            "the file system is read-only now"
        );
    }

    /// Unmounts, checks and mounts again: writable once more, with what was on it.
    fn check_and_remount(&self) {
        assert!(run("umount", &[&self.mount_point().display().to_string()]));
        // 1 = errors corrected, which is what a forced error leaves to correct.
        let fsck = Command::new("e2fsck")
            .args(["-f", "-y", self.image_str()])
            .output()
            .expect("e2fsck");
        assert!(matches!(fsck.status.code(), Some(0 | 1)), "{fsck:?}");
        assert!(self.mount(), "mounted again");
    }
}

impl Drop for Ext4Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount_point())
            .status();
    }
}

fn note_uid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Posts a webhook; returns the status and the JSON body.
async fn post(sides: &Sides, agent: &common::process::AgentProcess, body: &Value) -> (u16, Value) {
    let response = sides
        .http
        .post(agent.url("/api/sync/webhook"))
        .bearer_auth(WEBHOOK_SECRET)
        .json(body)
        .send()
        .await
        .expect("webhook");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn leak(path: &Path) -> &'static str {
    Box::leak(path.display().to_string().into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_inbox_answers_503_keeps_what_it_acknowledged_and_recovers() {
    let Some(disk) = Ext4Disk::create() else {
        eprintln!("SKIPPED: cannot mount an ext4 image on a loop device here (needs root)");
        return;
    };
    let data_dir = leak(&disk.mount_point().join("data"));
    let sides = Sides::start().await;
    seed_parents(sides.sql());
    let mut agent = sides.agent("agent-a", &[("SYNC_DATA_DIR", data_dir)]).await;
    agent.notify(&sides.http).await;
    sides.wait_synced(&[&agent]).await;
    // SQL Server refuses the applier's writes for now: what the inbox acknowledges stays in it,
    // so the restart proves it was kept.
    sides.double.fail_next("apply", 1_000_000);
    let kept = sides
        .portal_note(&note_uid(0), "kept before the fault")
        .await;
    assert_eq!(post(&sides, &agent, &kept).await.0, 200);

    disk.force_read_only();
    let mut refused = Vec::new();
    for n in 1..=3 {
        let body = sides
            .portal_note(&note_uid(n), "sent while read-only")
            .await;
        let (status, answer) = post(&sides, &agent, &body).await;
        assert_eq!(
            status, 503,
            "nothing acknowledged that cannot be kept: {answer}"
        );
        let reason = answer["reason"].as_str().unwrap_or("");
        assert!(reason.contains("could not be stored"), "{answer}");
        refused.push(body);
    }
    let exit = agent.stop_with("TERM", Duration::from_secs(10)).await;
    println!(
        "read-only inbox: SIGTERM, exit {:?} after {:?}",
        exit.code, exit.took
    );
    assert_eq!(exit.code, Some(0), "{}", agent.console());

    // Recovery: the file system checked and mounted again, the agent started on it.
    disk.check_and_remount();
    sides.double.clear_faults();
    agent.start();
    agent.wait_ready(&sides).await;
    wait_for(
        "the event acknowledged before the fault applied",
        || async { note_text(sides.sql(), &note_uid(0)).is_some() },
    )
    .await;
    // The refused webhooks, sent again (as the catch-up would read them), are kept and applied.
    for body in &refused {
        assert_eq!(post(&sides, &agent, body).await.0, 200);
    }
    wait_for("every note applied", || async {
        (0..=3).all(|n| note_text(sides.sql(), &note_uid(n)).is_some())
    })
    .await;
    sides.nothing_lost("the inbox read-only", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_on_a_read_only_data_directory_exits_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().display().to_string();
    if !run("mount", &["-t", "tmpfs", "-o", "size=4m", "tmpfs", &target]) {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    let sides = Sides::start().await;
    let data_dir = leak(&dir.path().join("data"));
    // An agent has run there: the inbox exists (SQLite would open it read-only in silence).
    let mut agent = sides.agent("agent-a", &[("SYNC_DATA_DIR", data_dir)]).await;
    assert_eq!(
        agent.stop_with("TERM", Duration::from_secs(10)).await.code,
        Some(0)
    );
    assert!(run("mount", &["-o", "remount,ro", &target]));
    let fresh = leak(&dir.path().join("fresh"));
    for (data_dir, says) in [
        (data_dir, "is not writable"),
        (fresh, "cannot create the data directory"),
    ] {
        let mut agent = sides.spawn("agent-a", &[("SYNC_DATA_DIR", data_dir)]);
        let exit = agent.wait_exit(Duration::from_secs(20)).await;
        let console = agent.console();
        assert_eq!(exit.code, Some(1), "{console}");
        assert!(
            console.contains(&format!("data directory {data_dir}")) && console.contains(says),
            "{console}"
        );
        assert!(console.contains("Read-only file system"), "{console}");
        assert!(!console.contains("panicked"), "{console}");
    }
    let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
}
