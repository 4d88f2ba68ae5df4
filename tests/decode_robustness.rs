//! Damaged input: every corruption lands in quarantine with its bytes and the right reason, and
//! thousands of random or mutated bodies never make `decode` panic or return nothing.

mod common;

use cbtrail::capture::{self, CaptureFile, CaptureOverrides};
use cbtrail::decode::{EVENTS_EXCHANGE, RAW_EXCHANGE, decode};
use cbtrail::model::{DeliveryMeta, QuarantineReason, Quarantined, Record};

/// xorshift64*: deterministic, dependency-free randomness so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn meta(exchange: &str, ct: &str) -> DeliveryMeta {
    let mut m = DeliveryMeta {
        exchange: exchange.to_owned(),
        routing_key: "test".to_owned(),
        content_type: Some(ct.to_owned()),
        ..DeliveryMeta::default()
    };
    m.headers.insert("sensorId".into(), 1.into());
    m
}

fn quarantined(recs: &[Record]) -> Vec<&Quarantined> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Quarantined(q) => Some(&**q),
            _ => None,
        })
        .collect()
}

/// Decode and check the invariants that hold for any input whatsoever.
fn check(meta: &DeliveryMeta, body: &[u8]) -> Vec<Record> {
    let recs = decode(meta, body);
    assert!(
        !recs.is_empty(),
        "a delivery vanished: {meta:?} {} bytes",
        body.len()
    );
    let single = match meta.content_type.as_deref() {
        Some("application/json") => true,
        Some("application/protobuf") => meta.exchange != RAW_EXCHANGE,
        _ => false,
    };
    if single {
        assert_eq!(recs.len(), 1);
    }
    for q in quarantined(&recs) {
        assert!(!q.error.is_empty());
        // Whole-body quarantines keep the body byte for byte.
        if matches!(
            q.reason,
            QuarantineReason::BadZip
                | QuarantineReason::BadFraming
                | QuarantineReason::BadJson
                | QuarantineReason::UnknownContentType
        ) {
            assert_eq!(q.body, body, "{}", q.error);
        }
    }
    recs
}

const KINDS: [(&str, &str); 5] = [
    (EVENTS_EXCHANGE, "application/json"),
    (EVENTS_EXCHANGE, "application/protobuf"),
    (RAW_EXCHANGE, "application/protobuf"),
    (RAW_EXCHANGE, "application/zip"),
    (EVENTS_EXCHANGE, "application/zip"),
];

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..4000 {
        let len = rng.below(600);
        let mut body = rng.bytes(len);
        // Some bodies wear a zip signature or a plausible length prefix to get past the door.
        match i % 4 {
            0 if body.len() >= 4 => body[..4].copy_from_slice(b"PK\x03\x04"),
            1 if body.len() >= 4 => {
                let n = (body.len() - 4) as u32;
                body[..4].copy_from_slice(&n.to_le_bytes());
            }
            _ => {}
        }
        for (ex, ct) in KINDS {
            check(&meta(ex, ct), &body);
        }
    }
}

#[test]
fn random_protobuf_on_api_events_is_bad_protobuf() {
    let mut rng = Rng(42);
    let body = rng.bytes(257);
    let recs = check(&meta(EVENTS_EXCHANGE, "application/protobuf"), &body);
    let q = quarantined(&recs);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, QuarantineReason::BadProtobuf);
    assert_eq!(q[0].body, body);
}

fn load(path: std::path::PathBuf) -> CaptureFile {
    capture::walk(&[path], &CaptureOverrides::default())
        .unwrap()
        .remove(0)
}

