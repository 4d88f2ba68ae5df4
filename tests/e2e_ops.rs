//! Operating the daemon end to end: the metrics it serves agree with the database it filled, and
//! SIGHUP applies a new log level without a restart.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Sum of every sample of `name` (all label sets).
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_agree_with_the_database() {
    let Some(captures) = forwarder_captures() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::new("metrics");
    let db = tmp.path().join("daemon.db");
    let port = free_port();
    let mut d = Daemon::start(
        &broker,
        tmp.path(),
        &db,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    d.wait_consuming();
    let out = cbtrail(&[
        "publish",
        "--amqp",
        &broker.url(),
        "--connection-name",
        &unique("pub"),
        captures.to_str().unwrap(),
    ]);
    let published: f64 = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("messages="))
        .and_then(|n| n.parse().ok())
        .expect("publish summary");
    // Everything consumed and committed: the deliveries counter reaches what was published and
    // nothing is left unacknowledged.
    wait_until("all deliveries committed", Duration::from_secs(120), || {
        let m = scrape(port);
        total(&m, "cbtrail_deliveries_total") == published
            && total(&m, "cbtrail_unacked_deliveries") == 0.0
    });
    let m = scrape(port);
    assert_eq!(
        total(&m, "cbtrail_events_stored_total"),
        count(&db, "events") as f64,
        "{m}"
    );
    assert_eq!(
        total(&m, "cbtrail_notifications_stored_total"),
        count(&db, "notifications") as f64
    );
    assert_eq!(
        total(&m, "cbtrail_binaries_stored_total"),
        count(&db, "binaries") as f64
    );
    assert_eq!(
        total(&m, "cbtrail_quarantined_total"),
        count(&db, "quarantine") as f64
    );
    assert_eq!(total(&m, "cbtrail_bus_connected"), 1.0);
    assert!(count(&db, "events") > 4000);
    let st = d.terminate(Duration::from_secs(15));
    assert!(st.success(), "{}", d.log_text());
}

#[test]
fn sighup_applies_a_new_log_level_and_names_what_needs_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::new("sighup");
    let db = tmp.path().join("daemon.db");
    let mut d = Daemon::start(&broker, tmp.path(), &db, "[log]\nlevel = \"info\"\n");
    // RUST_LOG would win over the file; this test needs the file's level to rule.
    d.kill9();
    let log = tmp.path().join("hup.log");
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(&d.config)
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("consuming", Duration::from_secs(60), || {
        read().contains("consuming")
    });
    let text = std::fs::read_to_string(&d.config).unwrap();
    let text = text
        .replace("level = \"info\"", "level = \"debug\"")
        .replace("batch_max_latency_ms = 20", "batch_max_latency_ms = 30");
    std::fs::write(&d.config, text).unwrap();
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
    };
    kill("-HUP");
    wait_until("the reload to be logged", Duration::from_secs(30), || {
        read().contains("log level changed")
    });
    wait_until(
        "the restart-only key to be named",
        Duration::from_secs(30),
        || read().contains("store.batch_max_latency_ms"),
    );
    kill("-TERM");
    let st = child.wait().unwrap();
    assert!(st.success(), "{}", read());
}

/// Regression: `cbtrail events … | head -1` made cbtrail exit 1 with "Broken pipe"; a reader that
/// stops early is not a failure.
#[test]
fn a_reader_closing_the_pipe_early_is_not_an_error() {
    use std::io::BufRead;
    let Some(captures) = forwarder_captures() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("replayed.db");
    cbtrail(&[
        "replay",
        "--db",
        db.to_str().unwrap(),
        captures.join("protobuf").to_str().unwrap(),
    ]);
    let mut child = std::process::Command::new(bin())
        .args(["events", "--db", db.to_str().unwrap()])
        .arg("00000007-0000-0fd4-01d1-209aa22a57ee")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("event_timestamp"), "{first}");
    drop(out);
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "{}: {}",
        res.status,
        String::from_utf8_lossy(&res.stderr)
    );
}
