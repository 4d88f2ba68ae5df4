//! Every Prometheus metric cbtrail exports, named and described in one place.
//!
//! Names are written in full, exactly as Prometheus shows them (`cbtrail_deliveries_total`,
//! `cbtrail_commit_duration_seconds`): the exporter's "recommended naming" is left off, so the name in
//! this file, in [`ALL_NAMES`], in `deploy/grafana-dashboard.json` and in `deploy/prometheus-alerts.yml`
//! is one and the same string, and a grep finds every use. Histograms are real Prometheus histograms
//! with explicit buckets (never summaries) so p50/p99 can be aggregated with `histogram_quantile`.
//!
//! Call sites use the small typed functions below ([`delivery`], [`batch_committed`], …), one line
//! each. Every label value is taken from a closed set (known exchanges, content types, event types,
//! quarantine reasons, notification kind shapes) so a hostile or misconfigured publisher cannot blow up
//! the number of series. Counters with known label values are created at zero by [`install`], so
//! `rate()` and `increase()` see the first increment and alerts need no `absent()` guards.
//!
//! Before [`install`] (tests, `cbtrail` subcommands that are not the daemon) every function is a cheap
//! no-op: the `metrics` facade drops values when no recorder is installed.

use crate::model::{DeliveryMeta, EventType, QuarantineReason};
use crate::store::BatchStats;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the exporter listens unless configured otherwise: loopback only (Prometheus on the same host,
/// or a reverse proxy); 9464 is the port commonly used by Prometheus exporters of this kind.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9464,
));

/// AMQP deliveries consumed; labels `exchange`, `content_type`.
pub const DELIVERIES: &str = "cbtrail_deliveries_total";
/// Body bytes of consumed deliveries; label `exchange`.
pub const CONSUMED_BYTES: &str = "cbtrail_consumed_bytes_total";
/// Raw endpoint events newly stored; label `type` (the `events.event_type` column value).
pub const EVENTS_STORED: &str = "cbtrail_events_stored_total";
/// Binary metadata rows newly stored.
pub const BINARIES_STORED: &str = "cbtrail_binaries_stored_total";
/// JSON notifications newly stored; label `kind` (ids removed: `watchlist.hit.process`).
pub const NOTIFICATIONS_STORED: &str = "cbtrail_notifications_stored_total";
/// Inputs kept in the quarantine table; label `reason`.
pub const QUARANTINED: &str = "cbtrail_quarantined_total";
/// Records whose key was already stored (redeliveries), counted and not stored again.
pub const DUPLICATES: &str = "cbtrail_duplicates_ignored_total";
/// Histogram: deliveries per committed batch.
pub const BATCH_DELIVERIES: &str = "cbtrail_batch_deliveries";
/// Histogram: records per committed batch.
pub const BATCH_RECORDS: &str = "cbtrail_batch_records";
/// Histogram: time to write and commit one batch.
pub const COMMIT_DURATION: &str = "cbtrail_commit_duration_seconds";
/// Gauge: deliveries received and not yet acked (in memory or being committed).
pub const UNACKED: &str = "cbtrail_unacked_deliveries";
/// Gauge: the prefetch window the consumer subscribed with (sized to the mean message; see
/// `bus::window`).
pub const PREFETCH: &str = "cbtrail_prefetch_window";
/// Deliveries whose ack did not reach the broker (their channel was replaced by a reconnect, or the
/// ack call failed): the broker redelivers them and the store ignores the copies.
pub const ACK_FAILURES: &str = "cbtrail_ack_failures_total";
/// Gauge: 1 while the bus connection and consumer are up, else 0.
pub const BUS_CONNECTED: &str = "cbtrail_bus_connected";
/// Times the bus connection was re-established after a loss.
pub const BUS_RECONNECTS: &str = "cbtrail_bus_reconnects_total";
/// Export jobs by state transition; label `state` (`queued`, `done`, `failed`).
pub const EXPORT_JOBS: &str = "cbtrail_export_jobs_total";
/// Histogram: time from an export job's start to its files being written.
pub const EXPORT_DURATION: &str = "cbtrail_export_duration_seconds";
/// Gauge: size of the database files; label `file` (`main`, `wal`).
pub const DATABASE_SIZE: &str = "cbtrail_database_size_bytes";
/// Gauge: wall-clock time (Unix seconds) of the last consumed delivery of any kind.
pub const LAST_DELIVERY: &str = "cbtrail_last_delivery_timestamp_seconds";
/// Gauge: wall-clock time (Unix seconds) at which the last raw endpoint event was committed. Raw events
/// flow constantly on a server with sensors, so this going stale means the bus (or the server's
/// broadcast setting) went silent even if notifications still arrive.
pub const LAST_EVENT: &str = "cbtrail_last_event_timestamp_seconds";
/// Gauge: always 1, label `version`.
pub const BUILD_INFO: &str = "cbtrail_build_info";

