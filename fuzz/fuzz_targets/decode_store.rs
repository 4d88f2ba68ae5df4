//! One delivery through `decode` and into a real database with `Writer::write_batch`, the path
//! every message of the bus takes. The first input byte picks the exchange and content type (bits
//! 0-1), whether the raw-bundle headers are present (bit 2) and whether a routing key follows
//! (bit 3: one length byte, then the key, which JSON notifications take ids from); the rest is
//! the body.
//!
//! Fails on a panic anywhere (the build has overflow checks on), on a delivery that decodes to
//! nothing (it would be acked and leave no trace), and on records the database refuses: the daemon
//! would quarantine such a delivery as `store_rejected`, but decode should never produce them.
#![no_main]

use cbtrail::decode::{EVENTS_EXCHANGE, RAW_EXCHANGE, decode};
use cbtrail::model::DeliveryMeta;
use cbtrail::store::Writer;
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

/// One database per fuzzing process: opening one per input would cost more than the input.
static WRITER: OnceLock<Mutex<Writer>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut body)) = data.split_first() else {
        return;
    };
    let mut key_from_input = None;
    if selector & 8 != 0 {
        let Some((&len, rest)) = body.split_first() else {
            return;
        };
        let (key, rest) = rest.split_at(usize::from(len).min(rest.len()));
        key_from_input = Some(String::from_utf8_lossy(key).into_owned());
        body = rest;
    }
    let (exchange, content_type, routing_key) = match selector % 4 {
        0 => (EVENTS_EXCHANGE, "application/json", "watchlist.hit.process"),
        1 => (
            EVENTS_EXCHANGE,
            "application/protobuf",
            "ingress.event.filemod",
        ),
        2 => (RAW_EXCHANGE, "application/zip", ""),
        _ => (RAW_EXCHANGE, "application/protobuf", ""),
    };
    let mut meta = DeliveryMeta {
        exchange: exchange.to_owned(),
        routing_key: key_from_input.unwrap_or_else(|| routing_key.to_owned()),
        content_type: Some(content_type.to_owned()),
        ..DeliveryMeta::default()
    };
    if selector & 4 != 0 {
        meta.headers.insert("sensorId".into(), 7.into());
        meta.headers.insert("hostId".into(), 9.into());
        meta.headers
            .insert("sensorHostName".into(), "fuzzhost".into());
    }
    let records = decode(&meta, body);
    assert!(!records.is_empty(), "a delivery decoded to nothing");
    let writer = WRITER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cbtrail-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the fuzz database's directory");
        Mutex::new(Writer::open(&dir.join("fuzz.db")).expect("opening the fuzz database"))
    });
    let mut writer = writer.lock().unwrap();
    if let Err(e) = writer.write_batch(&records) {
        panic!("the database refused decoded records: {e}\n{records:?}");
    }
});
