//! Decode throughput on a raw bundle: `cargo run --release --example decode_bench -- <bundle> [rounds]`.
//!
//! Decodes the bundle (e.g. the fixture `bundle/bundleone`) `rounds` times as an
//! `api.rawsensordata` delivery and prints records per CPU-second of the decoding thread (so the
//! number holds on a shared machine), with the cost of dropping the records shown apart.
//! `COUNT_ALLOCS=1` also prints heap allocations per record: they dominate the cost, so try
//! `GLIBC_TUNABLES=glibc.malloc.tcache_count=65535` to see how much the allocator matters.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use cbtrail::decode::{RAW_EXCHANGE, decode};
use cbtrail::model::{DeliveryMeta, Record};

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`), so the rate is per CPU-second
/// even when other work shares the machine. `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Counts allocations so the per-record allocation cost is visible next to the rate.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Counting costs an atomic add per allocation; it is only switched on with `COUNT_ALLOCS=1`.
static COUNTING: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: decode_bench <bundle file> [rounds]");
        std::process::exit(2);
    };
    COUNTING.store(
        std::env::var("COUNT_ALLOCS").is_ok_and(|v| v == "1"),
        Ordering::Relaxed,
    );
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(2000);
    let body = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let mut meta = DeliveryMeta {
        exchange: RAW_EXCHANGE.to_owned(),
        routing_key: String::new(),
        content_type: Some("application/protobuf".to_owned()),
        ..DeliveryMeta::default()
    };
    meta.headers.insert("sensorId".into(), 1.into());
    meta.headers.insert("sensorHostName".into(), "BENCH".into());

    // Warm up, and check the input decodes at all.
    let first = decode(&meta, &body);
    let bad = first
        .iter()
        .filter(|r| matches!(r, Record::Quarantined(_)))
        .count();
    println!(
        "{} records per round ({bad} quarantined), {} bytes",
        first.len(),
        body.len()
    );

    let allocs_before = ALLOCS.load(Ordering::Relaxed);
    let start = Instant::now();
    let (mut decode_cpu, mut drop_cpu) = (0u64, 0u64);
    let mut records = 0usize;
    for _ in 0..rounds {
        let t0 = cpu_ns();
        let out = std::hint::black_box(decode(&meta, &body));
        let t1 = cpu_ns();
        records += out.len();
        // In the daemon the records are dropped by the store writer after the commit, not by
        // the decoding thread: time the two apart.
        drop(out);
        let t2 = cpu_ns();
        if let (Some(t0), Some(t1), Some(t2)) = (t0, t1, t2) {
            decode_cpu += t1 - t0;
            drop_cpu += t2 - t1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if decode_cpu > 0 {
        let per = |ns: u64| ns as f64 / records as f64;
        println!(
            "decode: {:.0} records per CPU-second ({:.0} ns per record); dropping the records: \
             {:.0} ns per record; together {:.0} records per CPU-second",
            1e9 / per(decode_cpu),
            per(decode_cpu),
            per(drop_cpu),
            1e9 / per(decode_cpu + drop_cpu)
        );
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs_before;
    if COUNTING.load(Ordering::Relaxed) {
        println!(
            "{:.1} allocations per record",
            allocs as f64 / records as f64
        );
    }
    println!(
        "{rounds} rounds, {records} records in {secs:.3} s: {:.0} records/s, {:.1} MB/s",
        records as f64 / secs,
        (body.len() * rounds) as f64 / secs / 1e6
    );
}