/// Every series family name as Prometheus shows it on the scrape page, histograms with their
/// `_bucket`, `_sum` and `_count` series. Dashboards and alert rules may use only these.
pub const ALL_NAMES: &[&str] = &[
    DELIVERIES,
    CONSUMED_BYTES,
    EVENTS_STORED,
    BINARIES_STORED,
    NOTIFICATIONS_STORED,
    QUARANTINED,
    DUPLICATES,
    "cbtrail_batch_deliveries_bucket",
    "cbtrail_batch_deliveries_sum",
    "cbtrail_batch_deliveries_count",
    "cbtrail_batch_records_bucket",
    "cbtrail_batch_records_sum",
    "cbtrail_batch_records_count",
    "cbtrail_commit_duration_seconds_bucket",
    "cbtrail_commit_duration_seconds_sum",
    "cbtrail_commit_duration_seconds_count",
    UNACKED,
    PREFETCH,
    ACK_FAILURES,
    BUS_CONNECTED,
    BUS_RECONNECTS,
    EXPORT_JOBS,
    "cbtrail_export_duration_seconds_bucket",
    "cbtrail_export_duration_seconds_sum",
    "cbtrail_export_duration_seconds_count",
    DATABASE_SIZE,
    LAST_DELIVERY,
    LAST_EVENT,
    BUILD_INFO,
];

/// Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: its name (as in code and on the `# TYPE` line), type, unit and help text.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub help: &'static str,
}

/// Every family, described once; [`install`] registers these descriptions.
pub const FAMILIES: &[Family] = &[
    Family {
        name: DELIVERIES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "AMQP deliveries consumed, by exchange and content type.",
    },
    Family {
        name: CONSUMED_BYTES,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Body bytes of consumed AMQP deliveries, by exchange.",
    },
    Family {
        name: EVENTS_STORED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Raw endpoint events newly stored, by event type.",
    },
    Family {
        name: BINARIES_STORED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Binary metadata records (module info) newly stored.",
    },
    Family {
        name: NOTIFICATIONS_STORED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "JSON notifications newly stored, by kind (routing key shape without ids).",
    },
    Family {
        name: QUARANTINED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Inputs that could not be decoded and were kept in the quarantine table, by reason.",
    },
    Family {
        name: DUPLICATES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Records already stored (redeliveries) that were ignored.",
    },
    Family {
        name: BATCH_DELIVERIES,
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "AMQP deliveries per committed batch.",
    },
    Family {
        name: BATCH_RECORDS,
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "Records per committed batch, stored and duplicate.",
    },
    Family {
        name: COMMIT_DURATION,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time to write and commit one batch to SQLite.",
    },
    Family {
        name: UNACKED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Deliveries received from the broker and not yet acknowledged.",
    },
    Family {
        name: PREFETCH,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Unacknowledged deliveries the broker may push ahead (the consumer's prefetch window).",
    },
    Family {
        name: ACK_FAILURES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Deliveries whose ack did not reach the broker (channel replaced by a reconnect, or the ack failed); they are redelivered and stored once.",
    },
    Family {
        name: BUS_CONNECTED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "1 while the bus connection and consumer are up, 0 otherwise.",
    },
    Family {
        name: BUS_RECONNECTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Bus connections re-established after a loss.",
    },
    Family {
        name: EXPORT_JOBS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Export jobs by state transition (queued, done, failed).",
    },
    Family {
        name: EXPORT_DURATION,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time to run one export job.",
    },
    Family {
        name: DATABASE_SIZE,
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "Size of the SQLite database files (main file and write-ahead log).",
    },
    Family {
        name: LAST_DELIVERY,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Unix time of the last consumed delivery (process start until the first one).",
    },
    Family {
        name: LAST_EVENT,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Unix time at which the last raw endpoint event was committed (process start until the first one).",
    },
    Family {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Always 1; the version label says which cbtrail is running.",
    },
];

/// Batch sizes in deliveries (the configured batch size is 1,000 by default).
const BATCH_DELIVERY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0,
];
/// Batch sizes in records. A single zip bundle can carry hundreds of events, so the top buckets are
/// well above the delivery batch size.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 25000.0, 50000.0,
];
/// Commit latency: SQLite in WAL mode commits a normal batch in milliseconds; seconds mean trouble.
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Export duration: small trees take milliseconds, a busy host's process with a deep tree seconds.
const EXPORT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Exchanges cbtrail binds to; anything else is reported as `other`.
const KNOWN_EXCHANGES: &[&str] = &["api.events", "api.rawsensordata"];
/// Content types the CB server publishes; anything else is reported as `other`, none as `none`.
const KNOWN_CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/protobuf",
    "application/zip",
];
/// First routing-key segments of CB notifications; a kind starting otherwise is reported as `other`.
const KNOWN_KIND_ROOTS: &[&str] = &[
    "watchlist",
    "feed",
    "alert",
    "binaryinfo",
    "binarystore",
    "events",
    "task",
    "cmd",
    "ingress",
];
/// Longest kind kept as a label value; CB's longest is about 40 characters.
const MAX_KIND_LEN: usize = 64;

