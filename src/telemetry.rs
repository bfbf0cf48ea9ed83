//! Prometheus metrics for `GET /metrics` (prometheus-client, OpenMetrics text): every family
//! the agent exports, and the one place that records them. Two kinds of numbers:
//! - observed as they happen, through [`Telemetry::record`]: the latency of each request to SQL
//!   Server and PostgREST, and whether each side answered (the outage gauge);
//! - read from their owners when scraped (queue counts from SQL Server, inbox depth, per-table
//!   totals and faults from the counters, backfill checkpoints), handed to
//!   [`Telemetry::render`] as a [`Snapshot`].
//!
//! Reads nothing itself and knows nothing of the sync: the agent builds the snapshot.

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::counters::PerTable;

type Labels = Vec<(&'static str, String)>;

/// The two sides the agent talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    SqlServer,
    /// PostgREST.
    Supabase,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Self::SqlServer => "sqlserver",
            Self::Supabase => "supabase",
        }
    }
}

/// Something that happened, recorded as it happens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Observation {
    /// One request to `side` (`operation` names it: `claim`, `upsert`, ...) took `elapsed`.
    /// `reached` is false when the side did not answer properly (cannot connect, timeout, 5xx,
    /// 429): the side counts as in an outage until a request reaches it again.
    Request {
        side: Side,
        operation: &'static str,
        elapsed: Duration,
        reached: bool,
    },
}

/// The queue's durable counts, read from SQL Server at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueDepth {
    pub(crate) pending: u64,
    pub(crate) synced: u64,
    pub(crate) failed: u64,
    pub(crate) oldest_pending_age_secs: Option<u64>,
}

/// How far a backfill of one table has come (rows enqueued of the rows the table had).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BackfillProgress {
    pub(crate) table: String,
    pub(crate) enqueued: u64,
    pub(crate) rows: u64,
}

/// What the agent reads from its owners for one scrape; a part that cannot be read is `None`
/// and its families are left out of that scrape rather than reported as zero.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) ready: bool,
    pub(crate) queue: Option<QueueDepth>,
    pub(crate) inbox_depth: Option<u64>,
    pub(crate) dead_events: Option<u64>,
    /// Per SQL Server table, since the agent started.
    pub(crate) forward: PerTable,
    /// Per Supabase table, since the agent started.
    pub(crate) reverse: PerTable,
    /// Supabase refuses the key or the schema: forward work is paused.
    pub(crate) forward_config_fault: bool,
    pub(crate) backfill: Vec<BackfillProgress>,
}

/// The families observed as they happen; cheap to clone (clones share them).
#[derive(Debug, Clone)]
pub(crate) struct Telemetry {
    sqlserver_latency: Family<Labels, Histogram>,
    postgrest_latency: Family<Labels, Histogram>,
    outage: Family<Labels, Gauge>,
}

/// 1 ms to ~16 s: a local SQL Server answers in milliseconds, a hosted PostgREST in tens to
/// hundreds, and the client timeout (`SUPABASE_TIMEOUT`, 10 s) ends the rest.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Default for Telemetry {
    fn default() -> Self {
        let outage = Family::<Labels, Gauge>::default();
        // Both sides are reported from the first scrape, not only after their first failure.
        for side in [Side::SqlServer, Side::Supabase] {
            outage
                .get_or_create(&labels(&[("side", side.label())]))
                .set(0);
        }
        Self {
            sqlserver_latency: Family::new_with_constructor(latency_histogram),
            postgrest_latency: Family::new_with_constructor(latency_histogram),
            outage,
        }
    }
}

impl Telemetry {
    /// The one place an observation becomes a metric.
    pub(crate) fn record(&self, observation: Observation) {
        match observation {
            Observation::Request {
                side,
                operation,
                elapsed,
                reached,
            } => {
                let latency = match side {
                    Side::SqlServer => &self.sqlserver_latency,
                    Side::Supabase => &self.postgrest_latency,
                };
                latency
                    .get_or_create(&labels(&[("operation", operation)]))
                    .observe(elapsed.as_secs_f64());
                self.outage
                    .get_or_create(&labels(&[("side", side.label())]))
                    .set(i64::from(!reached));
            }
        }
    }

