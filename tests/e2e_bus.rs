//! End to end through the real broker: everything published as the CB server would is stored exactly
//! as offline replay stores it, also when the daemon's connection is force-closed or the daemon is
//! killed mid-stream, and bad input lands in quarantine while consumption goes on.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Replay the captures into `db` and return its fingerprint.
fn expected(dir: &Path, captures: &Path) -> Fingerprint {
    let db = dir.join("expected.db");
    let out = cbtrail(&[
        "replay",
        "--db",
        db.to_str().unwrap(),
        captures.to_str().unwrap(),
    ]);
    assert!(out.contains("quarantined=0"), "replay: {out}");
    fingerprint(&db).expect("replayed database")
}

/// Publish the captures in the background at `rate` messages/s.
fn publish_in_background(
    broker: &Broker,
    captures: &Path,
    rate: Option<u32>,
) -> std::process::Child {
    let mut cmd = Command::new(bin());
    cmd.args(["publish", "--amqp", &broker.url(), "--connection-name"])
        .arg(unique("publisher"))
        .arg(captures)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    cmd.spawn().expect("starting cbtrail publish")
}

/// The number after `key=` in `cbtrail publish`'s summary line.
fn summary_count(summary: &str, key: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {summary}"))
}

fn finish_publisher(p: std::process::Child) {
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unroutable=0"), "{text}");
}

#[test]
fn daemon_stores_exactly_what_replay_stores() {
    let Some(captures) = forwarder_captures() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let want = expected(tmp.path(), &captures);
    let broker = Broker::new("plain");
    let db = tmp.path().join("daemon.db");
    let mut d = Daemon::start(&broker, tmp.path(), &db, "");
    d.wait_consuming();
    finish_publisher(publish_in_background(&broker, &captures, None));
    wait_for_fingerprint(&db, &want, Duration::from_secs(120), &|| d.log_text());
    d.stop_with_everything_acknowledged(&broker);
}

/// A daemon consuming the captures while they are still being published (1,500 messages/s),
/// stopped at the point where a fifth of the events are stored: the start of the fault tests.
struct MidStream {
    tmp: tempfile::TempDir,
    want: Fingerprint,
    total_events: u64,
    broker: Broker,
    db: std::path::PathBuf,
    daemon: Daemon,
    publisher: std::process::Child,
}

fn mid_stream(name: &str) -> Option<MidStream> {
    let captures = forwarder_captures()?;
    let tmp = tempfile::tempdir().unwrap();
    let want = expected(tmp.path(), &captures);
    let total_events = want["events"].0;
    let broker = Broker::new(name);
    let db = tmp.path().join("daemon.db");
    let mut daemon = Daemon::start(&broker, tmp.path(), &db, "");
    daemon.wait_consuming();
    let publisher = publish_in_background(&broker, &captures, Some(1500));
    wait_until(
        "a fifth of the events stored",
        Duration::from_secs(60),
        || count(&db, "events") >= total_events / 5,
    );
    Some(MidStream {
        tmp,
        want,
        total_events,
        broker,
        db,
        daemon,
        publisher,
    })
}