/// Errors of [`install`].
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A recorder is installed already (a second daemon in the same process, tests). Nothing was
    /// bound; the first exporter keeps serving every metric.
    #[error("metrics exporter on {addr}: an exporter is already installed in this process")]
    AlreadyInstalled { addr: SocketAddr },
    #[error("metrics exporter on {addr}: {source}")]
    Exporter {
        addr: SocketAddr,
        #[source]
        source: BuildError,
    },
}

/// Start the Prometheus exporter on `addr` (HTTP, any path answers with the scrape page) and install
/// it as the global recorder. Call once, inside the tokio runtime: the listener is bound before this
/// returns (so "address in use" is an error here), and the HTTP server runs as a task on the runtime.
///
/// Describes every family, creates the known-label counters at zero, sets `cbtrail_build_info` and
/// starts the "last delivery/event" clocks at now, so staleness alerts measure from process start.
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    // Checked before binding: the exporter binds its listener before it tries to become the global
    // recorder, and a second one would be left serving an empty registry.
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(MetricsError::AlreadyInstalled { addr });
    }
    let result = build_and_install(addr);
    if result.is_err() {
        INSTALLED.store(false, Ordering::SeqCst);
    }
    result
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

fn build_and_install(addr: SocketAddr) -> Result<(), MetricsError> {
    let err = |source| MetricsError::Exporter { addr, source };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .with_recommended_naming(false)
        .set_buckets_for_metric(
            Matcher::Full(BATCH_DELIVERIES.to_owned()),
            BATCH_DELIVERY_BUCKETS,
        )
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(BATCH_RECORDS.to_owned()), BATCH_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(COMMIT_DURATION.to_owned()), COMMIT_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(EXPORT_DURATION.to_owned()), EXPORT_BUCKETS)
        .map_err(err)?
        .install()
        .map_err(err)?;
    register();
    Ok(())
}

/// Describe every family and create the series whose label values are known in advance.
fn register() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => describe_counter!(f.name, f.unit, f.help),
            Kind::Gauge => describe_gauge!(f.name, f.unit, f.help),
            Kind::Histogram => describe_histogram!(f.name, f.unit, f.help),
        }
    }
    for t in EventType::ALL {
        counter!(EVENTS_STORED, "type" => t.as_str()).increment(0);
    }
    for r in QuarantineReason::ALL {
        counter!(QUARANTINED, "reason" => r.as_str()).increment(0);
    }
    for state in ExportState::ALL {
        counter!(EXPORT_JOBS, "state" => state.as_str()).increment(0);
    }
    counter!(BINARIES_STORED).increment(0);
    counter!(DUPLICATES).increment(0);
    counter!(ACK_FAILURES).increment(0);
    counter!(BUS_RECONNECTS).increment(0);
    gauge!(BUS_CONNECTED).set(0.0);
    gauge!(UNACKED).set(0.0);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let now = unix_seconds();
    gauge!(LAST_DELIVERY).set(now);
    gauge!(LAST_EVENT).set(now);
}

