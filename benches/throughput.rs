//! Ingest throughput against the local RabbitMQ, as ratios against a baseline measured in the same
//! run (timings on a shared machine are noisy; ratios are not).
//!
//! ```text
//! bash scripts/bench.sh                      # or: cargo bench --bench throughput -- [singles=N] [events=N] [sync=normal]
//! ```
//!
//! For each scenario the generator's traffic is published once into two queues bound alike:
//! - a **null consumer** drains the first: same prefetch, acknowledges (multiple) every batch-size
//!   deliveries and does nothing else: the broker's ceiling for this traffic on this machine;
//! - **cbtrail** (the daemon's own `run_until`, in process) drains the second: decode, store,
//!   commit (synchronous=FULL), then acknowledge.
//!
//! Both clocks run from "connect" to "the last delivery is done" (acked for the null consumer,
//! committed for cbtrail). The expected rows come from an offline replay of the same messages,
//! and cbtrail's database must end equal to it (fingerprint), so the figures are for correct work.
//!
//! Scenarios: single protobuf events on `api.events` (target: cbtrail ≥ 0.9 × the null consumer)
//! and zip bundles on `api.rawsensordata` (target: ≥ 250,000 committed events/s).

use cbtrail::bus::publish::Publisher;
use cbtrail::config::Settings;
use cbtrail::model::DeliveryMeta;
use cbtrail::shutdown::Shutdown;
use cbtrail::synth::{Synth, SynthConfig};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PREFETCH: u16 = 2000;
const BATCH: usize = 1000;

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl (run scripts/ensure-rabbitmq.sh)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Scenario {
    name: &'static str,
    spec: String,
}

struct Measured {
    messages: u64,
    events: u64,
    null_secs: f64,
    cbtrail_secs: f64,
}