#[test]
fn corrupted_fixtures_land_in_quarantine() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };

    // Truncated zip.
    let zip = load(root.join("zip/0.zip"));
    let cut = &zip.body[..zip.body.len() / 2];
    let recs = check(&zip.meta, cut);
    let q = quarantined(&recs);
    assert_eq!(recs.len(), 1);
    assert_eq!(q[0].reason, QuarantineReason::BadZip);
    assert_eq!(q[0].body, cut);
    assert_eq!(
        q[0].headers, zip.meta.headers,
        "the delivery's headers are kept"
    );

    // A length prefix that overruns the bundle: the records before it are kept.
    let bundle = load(root.join("bundle/bundleone"));
    let mut body = bundle.body.clone();
    let mut offset = 0;
    for _ in 0..10 {
        let len = u32::from_le_bytes(body[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 4 + len;
    }
    body[offset..offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let recs = check(&bundle.meta, &body);
    let q = quarantined(&recs);
    assert_eq!(recs.len(), 11);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, QuarantineReason::BadFraming);
    assert!(
        q[0].error.contains(&format!("offset {offset}")),
        "{}",
        q[0].error
    );
    assert_eq!(q[0].body, body);

    // Random bytes published as a protobuf event.
    let pb = load(root.join("protobuf/ingress.event.filemod/0.protobuf"));
    let noise = Rng(7).bytes(pb.body.len());
    let recs = check(&pb.meta, &noise);
    assert_eq!(quarantined(&recs)[0].reason, QuarantineReason::BadProtobuf);

    // Invalid JSON and a JSON array.
    let json = load(root.join("json/watchlist.hit.process/0.json"));
    let cut = &json.body[..json.body.len() - 3];
    let recs = check(&json.meta, cut);
    assert_eq!(quarantined(&recs)[0].reason, QuarantineReason::BadJson);
    let array = [b"[".as_slice(), &json.body, b"]"].concat();
    let recs = check(&json.meta, &array);
    assert_eq!(quarantined(&recs)[0].reason, QuarantineReason::BadJson);

    // Unknown content type.
    let mut odd = json.meta.clone();
    odd.content_type = Some("text/xml".to_owned());
    let recs = check(&odd, &json.body);
    assert_eq!(
        quarantined(&recs)[0].reason,
        QuarantineReason::UnknownContentType
    );

    // Empty bodies under every fixture's delivery kind.
    for f in [&zip, &bundle, &pb, &json] {
        let recs = check(&f.meta, b"");
        assert_eq!(recs.len(), 1);
        assert!(quarantined(&recs)[0].body.is_empty());
    }
}

fn mutate(rng: &mut Rng, body: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = b.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(len + 1)),
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let extra = rng.bytes(n);
                b.splice(i..i, extra);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(32)).min(len);
                b.drain(i..j);
            }
            5 if len > 4 => {
                // Overwrite four bytes with an interesting little-endian length.
                let i = rng.below(len - 3);
                let v = [0u32, 1, 0x7fff_ffff, u32::MAX, len as u32][rng.below(5)];
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                // Splice in a piece of another fixture.
                let i = rng.below(len + 1);
                let start = rng.below(other.len() + 1);
                let end = (start + rng.below(64)).min(other.len());
                b.splice(i..i, other[start..end].iter().copied());
            }
        }
    }
    b
}

#[test]
fn mutated_fixtures_never_panic() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let all = capture::walk(std::slice::from_ref(&root), &CaptureOverrides::default()).unwrap();
    // A spread of every kind: every 40th small file, all zips, the bundle (fewer rounds: it is big).
    let sample: Vec<&CaptureFile> = all
        .iter()
        .enumerate()
        .filter(|(i, f)| i % 40 == 0 || f.body.len() > 100_000 || f.meta.exchange == RAW_EXCHANGE)
        .map(|(_, f)| f)
        .collect();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut runs = 0;
    for (n, f) in sample.iter().enumerate() {
        let other = &sample[(n * 7 + 3) % sample.len()].body;
        let rounds = if f.body.len() > 100_000 { 20 } else { 40 };
        for _ in 0..rounds {
            let body = mutate(&mut rng, &f.body, other);
            check(&f.meta, &body);
            // And the same bytes under another delivery kind.
            let (ex, ct) = KINDS[rng.below(KINDS.len())];
            check(&meta(ex, ct), &body);
            runs += 2;
        }
    }
    assert!(runs > 5000, "only {runs} runs");
    eprintln!("{runs} mutated deliveries decoded without a panic");
}