/// Deliveries consumed (with their body sizes), counted once per run of equal labels: a burst
/// is counted with a handful of registry look-ups rather than four per delivery, which for single
/// events cost the consumer more than receiving them.
pub fn deliveries<'a>(deliveries: impl IntoIterator<Item = (&'a DeliveryMeta, usize)>) {
    fn flush(run: Option<(&'static str, &'static str, u64, u64)>) {
        if let Some((exchange, content_type, n, bytes)) = run {
            counter!(DELIVERIES, "exchange" => exchange, "content_type" => content_type)
                .increment(n);
            counter!(CONSUMED_BYTES, "exchange" => exchange).increment(bytes);
        }
    }
    let mut run: Option<(&'static str, &'static str, u64, u64)> = None;
    let mut total = 0u64;
    for (meta, bytes) in deliveries {
        let exchange = exchange_label(&meta.exchange);
        let content_type = content_type_label(meta.content_type.as_deref());
        match &mut run {
            Some((e, c, n, b)) if *e == exchange && *c == content_type => {
                *n += 1;
                *b += bytes as u64;
            }
            _ => {
                flush(run.take());
                run = Some((exchange, content_type, 1, bytes as u64));
            }
        }
        total += 1;
    }
    flush(run);
    if total > 0 {
        gauge!(UNACKED).increment(total as f64);
        gauge!(LAST_DELIVERY).set(unix_seconds());
    }
}

/// The consumer subscribed with a prefetch window of `n` deliveries.
pub fn prefetch_window(n: u16) {
    gauge!(PREFETCH).set(f64::from(n));
}

/// `n` deliveries left the unacked set (their batch's acks were sent, successfully or not).
pub fn unacked_sub(n: u64) {
    gauge!(UNACKED).decrement(n as f64);
}

/// A batch of `deliveries` committed with `stats` (what was new, duplicates, quarantine) after
/// `latency` spent writing, committing and syncing it to disk. Notifications by kind come
/// separately through [`notifications_stored`], since [`BatchStats`] counts them only in total.
pub fn batch_committed(stats: &BatchStats, deliveries: u64, latency: Duration) {
    for (t, n) in &stats.events_by_type {
        counter!(EVENTS_STORED, "type" => t.as_str()).increment(*n);
    }
    for (reason, n) in &stats.quarantined_by_reason {
        counter!(QUARANTINED, "reason" => quarantine_label(reason)).increment(*n);
    }
    for (kind, n) in &stats.notifications_by_kind {
        notifications_stored(kind, *n);
    }
    counter!(BINARIES_STORED).increment(stats.binaries);
    counter!(DUPLICATES).increment(stats.duplicates);
    let records =
        stats.events + stats.binaries + stats.notifications + stats.quarantined + stats.duplicates;
    histogram!(BATCH_DELIVERIES).record(deliveries as f64);
    histogram!(BATCH_RECORDS).record(records as f64);
    histogram!(COMMIT_DURATION).record(latency.as_secs_f64());
    if stats.events > 0 {
        gauge!(LAST_EVENT).set(unix_seconds());
    }
}

/// `count` notifications of `kind` (`Notification::kind`, ids already removed) newly stored.
pub fn notifications_stored(kind: &str, count: u64) {
    counter!(NOTIFICATIONS_STORED, "kind" => kind_label(kind)).increment(count);
}

/// `n` deliveries whose ack did not reach the broker.
pub fn acks_failed(n: u64) {
    counter!(ACK_FAILURES).increment(n);
}

/// The bus connection and consumer are up (`true`) or lost (`false`).
pub fn connection_up(up: bool) {
    gauge!(BUS_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

/// The connection was re-established after a loss.
pub fn reconnect() {
    counter!(BUS_RECONNECTS).increment(1);
}

/// State an export job moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportState {
    /// A process hit created the job.
    Queued,
    /// Its files were written.
    Done,
    /// It gave up with an error (recorded in the job row).
    Failed,
}

impl ExportState {
    pub const ALL: [ExportState; 3] = [ExportState::Queued, ExportState::Done, ExportState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            ExportState::Queued => "queued",
            ExportState::Done => "done",
            ExportState::Failed => "failed",
        }
    }
}

/// An export job was queued.
pub fn export_queued() {
    counter!(EXPORT_JOBS, "state" => ExportState::Queued.as_str()).increment(1);
}

/// An export job finished (`ok`: done, else failed) after running for `latency`.
pub fn export_finished(ok: bool, latency: Duration) {
    let state = if ok {
        ExportState::Done
    } else {
        ExportState::Failed
    };
    counter!(EXPORT_JOBS, "state" => state.as_str()).increment(1);
    histogram!(EXPORT_DURATION).record(latency.as_secs_f64());
}

/// Record the sizes of the database at `path` and its `-wal` file. A missing WAL (checkpointed and
/// closed, or not WAL mode) counts as 0. If the main file cannot be read the gauges keep their last
/// value and the reason is logged at debug level (this runs every few seconds).
pub fn database_size(path: &Path) {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mut wal_path = path.as_os_str().to_owned();
            wal_path.push("-wal");
            let wal = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
            gauge!(DATABASE_SIZE, "file" => "main").set(m.len() as f64);
            gauge!(DATABASE_SIZE, "file" => "wal").set(wal as f64);
        }
        Err(e) => tracing::debug!(path = %path.display(), error = %e, "database size unknown"),
    }
}

