//! Ingest throughput against the local RabbitMQ, as ratios against a baseline measured in the same
//! run (timings on a shared machine are noisy; ratios are not).
//!
//! ```text
//! bash scripts/bench.sh                      # or: cargo bench --bench throughput -- [singles=N] [events=N] [rounds=N] [batch=N] [records=N] [prefetch=N] [page=N] [latency=MS] [sync=normal] [persistent]
//! ```
//!
//! For each scenario, in each of `rounds` rounds, the generator's traffic is published (transient,
//! as the CB server publishes; `persistent` for delivery mode 2) into two queues bound alike and
//! drained by (in alternating order):
//! - a **null consumer**: prefetch `amqp.prefetch`, acknowledges (multiple) every batch-size
//!   deliveries and does nothing else: the broker's ceiling for this traffic on this machine;
//! - **cbtrail** (the daemon's own `run_until`, in process): decode, store, commit
//!   (synchronous=FULL), then acknowledge; its window is at most `amqp.prefetch`, smaller for large
//!   messages (`bus::window`).
//!
//! The report shows the median round.
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

// The allocator the `cbtrail` binary ships with, so the daemon is measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Deliveries per transaction (cbtrail) and per `multiple` ack (null consumer): the daemon's
/// default unless `batch=N` overrides it. Both sides get the same `amqp.prefetch`: by default the
/// batch times the ratio of the daemon's default prefetch to its default batch size.
static BATCH: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn batch() -> usize {
    BATCH
        .get()
        .copied()
        .unwrap_or_else(|| Settings::default().store.batch_size)
}

/// `latency=MS`: cbtrail's `store.batch_max_latency_ms` (default: the daemon's own default).
static LATENCY_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// `records=N`: cbtrail's `store.batch_max_records` (default: the daemon's own default).
static MAX_RECORDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// `page=N`: page size of cbtrail's database files (default: what the daemon creates).
static PAGE_SIZE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

fn page_size() -> u32 {
    PAGE_SIZE
        .get()
        .copied()
        .unwrap_or(cbtrail::store::DEFAULT_PAGE_SIZE)
}

/// An empty database file in WAL mode with `page_size()` pages: the daemon keeps the page size of a
/// file it did not create.
fn create_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "page_size", page_size()).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn
}

/// `prefetch=N`: both sides' prefetch window.
static PREFETCH: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

fn prefetch() -> u16 {
    if let Some(p) = PREFETCH.get() {
        return *p;
    }
    let d = Settings::default();
    let per_batch = (d.amqp.prefetch as usize / d.store.batch_size).max(1);
    u16::try_from(batch() * per_batch).unwrap_or(u16::MAX)
}

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
    target: Target,
}

/// What a scenario's target is stated in, and so which round is its median.
#[derive(Clone, Copy)]
enum Target {
    /// cbtrail's rate over the null consumer's.
    Ratio,
    /// cbtrail's committed events per second.
    EventsPerSecond,
}

/// `rounds=N`: rounds per scenario (default 3). Each round publishes the traffic afresh and drains
/// it with both consumers, first one then the other, alternating; the report gives every round and
/// the median one. On this shared machine one round's ratio moves by a tenth or more from run to
/// run, so a single round says little.
static ROUNDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// `persistent`: publish with delivery mode 2. By default the messages are transient, as the CB
/// server publishes them; persistent ones add the broker's message-store writes to the drain.
static PERSISTENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn persistent() -> bool {
    PERSISTENT.get().copied().unwrap_or(false)
}

fn rounds_wanted() -> usize {
    *ROUNDS.get().unwrap_or(&3)
}