#[test]
fn forced_connection_close_mid_stream_loses_and_doubles_nothing() {
    let Some(MidStream {
        tmp: _tmp,
        want,
        broker,
        db,
        daemon: mut d,
        publisher,
        ..
    }) = mid_stream("close")
    else {
        return;
    };
    let closed = broker.close_connection(&d.connection_name);
    assert_eq!(
        closed, 1,
        "expected to close exactly the daemon's connection"
    );
    finish_publisher(publisher);
    wait_for_fingerprint(&db, &want, Duration::from_secs(120), &|| d.log_text());
    // The recovery is reported within a second of happening (the daemon looks every second).
    let noticed = (0..100).any(|_| {
        let log = d.log_text();
        if log.contains("connection recovered") || log.contains("bus session ended") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(
        noticed,
        "the daemon did not notice the close:\n{}",
        d.log_text()
    );
    d.stop_with_everything_acknowledged(&broker);
}

#[test]
fn sigkill_and_restart_mid_stream_loses_and_doubles_nothing() {
    let Some(MidStream {
        tmp,
        want,
        total_events,
        broker,
        db,
        daemon: mut d,
        publisher,
    }) = mid_stream("kill")
    else {
        return;
    };
    d.kill9();
    let stored_at_kill = count(&db, "events");
    assert!(
        stored_at_kill < total_events,
        "killed too late to prove anything"
    );
    d.restart(tmp.path());
    d.wait_consuming();
    finish_publisher(publisher);
    wait_for_fingerprint(&db, &want, Duration::from_secs(120), &|| d.log_text());
    d.stop_with_everything_acknowledged(&broker);
}

#[test]
fn bad_input_is_quarantined_intact_and_consumption_goes_on() {
    use cbtrail::model::DeliveryMeta;
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::new("quarantine");
    let db = tmp.path().join("daemon.db");
    let mut d = Daemon::start(&broker, tmp.path(), &db, "");
    d.wait_consuming();

    let meta = |exchange: &str, key: &str, ct: Option<&str>| DeliveryMeta {
        exchange: exchange.into(),
        routing_key: key.into(),
        content_type: ct.map(str::to_string),
        headers: [("sensorId".to_string(), serde_json::json!(3))].into(),
    };
    // A zip whose central directory is cut off, a bundle whose length prefix overruns it, random
    // bytes as a protobuf event, broken JSON, and a content type nobody knows.
    let mut zip = Vec::new();
    {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(&mut zip));
        w.start_file("EventLog_1.log", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, &[9u8; 300]).unwrap();
        w.finish().unwrap();
    }
    let truncated_zip = zip[..zip.len() / 2].to_vec();
    let mut overrun = 500u32.to_le_bytes().to_vec();
    overrun.extend_from_slice(&[1, 2, 3, 4, 5]);
    // Field 1 with wire type 7 (which does not exist), then noise: no protobuf parser accepts it.
    let mut random = vec![0x0Fu8];
    random.extend((0..96u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let bad: Vec<(DeliveryMeta, Vec<u8>, &str)> = vec![
        (
            meta("api.rawsensordata", "", Some("application/zip")),
            truncated_zip,
            "bad_zip",
        ),
        (
            meta("api.rawsensordata", "", Some("application/protobuf")),
            overrun,
            "bad_framing",
        ),
        (
            meta(
                "api.events",
                "ingress.event.filemod",
                Some("application/protobuf"),
            ),
            random,
            "bad_protobuf",
        ),
        (
            meta(
                "api.events",
                "watchlist.hit.process",
                Some("application/json"),
            ),
            b"{\"docs\": [".to_vec(),
            "bad_json",
        ),
        (
            meta("api.events", "watchlist.hit.process", Some("text/x-weird")),
            b"hello".to_vec(),
            "unknown_content_type",
        ),
    ];
    let good = (
        meta("api.events", "feed.synchronized", Some("application/json")),
        br#"{"feed_id": 4, "full_sync": false, "event_timestamp": 1447696175.07}"#.to_vec(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut p = cbtrail::bus::publish::Publisher::connect(&broker.url(), &unique("pub"), None)
            .await
            .unwrap();
        for (m, body, _) in &bad {
            p.publish(m, body).await.unwrap();
        }
        p.publish(&good.0, &good.1).await.unwrap();
        let r = p.finish().await.unwrap();
        assert_eq!(r.unroutable, 0);
    });
    wait_until(
        "the good message after the bad ones",
        Duration::from_secs(30),
        || count(&db, "notifications") == 1,
    );
    let conn = cbtrail::store::open_read_only(&db).unwrap();
    for (m, body, reason) in &bad {
        let stored: Vec<u8> = conn
            .query_row(
                "SELECT body FROM quarantine WHERE reason = ?1 AND routing_key = ?2",
                rusqlite::params![reason, m.routing_key],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("no {reason} quarantine row: {e}"));
        assert_eq!(&stored, body, "{reason} body not intact");
    }
    let headers: String = conn
        .query_row(
            "SELECT headers FROM quarantine WHERE reason = 'bad_zip'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(headers.contains("sensorId"), "{headers}");
    d.stop_with_everything_acknowledged(&broker);
}

/// Publishing before any queue is bound: every message comes back unroutable. cbtrail says so in
/// one line; lapin's own WARN per returned message (with the whole body) used to flood stderr.
#[test]
fn publishing_to_unbound_exchanges_says_so_in_one_line() {
    let broker = Broker::new("unbound");
    let out = Command::new(bin())
        .args([
            "publish",
            "--amqp",
            &broker.url(),
            "--connection-name",
            &unique("publisher"),
            "--synthetic",
            "hosts=2,processes=5,events=10,mode=bundles,bundle_records=20,seed=3",
        ])
        .output()
        .expect("running cbtrail publish");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let unroutable = summary_count(&stdout, "unroutable");
    assert!(unroutable > 0, "{stdout}");
    assert!(stderr.contains("reached no queue"), "{stderr}");
    assert!(!stderr.contains("returned"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `publish --declare-only` (the demo's and memory script's set-up) creates the CB server's two
/// exchanges as the server declares them and says that, rather than a "published messages=0"
/// summary that reads like a failed publish.
#[test]
fn declare_only_creates_the_server_exchanges_and_says_so() {
    let broker = Broker::without_exchanges("declare-only");
    let exchanges = || {
        rabbitmqctl(&[
            "list_exchanges",
            "-q",
            "-p",
            &broker.vhost,
            "name",
            "type",
            "durable",
        ])
    };
    assert!(!exchanges().contains("api.events"), "{}", exchanges());
    let out = cbtrail(&[
        "publish",
        "--amqp",
        &broker.url(),
        "--connection-name",
        &unique("declare"),
        "--declare-only",
    ]);
    assert_eq!(
        out.trim(),
        "declared exchanges api.events (topic, durable) and api.rawsensordata (fanout, durable); published nothing"
    );
    let listed: Vec<Vec<String>> = exchanges()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    for want in [
        ["api.events", "topic", "true"],
        ["api.rawsensordata", "fanout", "true"],
    ] {
        assert!(listed.iter().any(|row| row == &want), "{listed:?}");
    }
}

/// The prefetch window follows the traffic (`bus::window`): small single events open it, zip
/// bundles close it again, each time through a new subscription, and nothing is lost or doubled
/// across the resubscriptions.
#[test]
fn the_prefetch_window_follows_message_sizes_and_loses_and_doubles_nothing() {
    let singles = "hosts=2,processes=30,events=40,mode=singles,hit_rate=0,seed=21";
    let bundles =
        "hosts=1,processes=60,events=200,mode=bundles,bundle_records=1000,hit_rate=0,seed=22";
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for spec in [singles, bundles] {
        let cfg = cbtrail::synth::SynthConfig::parse(spec).unwrap();
        files.extend(
            cbtrail::synth::Synth::new(cfg).map(|m| cbtrail::capture::CaptureFile {
                path: "synthetic".into(),
                meta: m.meta,
                body: m.body,
            }),
        );
    }
    let expected_db = tmp.path().join("expected.db");
    cbtrail::replay::replay(&expected_db, files, 500).expect("replay");
    let want = fingerprint(&expected_db).unwrap();

    let broker = Broker::new("window");
    let db = tmp.path().join("daemon.db");
    // 256 KiB of bodies: about 1,000 single events (250 bytes on average here), and a few hundred
    // of the bundle traffic's messages (zips and the small JSON notifications that come with them,
    // 1,250 bytes on average); the first window, before any delivery was seen, is the floor of 64.
    let mut d = Daemon::start_with_keys(
        &broker,
        tmp.path(),
        &db,
        "prefetch = 3000\nprefetch_bytes = 262144",
        "batch_size = 500",
        "",
    );
    d.wait_consuming();
    let window = |d: &Daemon| -> Vec<u64> {
        d.log_text()
            .lines()
            .filter(|l| l.contains("prefetch window resized"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("prefetch="))
                    .and_then(|n| n.parse().ok())
            })
            .collect()
    };
    // When each phase has done what it is for, from the windows logged so far.
    type Reached = fn(&[u64]) -> bool;
    let opened: Reached = |sizes| sizes.last().is_some_and(|&n| n >= 600);
    // Resized again, to half the opened window or less.
    let closed: Reached =
        |sizes| sizes.len() >= 2 && sizes[sizes.len() - 1] * 2 <= sizes[sizes.len() - 2];
    let phases = [(singles, "opened", opened), (bundles, "closed", closed)];
    for (spec, what, done) in phases {
        finish_publisher(
            Command::new(bin())
                .args(["publish", "--amqp", &broker.url(), "--connection-name"])
                .arg(unique("publisher"))
                .args(["--synthetic", spec])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting cbtrail publish"),
        );
        let until = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let sizes = window(&d);
            if done(&sizes) {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "the window never {what}: {sizes:?}; queue {:?}, {:?} rows stored\n{}",
                broker.queue_state(&d.queue),
                ["events", "notifications", "quarantine", "binaries"].map(|t| count(&db, t)),
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    wait_for_fingerprint(&db, &want, Duration::from_secs(120), &|| d.log_text());
    // The live subscription has the last window.
    let consumers = rabbitmqctl(&[
        "list_consumers",
        "-p",
        &broker.vhost,
        "consumer_tag",
        "prefetch_count",
        "-q",
    ]);
    let last = *window(&d).last().unwrap();
    assert!(
        consumers.lines().any(|l| l.ends_with(&format!("\t{last}"))),
        "{consumers}"
    );
    d.stop_with_everything_acknowledged(&broker);
}

/// Our queue gets every binding the settings name, and a server exchange that does not exist is
/// reported as such (not as a dead consume channel or a bare AMQP error).
#[test]
fn topology_binds_every_key_and_names_a_missing_exchange() {
    use cbtrail::bus::{BusError, connect, declare_topology};
    use cbtrail::config::{AmqpSettings, Secret};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    let broker = Broker::new("topology");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut settings = AmqpSettings {
        url: Secret::new(broker.url()),
        queue: unique("topology"),
        ..AmqpSettings::default()
    };
    rt.block_on(async {
        let conn = connect(&settings, &unique("topology"), Arc::new(AtomicU64::new(0)))
            .await
            .expect("connecting");
        let channel = conn.create_channel().await.unwrap();
        declare_topology(&conn, &channel, &settings, 64)
            .await
            .expect("declaring our queue and its bindings");

        settings.raw_exchange = "api.no-such-exchange".into();
        let again = conn.create_channel().await.unwrap();
        match declare_topology(&conn, &again, &settings, 64).await {
            Err(BusError::MissingExchange { exchange, key, .. }) => {
                assert_eq!(exchange, "api.no-such-exchange");
                assert_eq!(key, "raw_exchange");
            }
            other => panic!("expected MissingExchange, got {other:?}"),
        }
        // The consume channel given to the failing call outlives the failed binding.
        assert!(again.status().connected(), "{:?}", again.status());
        let _ = conn.close(200, "done".into()).await;
    });

    let bindings = rabbitmqctl(&[
        "list_bindings",
        "-p",
        &broker.vhost,
        "source_name",
        "destination_name",
        "routing_key",
    ]);
    let ours: Vec<(&str, &str)> = bindings
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3 && f[1] == settings.queue && !f[0].is_empty()).then(|| (f[0], f[2]))
        })
        .collect();
    let defaults = AmqpSettings::default();
    let mut want: Vec<(&str, &str)> = defaults
        .routing_keys
        .iter()
        .map(|k| ("api.events", k.as_str()))
        .collect();
    want.push(("api.rawsensordata", ""));
    let mut got = ours;
    got.sort();
    want.sort();
    assert_eq!(got, want, "{bindings}");
}

/// `cbtrail publish` sends transient messages, as the CB server does (its captured zip bundles
/// carry delivery mode 1), and persistent ones only with `--persistent`.
#[test]
fn publish_is_transient_as_the_server_is_unless_asked_for_persistent() {
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    let broker = Broker::new("delivery-mode");
    let queue = unique("modes");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = rt.block_on(async {
        let conn = lapin::Connection::connect(&broker.url(), Default::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            queue.as_str().into(),
            "api.rawsensordata".into(),
            "".into(),
            QueueBindOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
        (conn, ch)
    });
    let spec = "hosts=1,processes=2,events=3,mode=bundles,bundle_records=10,hit_rate=0,seed=5";
    let url = broker.url();
    for (flag, want) in [(None, 1u8), (Some("--persistent"), 2u8)] {
        let name = unique("publisher");
        let mut args = vec![
            "publish",
            "--amqp",
            &url,
            "--connection-name",
            &name,
            "--synthetic",
            spec,
        ];
        args.extend(flag);
        cbtrail(&args);
        let modes = rt.block_on(async {
            let mut modes = Vec::new();
            while let Some(m) = conn
                .1
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                modes.push(m.delivery.properties.delivery_mode().unwrap_or(0));
            }
            modes
        });
        assert!(!modes.is_empty(), "nothing published with {flag:?}");
        assert!(
            modes.iter().all(|m| *m == want),
            "{flag:?}: delivery modes {modes:?}, want all {want}"
        );
    }
    // The library's publisher (the bench's and the tests') defaults to transient too.
    let (meta, body) = rt.block_on(async {
        let m = cbtrail::synth::Synth::new(cbtrail::synth::SynthConfig::parse(spec).unwrap())
            .find(|m| m.meta.exchange == "api.rawsensordata")
            .unwrap();
        let mut p = cbtrail::bus::publish::Publisher::connect(&broker.url(), &unique("lib"), None)
            .await
            .unwrap();
        p.publish(&m.meta, &m.body).await.unwrap();
        p.finish().await.unwrap();
        (m.meta, m.body)
    });
    let got = rt
        .block_on(
            conn.1
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
        )
        .unwrap()
        .expect("the library publisher's message");
    assert_eq!(got.delivery.data, body, "{meta:?}");
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(1));
    rt.block_on(conn.0.close(200, "done".into())).unwrap();
}

/// SIGTERM while a batch is still waiting for its latency: the daemon commits it and acknowledges
/// it before it closes its channel. The channel used to close as the bus session ended, before the
/// pipeline's last acknowledgements went out; they failed, and the broker put the whole batch back
/// in the queue to be delivered again on the next start (stored once, but never acknowledged).
#[test]
fn sigterm_commits_and_acknowledges_the_batch_in_hand() {
    let broker = Broker::new("sigterm-in-hand");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("daemon.db");
    let mut d = Daemon::start_with_keys(
        &broker,
        tmp.path(),
        &db,
        "",
        "batch_max_latency_ms = 60000",
        "",
    );
    d.wait_consuming();
    let summary = cbtrail(&[
        "publish",
        "--amqp",
        &broker.url(),
        "--connection-name",
        &unique("publisher"),
        "--synthetic",
        "hosts=1,processes=3,events=5,mode=singles,hit_rate=0,seed=9",
    ]);
    let published = summary_count(&summary, "messages");
    // Everything delivered and held in the open batch, nothing committed yet.
    wait_until(
        "every message delivered and unacknowledged",
        Duration::from_secs(30),
        || broker.queue_state(&d.queue) == Some((0, published, 1)),
    );
    assert_eq!(count(&db, "notifications") + count(&db, "events"), 0);
    d.stop_with_everything_acknowledged(&broker);
    assert!(count(&db, "events") > 0, "{}", d.log_text());
}
