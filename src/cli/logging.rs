//! Where the binary's log lines go: the console (stdout for `run`, stderr for the other
//! commands so that `status --json` stays parseable), and for `run` also a daily file in
//! `SYNC_LOG_DIR` (`syncbridge.YYYY-MM-DD.log`, tracing-appender), the oldest deleted beyond
//! `SYNC_LOG_KEEP_DAYS`. One line per event everywhere (a line break inside a message is written
//! as `\n`), and no ANSI colour codes in files or on a console that is not a terminal. Secrets
//! never reach a log line: they stay `SecretString`s and no event carries one.

use std::io::{self, IsTerminal, Write};

use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{Config, ConfigError, Problem};

/// Which console the command logs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Stdout,
    Stderr,
}

/// Installs the global subscriber: `console`, plus the daily files when `files` and
/// `SYNC_LOG_KEEP_DAYS` is not 0. An unusable `SYNC_LOG_DIR` is a bad setting.
pub fn init(config: &Config, console: Console, files: bool) -> Result<(), ConfigError> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let console_layer = match console {
        Console::Stdout => tracing_subscriber::fmt::layer()
            .with_ansi(io::stdout().is_terminal())
            .with_writer(OneLine::new(io::stdout, !io::stdout().is_terminal()))
            .with_filter(filter())
            .boxed(),
        Console::Stderr => tracing_subscriber::fmt::layer()
            .with_ansi(io::stderr().is_terminal())
            .with_writer(OneLine::new(io::stderr, !io::stderr().is_terminal()))
            .with_filter(filter())
            .boxed(),
    };
    let file_layer = match (files, config.log_keep_days) {
        (false, _) | (true, 0) => None,
        (true, keep) => {
            let unusable = |e: &dyn std::fmt::Display| {
                ConfigError(vec![Problem {
                    key: "SYNC_LOG_DIR",
                    message: format!(
                        "{} cannot hold the log files: {e}",
                        config.log_dir.display()
                    ),
                }])
            };
            // Made here on a first start: the appender would make it too, but only after
            // pruning old files from it, which prints an error of its own to stderr when the
            // directory is not there yet.
            std::fs::create_dir_all(&config.log_dir).map_err(|e| unusable(&e))?;
            // Blocking writes: a few lines a second at most, and a line written before a crash
            // is worth more than a writer thread's buffer.
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix("syncbridge")
                .filename_suffix("log")
                .max_log_files(keep as usize)
                .build(&config.log_dir)
                .map_err(|e| unusable(&e))?;
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(OneLine::new(appender, true))
                .with_filter(filter());
            Some(layer)
        }
    };
    // Only fails when a subscriber is already set, which `main` does not do twice.
    let _ = tracing_subscriber::registry()
        .with(console_layer)
        .with(file_layer)
        .try_init();
    Ok(())
}

/// Makes every event one line: the formatter writes each event with one `write_all`, so a
/// line break before the event's last byte is inside the message. With `plain`, escape
/// characters are written as `\x1b` too, so no colour code reaches a file or a pipe even when
/// a message carries one.
pub(crate) struct OneLine<M> {
    inner: M,
    plain: bool,
}

impl<M> OneLine<M> {
    pub(crate) fn new(inner: M, plain: bool) -> Self {
        Self { inner, plain }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter {
            inner: self.inner.make_writer(),
            plain: self.plain,
        }
    }
}

pub(crate) struct OneLineWriter<W> {
    inner: W,
    plain: bool,
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let special = |b: &u8| matches!(b, b'\n' | b'\r') || (self.plain && *b == 0x1b);
        if !body.iter().any(special) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                0x1b if self.plain => line.extend_from_slice(b"\\x1b"),
                b => line.push(b),
            }
        }
        line.extend_from_slice(end);
        self.inner.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(plain: bool, event: &[u8]) -> String {
        let mut out = Vec::new();
        OneLineWriter {
            inner: &mut out,
            plain,
        }
        .write_all(event)
        .expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn an_event_stays_one_line_and_plain_output_carries_no_escape_codes() {
        assert_eq!(through(true, b"INFO a b\n"), "INFO a b\n");
        assert_eq!(
            through(true, b"WARN the map:\n  tblX missing\r\n\n"),
            "WARN the map:\\n  tblX missing\\r\\n\n"
        );
        assert_eq!(
            through(true, b"\x1b[31mred\x1b[0m\n"),
            "\\x1b[31mred\\x1b[0m\n"
        );
        assert_eq!(
            through(false, b"\x1b[31mred\x1b[0m\n"),
            "\x1b[31mred\x1b[0m\n"
        );
    }
}
