//! Writer throughput on realistic synthetic events.
//!
//! `cargo run --release --example store_bench -- [EVENTS] [--normal] [--inline-checkpoint]
//! [--cache-mib N] [--keep PATH]`
//!
//! Builds EVENTS (default 1,000,000) raw events shaped like a sensor bundle stream: 40 sensors, 300
//! processes each, batches of 1000 events from one sensor at a time (a few busy processes produce
//! most of a batch, see `pick_pid`), every event with an
//! `Observed` process fact and a ~300-byte details object, one in 25 a procstart carrying the
//! process's own facts and a reference to its parent. Then it writes them with a `Writer`
//! (synchronous=FULL unless `--normal`) into a file in a temp dir and prints rows per second. Record
//! construction is not timed; JSON encoding of details and everything in the writer is.

use cbtrail::model::{Event, EventType, FactRank, ProcessFacts, Record, record_key};
use cbtrail::store::{Synchronous, Writer, WriterOptions, counts};
use serde_json::json;
use std::time::Instant;

const BATCH: usize = 1000;
const SENSORS: u64 = 40;
const PROCS_PER_SENSOR: u64 = 300;

fn guid(sensor: u64, pid: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-01d9-{:04x}{:08x}",
        sensor,
        pid >> 16,
        pid & 0xffff,
        pid & 0xffff,
        0x1234_5678u64.wrapping_add(pid)
    )
}

/// Which of a sensor's processes acts in event `seq` of batch `batch`: Zipf-distributed (s = 1.2)
/// over the sensor's processes, like a real bundle where two or three processes produce most of
/// the events (`bundleone` in the fixtures: 716 events, 15 processes, the top two 77%), with the
/// ranking rotated per batch so that different processes are busy in different bundles.
fn pick_pid(cdf: &[f64], batch: u64, seq: u64) -> u64 {
    // splitmix64 of the sequence number: deterministic, no rand dependency.
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    let rank = cdf.partition_point(|&c| c < u) as u64;
    1000 + (rank + batch * 37) % PROCS_PER_SENSOR
}

fn zipf_cdf(n: u64, s: f64) -> Vec<f64> {
    let w: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x / total;
            acc
        })
        .collect()
}

fn event(seq: u64, pid: u64, sensor: u64, t0: i64) -> Event {
    let g = guid(sensor, pid);
    let host = format!("WKS-{sensor:04}");
    let path = format!("c:\\program files\\vendor{}\\app{pid}.exe", pid % 17);
    let md5 = format!("{:032X}", (pid as u128) * 0x9E37_79B9_7F4A_7C15);
    let ts = t0 + seq as i64;
    let procstart = seq.is_multiple_of(25);
    let (event_type, obj) = match seq % 4 {
        _ if procstart => (EventType::Procstart, path.clone()),
        0 => (
            EventType::Filemod,
            format!(
                "c:\\users\\user{}\\appdata\\local\\temp\\f{seq}.tmp",
                pid % 9
            ),
        ),
        1 => (
            EventType::Regmod,
            format!("\\registry\\machine\\software\\vendor\\key{}", seq % 1000),
        ),
        2 => (EventType::Netconn, String::new()),
        _ => (
            EventType::Modload,
            format!("c:\\windows\\system32\\lib{}.dll", seq % 300),
        ),
    };
    let details = json!({
        "type": event_type.as_str(),
        "path": obj,
        "action": "write",
        "process_guid": g,
        "pid": pid,
        "timestamp": ts,
        "sensor_id": sensor,
        "computer_name": host,
        "md5": md5,
        "file_type": 0,
        "tamper": false,
        "remote_ip": "10.1.2.3",
        "remote_port": 443,
        "utf8_commandline": "app.exe --flag",
    })
    .to_string();
    let mut processes = vec![ProcessFacts {
        guid: g.clone(),
        rank: Some(FactRank::Observed),
        sensor_id: Some(sensor as i64),
        hostname: Some(host.clone()),
        pid: Some(pid as i64),
        path: Some(path.clone()),
        md5: Some(md5.clone()),
        ..Default::default()
    }];
    if procstart {
        processes[0].rank = Some(FactRank::Procstart);
        processes[0].cmdline = Some(format!("\"{path}\" --run {seq}"));
        processes[0].parent_guid = Some(guid(sensor, 4));
        processes[0].start_ms = Some(ts);
        processes.push(ProcessFacts {
            guid: guid(sensor, 4),
            rank: Some(FactRank::ParentReference),
            sensor_id: Some(sensor as i64),
            pid: Some(4),
            ..Default::default()
        });
    }
    Event {
        key: record_key(&[b"bench", &sensor.to_le_bytes(), &seq.to_le_bytes()]),
        event_type: Some(event_type),
        timestamp_ms: ts,
        sensor_id: Some(sensor as i64),
        hostname: Some(host),
        process_guid: Some(g),
        pid: Some(pid as i64),
        process_path: Some(path),
        process_md5: Some(md5),
        path: (!obj.is_empty()).then_some(obj),
        action: Some("write".into()),
        remote_ip: (event_type == EventType::Netconn).then(|| "10.1.2.3".into()),
        remote_port: (event_type == EventType::Netconn).then_some(443),
        details,
        processes,
        ..Default::default()
    }
}