    /// The OpenMetrics text of every family: those observed so far and `snapshot`'s.
    pub(crate) fn render(&self, snapshot: &Snapshot) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        register_snapshot(&mut registry, snapshot);
        registry.register(
            "syncbridge_sqlserver_request_duration_seconds",
            "Latency of the agent's SQL Server requests, by operation",
            self.sqlserver_latency.clone(),
        );
        registry.register(
            "syncbridge_postgrest_request_duration_seconds",
            "Latency of the agent's PostgREST requests, by operation",
            self.postgrest_latency.clone(),
        );
        registry.register(
            "syncbridge_outage",
            "1 while the last request to this side got no proper answer (unreachable, timeout, 5xx, 429)",
            self.outage.clone(),
        );
        let mut text = String::new();
        encode(&mut text, &registry)?;
        Ok(text)
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The scrape-time families, filled from `s`.
fn register_snapshot(registry: &mut Registry, s: &Snapshot) {
    register_state(registry, s);
    register_items(registry, s);
    register_backfill(registry, &s.backfill);
}

/// Readiness, faults, the queue and the inbox.
fn register_state(registry: &mut Registry, s: &Snapshot) {
    gauge(
        registry,
        "syncbridge_ready",
        "1 once the table map is resolved and sync runs",
        i64::from(s.ready),
    );
    let faults = Family::<Labels, Gauge>::default();
    faults
        .get_or_create(&labels(&[("direction", "sql-to-postgres")]))
        .set(i64::from(s.forward_config_fault));
    registry.register(
        "syncbridge_config_fault",
        "1 while a configuration fault pauses a direction (Supabase refuses the key or the schema)",
        faults,
    );
    if let Some(q) = &s.queue {
        let depth = Family::<Labels, Gauge>::default();
        for (status, n) in [
            ("pending", q.pending),
            ("synced", q.synced),
            ("failed", q.failed),
        ] {
            depth
                .get_or_create(&labels(&[("status", status)]))
                .set(as_i64(n));
        }
        registry.register("syncbridge_queue_items", "SyncQueue items by status", depth);
        gauge(
            registry,
            "syncbridge_queue_oldest_pending_age_seconds",
            "Age of the oldest Pending item (0 when none)",
            as_i64(q.oldest_pending_age_secs.unwrap_or(0)),
        );
    }
    if let Some(depth) = s.inbox_depth {
        gauge(
            registry,
            "syncbridge_inbox_depth",
            "Reverse events accepted and not yet applied",
            as_i64(depth),
        );
    }
    if let Some(dead) = s.dead_events {
        gauge(
            registry,
            "syncbridge_inbox_dead_events",
            "Reverse events given up on (retry-failed revives them)",
            as_i64(dead),
        );
    }
}

/// Items synced and given up on, per direction and table.
fn register_items(registry: &mut Registry, s: &Snapshot) {
    let synced = Family::<Labels, Counter>::default();
    let failed = Family::<Labels, Counter>::default();
    for (direction, tables) in [
        ("sql-to-postgres", &s.forward),
        ("postgres-to-sql", &s.reverse),
    ] {
        for (table, t) in tables {
            let l = labels(&[("direction", direction), ("table", table)]);
            synced.get_or_create(&l).inc_by(t.synced);
            failed.get_or_create(&l).inc_by(t.failed);
        }
    }
    registry.register(
        "syncbridge_items_synced",
        "Items synced since the agent started, by direction and table",
        synced,
    );
    registry.register(
        "syncbridge_items_failed",
        "Items given up on (Failed, dead) since the agent started, by direction and table",
        failed,
    );
}

fn register_backfill(registry: &mut Registry, backfill: &[BackfillProgress]) {
    let enqueued = Family::<Labels, Gauge>::default();
    let rows = Family::<Labels, Gauge>::default();
    for b in backfill {
        let l = labels(&[("table", &b.table)]);
        enqueued.get_or_create(&l).set(as_i64(b.enqueued));
        rows.get_or_create(&l).set(as_i64(b.rows));
    }
    registry.register(
        "syncbridge_backfill_enqueued_rows",
        "Rows a backfill has enqueued so far, by table",
        enqueued,
    );
    registry.register(
        "syncbridge_backfill_table_rows",
        "Rows the backfilled table had when its backfill started, by table",
        rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::TableTotals;

    #[test]
    fn observations_and_the_snapshot_render_as_openmetrics() {
        let t = Telemetry::default();
        let request = |side, operation, ms, reached| Observation::Request {
            side,
            operation,
            elapsed: Duration::from_millis(ms),
            reached,
        };
        t.record(request(Side::SqlServer, "claim", 3, true));
        t.record(request(Side::Supabase, "upsert", 40, false));
        let snapshot = Snapshot {
            ready: true,
            queue: Some(QueueDepth {
                pending: 2,
                synced: 7,
                failed: 1,
                oldest_pending_age_secs: Some(12),
            }),
            inbox_depth: None,
            dead_events: Some(3),
            forward: [(
                "tblWork".to_owned(),
                TableTotals {
                    synced: 7,
                    failed: 1,
                },
            )]
            .into(),
            backfill: vec![BackfillProgress {
                table: "tblPatients".to_owned(),
                enqueued: 500,
                rows: 1000,
            }],
            ..Snapshot::default()
        };
        let text = t.render(&snapshot).expect("render");
        for line in [
            "syncbridge_ready 1",
            "syncbridge_queue_items{status=\"failed\"} 1",
            "syncbridge_queue_oldest_pending_age_seconds 12",
            "syncbridge_inbox_dead_events 3",
            "syncbridge_items_synced_total{direction=\"sql-to-postgres\",table=\"tblWork\"} 7",
            "syncbridge_items_failed_total{direction=\"sql-to-postgres\",table=\"tblWork\"} 1",
            "syncbridge_sqlserver_request_duration_seconds_count{operation=\"claim\"} 1",
            "syncbridge_sqlserver_request_duration_seconds_bucket{le=\"0.004\",operation=\"claim\"} 1",
            "syncbridge_postgrest_request_duration_seconds_count{operation=\"upsert\"} 1",
            "syncbridge_outage{side=\"supabase\"} 1",
            "syncbridge_outage{side=\"sqlserver\"} 0",
            "syncbridge_config_fault{direction=\"sql-to-postgres\"} 0",
            "syncbridge_backfill_enqueued_rows{table=\"tblPatients\"} 500",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            !text.contains("syncbridge_inbox_depth "),
            "an unread part is left out: {text}"
        );
        t.record(request(Side::Supabase, "upsert", 5, true));
        let text = t.render(&Snapshot::default()).expect("render");
        assert!(
            text.contains("syncbridge_outage{side=\"supabase\"} 0"),
            "{text}"
        );
    }
}
