//! How fast the generator runs (it must not be what a benchmark measures).
//!
//! `cargo run --release --example synth_speed -- [SPEC]`; prints events and messages per second.

use cbtrail::synth::{Synth, SynthConfig};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "hosts=200,processes=500,events=100".into());
    let cfg = SynthConfig::parse(&spec)?;
    println!("config: {cfg}");
    let started = Instant::now();
    let mut synth = Synth::new(cfg);
    let mut bytes = 0u64;
    for m in synth.by_ref() {
        bytes += m.body.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let s = synth.summary();
    println!("{s}");
    println!(
        "elapsed={secs:.2}s events/s={:.0} messages/s={:.0} MB/s={:.1}",
        s.events as f64 / secs,
        s.messages as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
