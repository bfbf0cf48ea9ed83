//! How backfill shows its progress: a bar per table on a terminal (rows, rows/s, ETA), plain
//! log lines otherwise (a service, a pipe, a scheduled task), at most one every few seconds.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The least time between two plain progress lines.
const LOG_EVERY: Duration = Duration::from_secs(2);

pub(crate) enum Progress {
    Bar(ProgressBar),
    Lines {
        table: String,
        total: u64,
        started: Instant,
        last: Instant,
    },
    /// Tests and `--dry-run`: nothing shown.
    Quiet,
}

impl Progress {
    /// The display for one table of `total` rows, `done` of them queued by earlier runs.
    pub(crate) fn start(table: &str, total: u64, done: u64, shown: bool) -> Self {
        if !shown {
            return Self::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{prefix:>20} [{bar:30}] {pos}/{len} rows · {per_sec} · ETA {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(table.to_owned());
            bar.set_position(done);
            bar.reset_eta();
            return Self::Bar(bar);
        }
        tracing::info!(
            table,
            total,
            already_queued = done,
            "backfill: starting table"
        );
        let now = Instant::now();
        Self::Lines {
            table: table.to_owned(),
            total,
            started: now,
            last: now,
        }
    }

    /// `queued` rows of the table are queued now (this run and earlier ones).
    pub(crate) fn update(&mut self, queued: u64, this_run: u64) {
        match self {
            Self::Bar(bar) => bar.set_position(queued),
            Self::Lines {
                table,
                total,
                started,
                last,
            } => {
                if last.elapsed() < LOG_EVERY {
                    return;
                }
                *last = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rate = this_run as f64 / secs;
                let left = total.saturating_sub(queued) as f64;
                let eta = if rate > 0.0 { left / rate } else { 0.0 };
                tracing::info!(
                    table = %table,
                    queued,
                    total = *total,
                    rows_per_s = rate.round() as u64,
                    eta_s = eta.round() as u64,
                    "backfill progress"
                );
            }
            Self::Quiet => {}
        }
    }

    pub(crate) fn finish(self, queued: u64) {
        match self {
            Self::Bar(bar) => {
                bar.set_position(queued);
                bar.finish();
            }
            Self::Lines { table, .. } => {
                tracing::info!(table = %table, queued, "backfill: table queued");
            }
            Self::Quiet => {}
        }
    }
}