fn unix_seconds() -> f64 {
    // A clock before 1970 is a broken host; reporting 0 makes "seconds since" alerts fire, as they
    // should.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn exchange_label(exchange: &str) -> &'static str {
    KNOWN_EXCHANGES
        .iter()
        .find(|e| **e == exchange)
        .copied()
        .unwrap_or("other")
}

fn content_type_label(content_type: Option<&str>) -> &'static str {
    let Some(ct) = content_type else {
        return "none";
    };
    // Parameters (`; charset=utf-8`) and case do not make a different content type.
    let base = ct.split(';').next().unwrap_or("").trim();
    KNOWN_CONTENT_TYPES
        .iter()
        .find(|k| k.eq_ignore_ascii_case(base))
        .copied()
        .unwrap_or("other")
}

fn quarantine_label(reason: &str) -> &'static str {
    QuarantineReason::ALL
        .iter()
        .map(|r| r.as_str())
        .find(|r| *r == reason)
        .unwrap_or("other")
}

/// Keep a notification kind as a label value only if it has the shape of a CB routing key (known first
/// segment, lower-case dotted words, no numeric segment that an id could hide in); else `other`.
fn kind_label(kind: &str) -> String {
    let root = kind.split('.').next().unwrap_or("");
    let shaped = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && KNOWN_KIND_ROOTS.contains(&root)
        && kind
            .split('.')
            .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    if shaped {
        kind.to_owned()
    } else {
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_names_match_families() {
        let mut expected = Vec::new();
        for f in FAMILIES {
            match f.kind {
                Kind::Histogram => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        expected.push(format!("{}{suffix}", f.name));
                    }
                }
                _ => expected.push(f.name.to_owned()),
            }
        }
        let all: Vec<String> = ALL_NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(all, expected);
        assert_eq!(
            ALL_NAMES.iter().collect::<HashSet<_>>().len(),
            ALL_NAMES.len()
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for f in FAMILIES {
            assert!(f.name.starts_with("cbtrail_"), "{}", f.name);
            assert!(
                f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                f.name
            );
            // Counters end in _total, nothing else does.
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            match f.unit {
                Unit::Seconds => assert!(f.name.contains("_seconds"), "{}", f.name),
                Unit::Bytes => assert!(f.name.contains("_bytes"), "{}", f.name),
                _ => {}
            }
            assert!(!f.help.is_empty());
        }
    }

    #[test]
    fn label_values_are_from_closed_sets() {
        assert_eq!(exchange_label("api.events"), "api.events");
        assert_eq!(exchange_label("api.rawsensordata"), "api.rawsensordata");
        assert_eq!(exchange_label("amq.topic"), "other");
        assert_eq!(content_type_label(None), "none");
        assert_eq!(
            content_type_label(Some("application/zip")),
            "application/zip"
        );
        assert_eq!(
            content_type_label(Some("Application/JSON; charset=utf-8")),
            "application/json"
        );
        assert_eq!(content_type_label(Some("text/plain")), "other");
        assert_eq!(quarantine_label("bad_zip"), "bad_zip");
        assert_eq!(quarantine_label("something new"), "other");
    }

    #[test]
    fn kind_labels_keep_cb_shapes_and_drop_the_rest() {
        for k in [
            "watchlist.hit.process",
            "feed.ingress.hit.process",
            "alert.watchlist.hit.query.binary",
            "binaryinfo.host.observed",
            "events.partition.created",
            "task.error.logged",
        ] {
            assert_eq!(kind_label(k), k);
        }
        for k in [
            "",
            "watchlist.12.hit.process",
            "feed.24.ingress.hit.process",
            "Watchlist.hit.process",
            "evil.hit",
            "watchlist..hit",
            "watchlist.hit.process-00000001",
            &"watchlist.x".repeat(20),
        ] {
            assert_eq!(kind_label(k), "other", "{k}");
        }
    }

    #[test]
    fn recording_without_a_recorder_is_a_no_op() {
        // Library users and CLI subcommands never install the exporter; the functions must not fail.
        let meta = DeliveryMeta {
            exchange: "api.events".into(),
            content_type: Some("application/json".into()),
            ..DeliveryMeta::default()
        };
        deliveries([(&meta, 10)]);
        batch_committed(&BatchStats::default(), 1, Duration::from_millis(1));
        notifications_stored("watchlist.hit.process", 1);
        export_finished(false, Duration::from_secs(1));
    }
}
