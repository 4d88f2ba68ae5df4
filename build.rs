//! Generates the prost types for `proto/sensor_events.proto`.
//!
//! protox compiles the schema in pure Rust, so neither developers nor CI need a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/sensor_events.proto");
    let fds = protox::compile(["sensor_events.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
