//! CPU time per change, split between this process (the agent, the SQL Server double, the
//! REST server and the latency proxy) and the rest of the machine (PostgreSQL, the kernel's
//! work for it), read from /proc. Every side of a run shares the same cores, so a rate is
//! bounded by cores ÷ (CPU per change): this split shows which side a run spends it on.

use std::time::Instant;

/// Clock ticks per second of /proc's counters (`USER_HZ`, 100 on every Linux this runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU per change, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct CpuSplit {
    pub own_us: f64,
    pub rest_us: f64,
    /// Busy share of the machine's cores over the run (1.0 = every core busy throughout).
    pub busy: f64,
}

/// Counters read at the start of a measured run.
pub struct Meter {
    own: u64,
    machine: u64,
    started: Instant,
}

impl Meter {
    pub fn start() -> Self {
        Self {
            own: process_ticks("self"),
            machine: machine_busy_ticks(),
            started: Instant::now(),
        }
    }

    /// The split per change for `n` changes since [`Meter::start`]; `None` without /proc.
    pub fn per_change(&self, n: u64) -> Option<CpuSplit> {
        let (own, machine) = (process_ticks("self"), machine_busy_ticks());
        if n == 0 || machine == 0 {
            return None;
        }
        let own = own.saturating_sub(self.own) as f64;
        let rest = machine.saturating_sub(self.machine) as f64 - own;
        let us = |ticks: f64| ticks.max(0.0) / TICKS_PER_SEC * 1e6 / n as f64;
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        Some(CpuSplit {
            own_us: us(own),
            rest_us: us(rest),
            busy: (own + rest.max(0.0)) / TICKS_PER_SEC / wall / cores,
        })
    }
}

/// utime + stime of process `pid` ("self" for this one): fields 14 and 15 of its stat line.
pub fn process_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, s)| s);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// The machine's busy ticks: user, nice, system, irq and softirq of /proc/stat's `cpu` line
/// (guest time is inside user already). Steal is left out: it is the hypervisor running
/// someone else, not work of this machine's processes.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    [0, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum()
}