/// CPU time of this thread (on-CPU ns from the scheduler), to tell CPU cost from waiting on fsync
/// or for a contended CPU.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut n: u64 = 1_000_000;
    let mut sync = Synchronous::Full;
    let mut keep = None;
    let mut opts = WriterOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--normal" => sync = Synchronous::Normal,
            "--inline-checkpoint" => opts.checkpoint_interval = None,
            "--cache-mib" => opts.cache_mib = args.next().unwrap_or_default().parse()?,
            "--keep" => keep = args.next(),
            s => n = s.replace('_', "").parse()?,
        }
    }

    let t0 = 1_700_000_000_000i64;
    let build = Instant::now();
    let cdf = zipf_cdf(PROCS_PER_SENSOR, 1.2);
    let batches: Vec<Vec<Record>> = (0..n.div_ceil(BATCH as u64))
        .map(|b| {
            let sensor = b % SENSORS;
            (b * BATCH as u64..((b + 1) * BATCH as u64).min(n))
                .map(|seq| {
                    let pid = pick_pid(&cdf, b, seq);
                    Record::Event(Box::new(event(seq, pid, sensor, t0)))
                })
                .collect()
        })
        .collect();
    let avg_details = batches
        .first()
        .and_then(|b| b.first())
        .map(|r| match r {
            Record::Event(e) => e.details.len(),
            _ => 0,
        })
        .unwrap_or(0);
    eprintln!(
        "built {n} events in {:.2?} (details ~{avg_details} bytes)",
        build.elapsed()
    );

    let dir = tempfile::tempdir()?;
    let path = keep
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("bench.db"));
    let opts_checkpoint = opts.checkpoint_interval.is_some();
    let mut w = Writer::open_with(
        &path,
        WriterOptions {
            synchronous: sync,
            ..opts
        },
    )?;
    let cpu0 = cpu_ns();
    let start = Instant::now();
    let mut stored = 0;
    for b in &batches {
        stored += w.write_batch(b)?.events;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_ns().zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e9);
    let c = counts(w.connection())?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "synchronous={sync:?} checkpoint={} events={stored} batches={} time={secs:.2}s rate={:.0} events/s \
         cpu={} processes={} db={:.0} MiB",
        if opts_checkpoint {
            "background"
        } else {
            "inline"
        },
        batches.len(),
        stored as f64 / secs,
        cpu.map_or("?".into(), |c| format!(
            "{c:.2}s ({:.0} events/cpu-s)",
            stored as f64 / c
        )),
        c.processes,
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