fn main() {
    let mut singles: u64 = 200_000;
    let mut bundle_events: u64 = 1_000_000;
    let mut synchronous = cbtrail::store::Synchronous::Full;
    for a in std::env::args().skip(1) {
        if a == "sync=normal" {
            synchronous = cbtrail::store::Synchronous::Normal;
        }
        if let Some(v) = a.strip_prefix("singles=") {
            singles = v.parse().expect("singles=N");
        } else if let Some(v) = a.strip_prefix("events=") {
            bundle_events = v.parse().expect("events=N");
        }
        // cargo bench passes --bench; ignore other flags.
    }
    // The generator's size knobs: processes × events per process ≈ events.
    let per_host = |events: u64, hosts: u64| (events / hosts / 40).max(10);
    let scenarios = [
        Scenario {
            name: "single protobuf events on api.events",
            spec: format!(
                "hosts=10,processes={},events=40,mode=singles,hit_rate=0,seed=11",
                per_host(singles, 10)
            ),
        },
        Scenario {
            name: "zip bundles on api.rawsensordata",
            spec: format!(
                "hosts=40,processes={},events=40,mode=bundles,bundle_records=500,hit_rate=0,seed=12",
                per_host(bundle_events, 40)
            ),
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for sc in &scenarios {
        eprintln!("\n== {}: {}", sc.name, sc.spec);
        let m = rt.block_on(run_scenario(sc, synchronous));
        results.push((sc.name, m));
    }
    println!(
        "\nscenario                                 messages     events   null msg/s  cbtrail msg/s  cbtrail events/s  ratio"
    );
    for (name, m) in &results {
        let null_rate = m.messages as f64 / m.null_secs;
        let rate = m.messages as f64 / m.cbtrail_secs;
        println!(
            "{name:<40} {:>9} {:>10} {:>12.0} {:>14.0} {:>17.0} {:>6.2}",
            m.messages,
            m.events,
            null_rate,
            rate,
            m.events as f64 / m.cbtrail_secs,
            rate / null_rate
        );
    }
    let singles_ratio = {
        let m = &results[0].1;
        (m.messages as f64 / m.cbtrail_secs) / (m.messages as f64 / m.null_secs)
    };
    let bundle_rate = {
        let m = &results[1].1;
        m.events as f64 / m.cbtrail_secs
    };
    println!(
        "\ntargets: single messages cbtrail/null = {singles_ratio:.2} (target >= 0.90: {}); \
         zip bundles {bundle_rate:.0} committed events/s (target >= 250000: {})",
        if singles_ratio >= 0.9 {
            "met"
        } else {
            "NOT met"
        },
        if bundle_rate >= 250_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}

async fn run_scenario(sc: &Scenario, synchronous: cbtrail::store::Synchronous) -> Measured {
    let cfg = SynthConfig::parse(&sc.spec).expect("synth spec");
    let messages: Vec<(DeliveryMeta, Vec<u8>)> =
        Synth::new(cfg).map(|m| (m.meta, m.body)).collect();
    let tmp = tempfile::tempdir().unwrap();

    // Expected rows: offline replay of the same messages (not timed).
    let expected_db = tmp.path().join("expected.db");
    let files: Vec<cbtrail::capture::CaptureFile> = messages
        .iter()
        .map(|(meta, body)| cbtrail::capture::CaptureFile {
            path: "synthetic".into(),
            meta: meta.clone(),
            body: body.clone(),
        })
        .collect();
    let db = expected_db.clone();
    // Replay drives the pipeline with blocking sends: off the async threads.
    let replayed = tokio::task::spawn_blocking(move || cbtrail::replay::replay(&db, files, BATCH))
        .await
        .unwrap()
        .expect("replay");
    let expected = fingerprint(&expected_db);
    let events = replayed.totals.stats.events;
    eprintln!("   {} messages, {events} events", messages.len());

    let vhost = format!("cbtrail-bench-{}", std::process::id());
    let _ = Command::new("rabbitmqctl")
        .args(["delete_vhost", &vhost])
        .output();
    rabbitmqctl(&["add_vhost", &vhost]);
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    let url = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");

    // Both queues bound like the daemon binds its own, then filled by one publishing run.
    let mut settings = daemon_settings(&url, "bench-cbtrail", &tmp.path().join("cbtrail.db"));
    settings.store.synchronous = synchronous;
    let mut p = Publisher::connect(&url, "bench-publisher", None)
        .await
        .unwrap();
    {
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        for q in ["bench-null", "bench-cbtrail"] {
            ch.queue_declare(
                q.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
            for key in &settings.amqp.routing_keys {
                ch.queue_bind(
                    q.into(),
                    "api.events".into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            }
            ch.queue_bind(
                q.into(),
                "api.rawsensordata".into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
        let _ = conn.close(200, "bound".into()).await;
    }
    let t = Instant::now();
    for (meta, body) in &messages {
        p.publish(meta, body).await.unwrap();
    }
    let report = p.finish().await.unwrap();
    assert_eq!(report.unroutable, 0);
    eprintln!(
        "   published twice over in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let null_secs = null_consumer(&url, "bench-null", messages.len() as u64).await;
    eprintln!("   null consumer: {null_secs:.2} s");

    let db = settings.store.path.clone();
    let (stop_tx, stop) = Shutdown::new();
    let started = Instant::now();
    let daemon = tokio::spawn(cbtrail::daemon::run_until(settings, stop));
    let want_events = events as i64;
    let cbtrail_secs = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if count_events(&db) >= want_events {
            break started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "cbtrail did not finish"
        );
    };
    let _ = stop_tx.send(true);
    daemon.await.unwrap().expect("daemon");
    eprintln!("   cbtrail: {cbtrail_secs:.2} s");
    assert_eq!(
        fingerprint(&db),
        expected,
        "cbtrail's database differs from the replay"
    );
    rabbitmqctl(&["delete_vhost", &vhost]);
    Measured {
        messages: messages.len() as u64,
        events,
        null_secs,
        cbtrail_secs,
    }
}

fn daemon_settings(url: &str, queue: &str, db: &Path) -> Settings {
    let mut s = Settings::default();
    s.amqp.url = cbtrail::config::Secret::new(url);
    s.amqp.queue = queue.into();
    s.amqp.prefetch = PREFETCH;
    s.amqp.connection_name = "bench-cbtrail".into();
    s.store.path = db.to_path_buf();
    s.store.batch_size = BATCH;
    s.metrics.listen = String::new();
    s.exports.output_dir = db.with_extension("exports");
    s
}

/// Drain `queue` doing nothing but acknowledging, exactly as often as cbtrail does.
async fn null_consumer(url: &str, queue: &str, expect: u64) -> f64 {
    let started = Instant::now();
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(PREFETCH, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "null".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut n = 0u64;
    let mut pending: Option<lapin::Acker> = None;
    let mut in_batch = 0usize;
    while n < expect {
        let next = tokio::time::timeout(Duration::from_millis(100), consumer.next()).await;
        match next {
            Ok(Some(Ok(d))) => {
                n += 1;
                in_batch += 1;
                pending = Some(d.acker);
                if in_batch >= BATCH || n == expect {
                    if let Some(a) = pending.take() {
                        a.ack(BasicAckOptions { multiple: true }).await.unwrap();
                    }
                    in_batch = 0;
                }
            }
            Ok(_) => panic!("null consumer stream ended"),
            Err(_) => {
                // Idle (as cbtrail's batch latency): acknowledge what is in hand.
                if let Some(a) = pending.take() {
                    a.ack(BasicAckOptions { multiple: true }).await.unwrap();
                    in_batch = 0;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = conn.close(200, "done".into()).await;
    secs
}

fn count_events(db: &Path) -> i64 {
    let Ok(conn) = cbtrail::store::open_read_only(db) else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap_or(0)
}

fn fingerprint(db: &Path) -> std::collections::BTreeMap<String, (u64, u128)> {
    let conn = cbtrail::store::open_read_only(db).unwrap();
    cbtrail::store::fingerprint(&conn).unwrap()
}
