//! Write synthetic traffic to a directory in the layout of the reference captures:
//! `protobuf/<routing key>/N.protobuf`, `zip/N.zip` + `zip/N.txt` (pika properties dump),
//! `json/<routing key>/N.json`; `cbtrail replay` and `cbtrail publish` read it like the captures.
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
            // The pika properties dump the captures come with, so `cbtrail replay` and
            // `cbtrail publish` read the directory like the real captures.
            let h = &m.meta.headers;
            let text = format!(
                "<BasicProperties(['content_type={ct}', 'delivery_mode=1', \"headers={{'sensorId': {}L, 'hostId': {}L, 'nodeId': {}, 'sensorHostName': u'{}'}}\", 'priority=0'])>",
                h["sensorId"],
                h["hostId"],
                h["nodeId"],
                h["sensorHostName"].as_str().unwrap_or_default()
            );
            std::fs::write(dir.join(format!("{n}.txt")), text)?;
        }
    }
    println!("{}", synth.summary());
    Ok(())
}
