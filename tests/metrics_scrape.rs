//! The exporter as Prometheus sees it: install on a free loopback port, record one of everything,
//! scrape over plain HTTP and check every name in `metrics::ALL_NAMES` with its `# TYPE` line.

use cbtrail::metrics::{self, FAMILIES, Kind};
use cbtrail::model::{DeliveryMeta, EventType};
use cbtrail::store::BatchStats;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

fn free_port() -> SocketAddr {
    // The exporter does not report the port it bound, so pick one first. The tiny window between
    // dropping this listener and the exporter binding is fine on a test machine.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    l.local_addr().expect("local addr")
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to exporter");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read scrape");
    assert!(buf.starts_with("HTTP/1.1 200"), "status: {buf:.200}");
    buf
}

/// Value of the first sample line starting with `prefix` (name plus labels).
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_shows_every_name_with_its_type() {
    // A port in use is an error from install itself, and does not use up the one installation.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = metrics::install(taken.local_addr().unwrap()).unwrap_err();
    assert!(
        matches!(err, metrics::MetricsError::Exporter { .. }),
        "{err}"
    );
    drop(taken);

    let addr = free_port();
    metrics::install(addr).expect("install exporter");

    // A second install fails cleanly without binding anything.
    let second = free_port();
    let err = metrics::install(second).unwrap_err();
    assert!(
        matches!(err, metrics::MetricsError::AlreadyInstalled { .. }),
        "{err}"
    );
    assert!(
        TcpListener::bind(second).is_ok(),
        "second install bound its port"
    );

    let meta = |exchange: &str, content_type: &str| DeliveryMeta {
        exchange: exchange.into(),
        content_type: Some(content_type.into()),
        ..DeliveryMeta::default()
    };
    let zip = meta("api.rawsensordata", "application/zip");
    let json = meta("api.events", "application/json");
    // Runs of equal labels and a change in the middle of a burst.
    metrics::deliveries(std::iter::repeat_n((&zip, 4620), 5).chain([(&json, 100)]));
    metrics::deliveries(std::iter::repeat_n((&zip, 4620), 4));
    let mut stats = BatchStats {
        events: 3,
        binaries: 1,
        notifications: 1,
        quarantined: 1,
        duplicates: 2,
        ..BatchStats::default()
    };
    stats.events_by_type.insert(EventType::Filemod, 2);
    stats.events_by_type.insert(EventType::Procstart, 1);
    stats.quarantined_by_reason.insert("bad_zip", 1);
    metrics::batch_committed(&stats, 10, Duration::from_millis(3));
    metrics::notifications_stored("watchlist.hit.process", 1);
    metrics::unacked_sub(3);
    metrics::prefetch_window(20_000);
    metrics::acks_failed(5);
    metrics::connection_up(true);
    metrics::reconnect();
    metrics::export_queued();
    metrics::export_finished(true, Duration::from_millis(250));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cbtrail.db");
    std::fs::write(&db, vec![0u8; 4096 * 10]).unwrap();
    std::fs::write(dir.path().join("cbtrail.db-wal"), vec![0u8; 1024]).unwrap();
    metrics::database_size(&db);
    metrics::database_size(&dir.path().join("missing.db"));

    let body = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .unwrap();

    for f in FAMILIES {
        let type_line = format!("# TYPE {} {}", f.name, f.kind.as_str());
        assert!(
            body.contains(&type_line),
            "missing {type_line:?} in\n{body}"
        );
        assert!(
            body.contains(&format!("# HELP {} ", f.name)),
            "missing HELP for {}",
            f.name
        );
    }
    for name in metrics::ALL_NAMES {
        let has_sample = body.lines().any(|l| {
            !l.starts_with('#')
                && (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        });
        assert!(has_sample, "no sample for {name} in\n{body}");
    }
    // No summaries: histograms must come out as buckets.
    assert!(!body.contains(" summary"), "summary found:\n{body}");
    assert!(!body.contains("quantile="), "quantiles found:\n{body}");

    // Values and labels as recorded.
    assert_eq!(
        sample(&body, "cbtrail_events_stored_total{type=\"filemod\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&body, "cbtrail_events_stored_total{type=\"regmod\"}"),
        Some(0.0),
        "known label values are pre-registered at zero"
    );
    assert_eq!(
        sample(&body, "cbtrail_quarantined_total{reason=\"bad_zip\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "cbtrail_consumed_bytes_total{exchange=\"api.rawsensordata\"}"
        ),
        Some(9.0 * 4620.0)
    );
    assert_eq!(sample(&body, "cbtrail_duplicates_ignored_total"), Some(2.0));
    assert_eq!(sample(&body, "cbtrail_batch_records_sum"), Some(8.0));
    assert_eq!(
        sample(&body, "cbtrail_commit_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "cbtrail_commit_duration_seconds_bucket{le=\"0.005\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "cbtrail_commit_duration_seconds_bucket{le=\"0.0025\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&body, "cbtrail_unacked_deliveries"),
        Some(7.0),
        "10 received, 3 acked"
    );
    assert_eq!(sample(&body, "cbtrail_batch_deliveries_sum"), Some(10.0));
    assert_eq!(sample(&body, "cbtrail_bus_connected"), Some(1.0));
    assert_eq!(sample(&body, "cbtrail_ack_failures_total"), Some(5.0));
    assert_eq!(
        sample(&body, "cbtrail_export_jobs_total{state=\"done\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "cbtrail_database_size_bytes{file=\"main\"}"),
        Some(40960.0)
    );
    assert_eq!(
        sample(&body, "cbtrail_database_size_bytes{file=\"wal\"}"),
        Some(1024.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!(
                "cbtrail_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_event = sample(&body, "cbtrail_last_event_timestamp_seconds ").unwrap();
    assert!(
        (now - last_event).abs() < 60.0,
        "last event {last_event} vs now {now}"
    );

    // Every TYPE line of ours belongs to a known family (nothing exported that ALL_NAMES lacks).
    for line in body.lines().filter(|l| l.starts_with("# TYPE cbtrail_")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            FAMILIES.iter().any(|f| f.name == name),
            "undocumented family {name}"
        );
    }
    assert!(FAMILIES.iter().any(|f| f.kind == Kind::Histogram));
}
