//! Write synthetic traffic to a directory in the layout of the reference captures:
//! `protobuf/<routing key>/N.protobuf`, `zip/N.zip` + `zip/N.txt`, `json/<routing key>/N.json`.
//!
//! `cargo run --example synth_dump -- OUT_DIR [SPEC]`, e.g. `... /tmp/synth hosts=5,seed=3`.

use cbtrail::synth::{Synth, SynthConfig};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: synth_dump OUT_DIR [SPEC]")?);
    let cfg = SynthConfig::parse(&args.next().unwrap_or_default())?;
    let mut synth = Synth::new(cfg);
    for (n, m) in synth.by_ref().enumerate() {
        let ct = m.meta.content_type.as_deref().unwrap_or("");
        let (dir, name) = match ct {
            "application/json" => (
                out.join("json").join(&m.meta.routing_key),
                format!("{n}.json"),
            ),
            "application/zip" => (out.join("zip"), format!("{n}.zip")),
            _ if m.meta.exchange == "api.rawsensordata" => {
                (out.join("bundle"), format!("{n}.bundle"))
            }
            _ => (
                out.join("protobuf").join(&m.meta.routing_key),
                format!("{n}.protobuf"),
            ),
        };
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&name), &m.body)?;
        if ct == "application/zip" {
            let headers = serde_json::to_string(&m.meta.headers)?;
            std::fs::write(
                dir.join(format!("{n}.txt")),
                format!("content_type={ct} headers={headers}\n"),
            )?;
        }
    }
    println!("{}", synth.summary());
    Ok(())
}
