//! Print the raw `CbEventMsg` records of capture or synthetic files with prost's `Debug`, to
//! compare message shapes by eye: single messages (`*.protobuf`, `*.proto`), zips of bundles
//! (`*.zip`) and bare bundles (`bundleone`, `*.bundle`).
//!
//! `cargo run --example dumpfx -- FILE...`

use prost::Message;
use std::io::Read;

type Error = Box<dyn std::error::Error>;

/// The records of a `[u32 LE length][CbEventMsg]` bundle.
fn records(b: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    let mut o = 0;
    while o + 4 <= b.len() {
        let len = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
        o += 4;
        let record = b
            .get(o..o + len)
            .ok_or_else(|| format!("record at {} overruns the bundle", o - 4))?;
        out.push(record.to_vec());
        o += len;
    }
    Ok(out)
}

fn bodies(path: &str) -> Result<Vec<Vec<u8>>, Error> {
    let bytes = std::fs::read(path)?;
    if path.ends_with(".zip") {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
        let mut out = Vec::new();
        for i in 0..z.len() {
            let mut f = z.by_index(i)?;
            eprintln!(
                "member {} {:?} size {}",
                f.name()?,
                f.compression(),
                f.size()
            );
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            out.extend(records(&data)?);
        }
        Ok(out)
    } else if path.ends_with("bundleone") || path.ends_with(".bundle") {
        records(&bytes)
    } else {
        Ok(vec![bytes])
    }
}

fn main() -> Result<(), Error> {
    for path in std::env::args().skip(1) {
        for body in bodies(&path)? {
            match cbtrail::proto::CbEventMsg::decode(&body[..]) {
                Ok(m) => println!("== {path}\n{m:#?}"),
                Err(e) => eprintln!("{path}: not a CbEventMsg: {e}"),
            }
        }
    }
    Ok(())
}