struct Measured {
    messages: u64,
    events: u64,
    null_secs: f64,
    cbtrail_secs: f64,
    /// Seconds a bare insert loop takes to store the same event rows (see [`sqlite_floor`]).
    floor_secs: f64,
    /// What the null consumer's drain used: broker CPU, this process's CPU by thread name, bytes written.
    null_usage: Usage,
    /// The same while cbtrail drained.
    cbtrail_usage: Usage,
    /// Every round's (null consumer, cbtrail) seconds; the fields above are the median round's.
    rounds: Vec<(f64, f64)>,
}

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { cbtrail::alloc::configure() };
    let mut singles: u64 = 200_000;
    let mut bundle_events: u64 = 1_000_000;
    let mut synchronous = cbtrail::store::Synchronous::Full;
    for a in std::env::args().skip(1) {
        if a == "sync=normal" {
            synchronous = cbtrail::store::Synchronous::Normal;
        }
        if a == "persistent" {
            PERSISTENT.set(true).expect("persistent given once");
        }
        if let Some(v) = a.strip_prefix("singles=") {
            singles = v.parse().expect("singles=N");
        } else if let Some(v) = a.strip_prefix("events=") {
            bundle_events = v.parse().expect("events=N");
        } else if let Some(v) = a.strip_prefix("latency=") {
            LATENCY_MS
                .set(v.parse().expect("latency=MS"))
                .expect("latency= given once");
        } else if let Some(v) = a.strip_prefix("prefetch=") {
            PREFETCH
                .set(v.parse().expect("prefetch=N (1 to 65535)"))
                .expect("prefetch= given once");
        } else if let Some(v) = a.strip_prefix("page=") {
            let n: u32 = v.parse().expect("page=N");
            assert!(
                n.is_power_of_two() && (512..=65_536).contains(&n),
                "page=N: a power of two from 512 to 65536"
            );
            PAGE_SIZE.set(n).expect("page= given once");
        } else if let Some(v) = a.strip_prefix("rounds=") {
            let n: usize = v.parse().expect("rounds=N");
            assert!(n >= 1, "rounds=N: at least 1");
            ROUNDS.set(n).expect("rounds= given once");
        } else if let Some(v) = a.strip_prefix("records=") {
            MAX_RECORDS
                .set(v.parse().expect("records=N"))
                .expect("records= given once");
        } else if let Some(v) = a.strip_prefix("batch=") {
            let n: usize = v.parse().expect("batch=N");
            assert!((1..=65_535).contains(&n), "batch=N: 1 to 65535");
            BATCH.set(n).expect("batch= given once");
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
            target: Target::Ratio,
        },
        Scenario {
            name: "zip bundles on api.rawsensordata",
            spec: format!(
                "hosts=40,processes={},events=40,mode=bundles,bundle_records=500,hit_rate=0,seed=12",
                per_host(bundle_events, 40)
            ),
            target: Target::EventsPerSecond,
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for sc in &scenarios {
        let mode = if persistent() {
            "persistent"
        } else {
            "transient"
        };
        eprintln!("\n== {}: {} ({mode} messages)", sc.name, sc.spec);
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
    println!(
        "\nevery round (cbtrail / null, cbtrail events/s); the table above is the median round"
    );
    for (name, m) in &results {
        let each: Vec<String> = m
            .rounds
            .iter()
            .map(|(null, cb)| format!("{:.2} {:.0}", null / cb, m.events as f64 / cb))
            .collect();
        println!("{name:<40} {}", each.join(" | "));
    }
    println!(
        "\nCPU seconds while each side drained (2 cores: a side can use at most 2 x its wall time); \
         in brackets, seconds a thread was ready to run but waited for a core"
    );
    for (name, m) in &results {
        for (side, secs, usage) in [
            ("null", m.null_secs, &m.null_usage),
            ("cbtrail", m.cbtrail_secs, &m.cbtrail_usage),
        ] {
            let broker = usage.broker;
            let ours: f64 = usage.threads.iter().map(|(_, c, _)| c).sum();
            let per_thread: Vec<String> = usage
                .threads
                .iter()
                .filter(|(_, c, _)| *c >= 0.005)
                .map(|(t, c, w)| format!("{t} {c:.2} [{w:.2}]"))
                .collect();
            println!(
                "{name:<40} {side:<8} wall {secs:>6.2}  broker {broker:>6.2}  bench process {ours:>6.2} ({})",
                per_thread.join(", ")
            );
        }
    }
    println!(
        "\nwritten by cbtrail while it drained (WAL frames and checkpoint copies, /proc/self/io wchar)"
    );
    for (name, m) in &results {
        let w = m.cbtrail_usage.written;
        println!(
            "{name:<40} {:>8.0} MB   {:>6.0} bytes per event",
            w as f64 / 1e6,
            w as f64 / m.events.max(1) as f64
        );
    }
    println!(
        "\nthe SQLite ceiling: the same event rows inserted by a bare loop, no index (see sqlite_floor)"
    );
    for (name, m) in &results {
        println!(
            "{name:<40} bare insert {:>8.0} rows/s   cbtrail {:>8.0} events/s = {:.2} of it",
            m.events as f64 / m.floor_secs,
            m.events as f64 / m.cbtrail_secs,
            m.floor_secs / m.cbtrail_secs
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
    let replayed =
        tokio::task::spawn_blocking(move || cbtrail::replay::replay(&db, files, batch()))
            .await
            .unwrap()
            .expect("replay");
    let expected = fingerprint(&expected_db);
    let events = replayed.totals.stats.events;
    eprintln!("   {} messages, {events} events", messages.len());
    let floor_secs = sqlite_floor(&expected_db, &tmp.path().join("floor.db"), synchronous);
    eprintln!("   bare SQLite insert of the same rows: {floor_secs:.2} s");

    let mut rounds = Vec::new();
    for round in 0..rounds_wanted() {
        let vhost = format!("cbtrail-bench-{}", std::process::id());
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &vhost])
            .output();
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let url = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");

        // Both queues bound like the daemon binds its own, then filled by one publishing run.
        let mut settings = daemon_settings(
            &url,
            "bench-cbtrail",
            &tmp.path().join(format!("cbtrail-{round}.db")),
        );
        settings.store.synchronous = synchronous;
        let mut p = Publisher::connect(&url, "bench-publisher", None)
            .await
            .unwrap();
        p.set_persistent(persistent());
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
        // Alternate who drains first: the queue drained second waits longer in the broker.
        let (null, cbtrail) = if round % 2 == 0 {
            let null = drain_null(&url, messages.len() as u64).await;
            (null, drain_cbtrail(settings, events, &expected).await)
        } else {
            let cbtrail = drain_cbtrail(settings, events, &expected).await;
            (drain_null(&url, messages.len() as u64).await, cbtrail)
        };
        eprintln!(
            "   round {}: null consumer {:.2} s, cbtrail {:.2} s",
            round + 1,
            null.0,
            cbtrail.0
        );
        rabbitmqctl(&["delete_vhost", &vhost]);
        rounds.push(Round {
            null_secs: null.0,
            null_usage: null.1,
            cbtrail_secs: cbtrail.0,
            cbtrail_usage: cbtrail.1,
        });
    }
    // The median round by what the scenario's target is about.
    let key = |r: &Round| match sc.target {
        Target::Ratio => r.null_secs / r.cbtrail_secs,
        Target::EventsPerSecond => 1.0 / r.cbtrail_secs,
    };
    rounds.sort_by(|x, y| key(x).total_cmp(&key(y)));
    let all: Vec<(f64, f64)> = rounds
        .iter()
        .map(|r| (r.null_secs, r.cbtrail_secs))
        .collect();
    let median = rounds.swap_remove(rounds.len() / 2);
    Measured {
        messages: messages.len() as u64,
        events,
        null_secs: median.null_secs,
        cbtrail_secs: median.cbtrail_secs,
        null_usage: median.null_usage,
        cbtrail_usage: median.cbtrail_usage,
        floor_secs,
        rounds: all,
    }
}

/// One round's two drains.
struct Round {
    null_secs: f64,
    null_usage: Usage,
    cbtrail_secs: f64,
    cbtrail_usage: Usage,
}

/// The null consumer's drain: seconds and what it used.
async fn drain_null(url: &str, messages: u64) -> (f64, Usage) {
    let before = CpuSnapshot::take();
    let secs = null_consumer(url, "bench-null", messages).await;
    (secs, before.since())
}

/// cbtrail's drain, up to the last event committed; its database must equal the replay's.
async fn drain_cbtrail(
    settings: Settings,
    events: u64,
    expected: &std::collections::BTreeMap<String, (u64, u128)>,
) -> (f64, Usage) {
    let db = settings.store.path.clone();
    if PAGE_SIZE.get().is_some() {
        drop(create_db(&db));
    }
    let (stop_tx, stop) = Shutdown::new();
    let before = CpuSnapshot::take();
    let started = Instant::now();
    let daemon = tokio::spawn(cbtrail::daemon::run_until(settings, stop));
    let want_events = events as i64;
    let mut reader = None;
    let cbtrail_secs = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if count_events(&db, &mut reader) >= want_events {
            break started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "cbtrail did not finish"
        );
    };
    let cbtrail_usage = before.since();
    let _ = stop_tx.send(true);
    daemon.await.unwrap().expect("daemon");
    assert_eq!(
        fingerprint(&db),
        *expected,
        "cbtrail's database differs from the replay"
    );
    (cbtrail_secs, cbtrail_usage)
}

/// The ceiling SQLite itself puts on this machine: the event rows cbtrail stores for this traffic
/// (read back from the replayed database), inserted by a bare loop into a table declared exactly
/// like `event_rows` (the rows of the `events` view, without their segments) but with no index,
/// 20,000 rows per transaction, in WAL mode with the same `synchronous` setting. No decoding, no
/// bus, no process table, no segments, no idempotency index: nothing cbtrail could leave out.
fn sqlite_floor(replayed: &Path, floor_db: &Path, synchronous: cbtrail::store::Synchronous) -> f64 {
    use rusqlite::types::Value;
    let src = cbtrail::store::open_read_only(replayed).unwrap();
    let create: String = src
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'event_rows'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let columns: Vec<String> = src
        .prepare("SELECT name FROM pragma_table_info('event_rows') WHERE name <> 'id' ORDER BY cid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let list = columns.join(", ");
    let rows: Vec<Vec<Value>> = src
        .prepare(&format!("SELECT {list} FROM event_rows ORDER BY id"))
        .unwrap()
        .query_map([], |r| (0..columns.len()).map(|i| r.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut dst = create_db(floor_db);
    dst.pragma_update(None, "synchronous", synchronous.pragma_value())
        .unwrap();
    dst.pragma_update(None, "cache_size", -64 * 1024).unwrap();
    dst.execute_batch(&create).unwrap();
    let marks = vec!["?"; columns.len()].join(", ");
    let insert = format!("INSERT INTO event_rows ({list}) VALUES ({marks})");
    let started = Instant::now();
    for chunk in rows.chunks(20_000) {
        let tx = dst.transaction().unwrap();
        {
            let mut st = tx.prepare_cached(&insert).unwrap();
            for row in chunk {
                st.execute(rusqlite::params_from_iter(row)).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn daemon_settings(url: &str, queue: &str, db: &Path) -> Settings {
    let mut s = Settings::default();
    s.amqp.url = cbtrail::config::Secret::new(url);
    s.amqp.queue = queue.into();
    s.amqp.prefetch = prefetch();
    s.amqp.connection_name = "bench-cbtrail".into();
    s.store.path = db.to_path_buf();
    s.store.batch_size = batch();
    if let Some(n) = MAX_RECORDS.get() {
        s.store.batch_max_records = *n;
    }
    if let Some(ms) = LATENCY_MS.get() {
        s.store.batch_max_latency_ms = *ms;
    }
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
    ch.basic_qos(prefetch(), BasicQosOptions { global: false })
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
                if in_batch >= batch() || n == expect {
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

/// Events committed so far. `max(id)`, not `count(*)`: ids are handed out in order and never
/// reused here (no retention runs, and a duplicate takes no id), so both agree, but `count(*)` walks
/// a whole index. Polled every 10 ms on a database of a million rows it took most of a core from
/// the daemon it was timing. The fingerprint at the end checks every row anyway.
/// One read-only connection is kept across polls (opened once the daemon has created the file).
fn count_events(db: &Path, reader: &mut Option<rusqlite::Connection>) -> i64 {
    if reader.is_none() {
        *reader = cbtrail::store::open_read_only(db).ok();
    }
    let Some(conn) = reader else {
        return 0;
    };
    conn.query_row("SELECT coalesce(max(id), 0) FROM event_rows", [], |r| {
        r.get(0)
    })
    .unwrap_or(0)
}

fn fingerprint(db: &Path) -> std::collections::BTreeMap<String, (u64, u128)> {
    let conn = cbtrail::store::open_read_only(db).unwrap();
    cbtrail::store::fingerprint(&conn).unwrap()
}

/// CPU time so far of the broker (every `beam.smp` process) and of each thread of this process,
/// summed by thread name, read from /proc. Thread names tell the daemon's stages apart
/// (`cbtrail-writer`, `cbtrail-decode`, `lapin-io-loop`, `tokio-rt-worker`, ...).
struct CpuSnapshot {
    broker: f64,
    /// Thread id → (name, CPU seconds, seconds it was runnable but waited for a core).
    threads: std::collections::BTreeMap<String, (String, f64, f64)>,
    /// Bytes this process has handed to `write` calls (`wchar` of /proc/self/io): for cbtrail's
    /// drain, what SQLite wrote (WAL frames, then the checkpoint's copies into the database).
    written: u64,
}

impl CpuSnapshot {
    fn take() -> CpuSnapshot {
        let mut broker = 0.0;
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                if comm.trim() == "beam.smp" {
                    broker += stat_cpu(&p.path().join("stat"));
                }
            }
        }
        let mut threads = std::collections::BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                threads.insert(
                    t.file_name().to_string_lossy().into_owned(),
                    (
                        comm.trim().to_string(),
                        stat_cpu(&t.path().join("stat")),
                        run_queue_wait(&t.path().join("schedstat")),
                    ),
                );
            }
        }
        let written = std::fs::read_to_string("/proc/self/io")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("wchar:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        CpuSnapshot {
            broker,
            threads,
            written,
        }
    }

    /// Used since this snapshot: broker CPU, CPU per thread name, bytes written. Threads that
    /// ended in between are not seen; the stages measured here all outlive the measurement.
    fn since(&self) -> Usage {
        let now = CpuSnapshot::take();
        let mut by_name = std::collections::BTreeMap::<String, (f64, f64)>::new();
        for (tid, (name, c, w)) in &now.threads {
            // By thread id: a thread of the same name that ended in between (the null consumer's
            // I/O thread, say) must not be subtracted from the one that replaced it.
            let (c0, w0) = match self.threads.get(tid) {
                Some((was, c, w)) if was == name => (*c, *w),
                _ => (0.0, 0.0),
            };
            let e = by_name.entry(name.clone()).or_insert((0.0, 0.0));
            e.0 += c - c0;
            e.1 += w - w0;
        }
        let threads = by_name
            .into_iter()
            .map(|(name, (cpu, waited))| (name, cpu, waited))
            .collect();
        Usage {
            broker: now.broker - self.broker,
            threads,
            written: now.written.saturating_sub(self.written),
        }
    }
}

/// What one side used while it drained (see [`CpuSnapshot::since`]).
struct Usage {
    broker: f64,
    /// Per thread name: CPU seconds, and seconds runnable but waiting for a core.
    threads: Vec<(String, f64, f64)>,
    written: u64,
}

/// utime + stime of a /proc `stat` file, in seconds.
fn stat_cpu(path: &Path) -> f64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; fields are counted after its closing ')'.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After ')': state is index 0, so utime (field 14) is 11 and stime (15) is 12.
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// Seconds a thread was runnable but waited for a core (the second field of /proc's `schedstat`;
/// 0 where the kernel keeps no schedstats).
fn run_queue_wait(path: &Path) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// Kernel clock ticks per second (USER_HZ), as `getconf CLK_TCK` prints it.
fn clock_ticks() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
