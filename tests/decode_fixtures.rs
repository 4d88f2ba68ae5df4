//! Every captured fixture decodes (through `capture::walk` + `decode`, as `cbtrail replay` does)
//! with nothing quarantined, into the record counts and values the documentation predicts.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use cbtrail::capture::{self, CaptureFile, CaptureOverrides};
use cbtrail::decode::{RAW_EXCHANGE, decode};
use cbtrail::model::{DeliveryMeta, Event, EventType, Record, RecordKey};
use cbtrail::proto::CbEventMsg;
use prost::Message;

struct Decoded {
    file: CaptureFile,
    records: Vec<Record>,
}

fn decode_all(root: &Path) -> Vec<Decoded> {
    let files =
        capture::walk(&[root.to_path_buf()], &CaptureOverrides::default()).expect("walk fixtures");
    files
        .into_iter()
        .map(|file| {
            let records = decode(&file.meta, &file.body);
            Decoded { file, records }
        })
        .collect()
}

fn section(root: &Path, d: &Decoded) -> String {
    let rel = d.file.path.strip_prefix(root).expect("under root");
    rel.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn type_counts(records: &[Record]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let k = match r {
            Record::Event(e) => match e.event_type {
                Some(EventType::Procstart | EventType::Procend) => "process",
                Some(EventType::Crossproc | EventType::Remotethread) => "crossproc",
                Some(t) => t.as_str(),
                None => "untyped",
            },
            Record::Binary(_) => "binary",
            Record::Notification(_) => "notification",
            Record::Quarantined(_) => "quarantined",
        };
        *counts.entry(k).or_default() += 1;
    }
    counts
}

#[test]
fn every_fixture_decodes_cleanly() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let all = decode_all(&root);
    let mut per_section: BTreeMap<String, usize> = BTreeMap::new();
    for d in &all {
        let sec = section(&root, d);
        *per_section.entry(sec.clone()).or_default() += 1;
        for r in &d.records {
            if let Record::Quarantined(q) = r {
                panic!("{}: quarantined: {}", d.file.path.display(), q.error);
            }
        }
        match sec.as_str() {
            "protobuf" => {
                assert_eq!(d.records.len(), 1, "{}", d.file.path.display());
                assert!(
                    matches!(d.records[0], Record::Event(_) | Record::Binary(_)),
                    "{}",
                    d.file.path.display()
                );
            }
            "json" => {
                assert_eq!(d.records.len(), 1, "{}", d.file.path.display());
                assert!(
                    matches!(d.records[0], Record::Notification(_)),
                    "{}",
                    d.file.path.display()
                );
            }
            "zip" | "bundle" => {
                assert!(
                    d.records
                        .iter()
                        .all(|r| matches!(r, Record::Event(_) | Record::Binary(_))),
                    "{}",
                    d.file.path.display()
                );
            }
            other => panic!("unexpected fixture section {other}"),
        }
    }
    // Counts from the fixtures README: the walk must find every file and skip the dumps.
    let expected: BTreeMap<String, usize> = [
        ("bundle", 1),
        ("json", 1274),
        ("protobuf", 4076),
        ("zip", 6),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(per_section, expected);
    let records: usize = all.iter().map(|d| d.records.len()).sum();
    eprintln!(
        "{} fixture files → {records} records, 0 quarantined",
        all.len()
    );
}

#[test]
fn zip_and_bundle_record_counts() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let all = decode_all(&root);
    let zips: Vec<(String, usize)> = all
        .iter()
        .filter(|d| section(&root, d) == "zip")
        .map(|d| {
            let name = d
                .file
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, d.records.len())
        })
        .collect();
    let expected: Vec<(String, usize)> = [63, 14, 12, 12, 1, 1]
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{i}.zip"), *n))
        .collect();
    assert_eq!(zips, expected);

    let bundle = all
        .iter()
        .find(|d| section(&root, d) == "bundle")
        .expect("bundleone");
    assert_eq!(bundle.file.meta.exchange, RAW_EXCHANGE);
    assert_eq!(bundle.records.len(), 716);
    let counts = type_counts(&bundle.records);
    let expected: BTreeMap<&str, usize> = [
        ("modload", 310),
        ("filemod", 220),
        ("regmod", 99),
        ("crossproc", 41),
        ("childproc", 25),
        ("netconn", 12),
        ("process", 9),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, expected);
}

fn make_guid(sensor: i32, pid: i32, create: i64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:04x}{:08x}",
        sensor as u32,
        (pid >> 16) as u16,
        (pid & 0xffff) as u16,
        (create >> 48) as u16,
        ((create >> 32) & 0xffff) as u16,
        (create & 0xffff_ffff) as u32
    )
}

/// The GUIDs are recomputed here from the raw prost fields, independently of the decoder's code.
#[test]
fn guids_match_the_formula_for_every_protobuf_fixture() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let mut checked = 0;
    let mut targets = 0;
    for d in decode_all(&root)
        .iter()
        .filter(|d| section(&root, d) == "protobuf")
    {
        let msg = CbEventMsg::decode(d.file.body.as_slice()).expect("prost decodes fixture");
        let sensor = msg
            .env
            .as_ref()
            .and_then(|e| e.endpoint.as_ref())
            .and_then(|e| e.sensor_id)
            .expect("api.events fixtures carry env");
        let h = &msg.header;
        let expected = match (h.process_pid, h.process_create_time) {
            (Some(pid), Some(ct)) => Some(make_guid(sensor, pid, ct)),
            _ => h.process_guid.map(|g| g.to_string()),
        };
        let Record::Event(e) = &d.records[0] else {
            assert!(msg.module.is_some(), "{}", d.file.path.display());
            continue;
        };
        assert_eq!(e.process_guid, expected, "{}", d.file.path.display());
        assert_eq!(e.sensor_id, Some(i64::from(sensor)));
        checked += 1;

        let target = if let Some(c) = &msg.childproc {
            c.pid
                .zip(c.create_time)
                .map(|(pid, ct)| make_guid(sensor, (pid & 0xffff_ffff) as i32, ct))
        } else if let Some(x) = &msg.crossproc {
            if let Some(o) = &x.open {
                o.target_pid
                    .zip(o.target_proc_create_time)
                    .map(|(p, ct)| make_guid(sensor, p as i32, ct as i64))
            } else {
                x.remotethread.as_ref().and_then(|r| {
                    r.remote_proc_pid
                        .zip(r.remote_proc_create_time)
                        .map(|(p, ct)| make_guid(sensor, p as i32, ct as i64))
                })
            }
        } else if let Some(b) = &msg.blocked {
            b.blocked_pid
                .zip(b.blocked_proc_create_time)
                .map(|(p, ct)| make_guid(sensor, p, ct as i64))
        } else {
            None
        };
        if target.is_some() {
            targets += 1;
        }
        assert_eq!(e.target_guid, target, "{}", d.file.path.display());
        if let Some(p) = &msg.process {
            // pid -1 with create time 0 is the sensor saying it does not know the parent.
            let parent = p
                .parent_pid
                .zip(p.parent_create_time)
                .filter(|(pid, ct)| *pid >= 0 && *ct > 0)
                .map(|(pid, ct)| make_guid(sensor, pid, ct));
            assert_eq!(
                e.details_value()
                    .get("parent_guid")
                    .and_then(|v| v.as_str()),
                parent.as_deref(),
                "{}",
                d.file.path.display()
            );
        }
    }
    assert!(checked > 3800, "only {checked} events checked");
    // 116 childproc + 146 crossprocopen + 31 remotethread + 1 processblock with a pid.
    assert_eq!(targets, 294);
    eprintln!("{checked} process GUIDs and {targets} target GUIDs match the formula");
}

/// `docs/cb-bus.md` §4 "Expected 3.8.x values for fixture ingress.event.process/0.protobuf".
#[test]
fn reference_values_for_process_0() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let path = root.join("protobuf/ingress.event.process/0.protobuf");
    let files = capture::walk(&[path], &CaptureOverrides::default()).unwrap();
    let recs = decode(&files[0].meta, &files[0].body);
    let Record::Event(e) = &recs[0] else {
        panic!("{recs:?}")
    };
    assert_eq!(e.event_type, Some(EventType::Procstart));
    assert_eq!(e.sensor_id, Some(1));
    assert_eq!(e.hostname.as_deref(), Some("JASON-WIN81-VM"));
    assert_eq!(e.timestamp_ms / 1000, 1447697423);
    assert_eq!(e.pid, Some(1972));
    assert_eq!(
        e.process_guid.as_deref(),
        Some("00000001-0000-07b4-01d1-209a100bc217")
    );
    let path = "c:\\windows\\system32\\searchprotocolhost.exe";
    assert_eq!(e.path.as_deref(), Some(path));
    assert_eq!(e.process_path.as_deref(), Some(path));
    assert_eq!(e.md5.as_deref(), Some("D6021013D7C4E248AEB8BED12D3DCC88"));
    assert_eq!(
        e.process_md5.as_deref(),
        Some("D6021013D7C4E248AEB8BED12D3DCC88")
    );
    assert_eq!(e.username.as_deref(), Some("SYSTEM"));
    let d = &e.details_value();
    assert_eq!(d["parent_pid"], 2804);
    assert_eq!(d["parent_guid_legacy"], -8915740139778150230i64);
    assert_eq!(d["parent_guid"], "00000001-0000-0af4-01d1-1e444bf4c3dd");
    assert_eq!(d["parent_create_time"], 1447440685);
    assert_eq!(d["uid"], "S-1-5-18");
    // Kept in the typed column only (see `no_details_key_repeats_a_typed_column`).
    assert!(d.get("username").is_none(), "{d}");
    let facts = &e.processes;
    assert_eq!(facts[0].guid, "00000001-0000-07b4-01d1-209a100bc217");
    assert_eq!(
        facts[0].parent_guid.as_deref(),
        Some("00000001-0000-0af4-01d1-1e444bf4c3dd")
    );
    assert_eq!(facts[1].guid, "00000001-0000-0af4-01d1-1e444bf4c3dd");
    assert_eq!(facts[1].pid, Some(2804));
}

/// The typed columns of `events` that a payload field can fill under the same name.
const TYPED_COLUMNS: [&str; 12] = [
    "path",
    "md5",
    "sha256",
    "action",
    "command_line",
    "username",
    "remote_ip",
    "remote_port",
    "local_ip",
    "local_port",
    "direction",
    "domain",
];

/// An event's `details` leaves out what its typed column of the same name holds (a quarter of the
/// database was such repeats), and nothing is lost by it: where the captures fill such a field,
/// the typed column holds a value.
#[test]
fn no_details_key_repeats_a_typed_column() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let mut filled = 0;
    for d in decode_all(&root) {
        for r in &d.records {
            let Record::Event(e) = r else { continue };
            let details = e.details_value();
            for key in TYPED_COLUMNS {
                assert!(
                    details.get(key).is_none(),
                    "{}: details repeats {key}: {details}",
                    d.file.path.display()
                );
            }
            filled += usize::from(e.path.is_some()) + usize::from(e.remote_ip.is_some());
        }
    }
    assert!(filled > 1000, "the captures fill typed columns: {filled}");
}

/// The writer trusts a shared segment tag instead of comparing the acting-process columns.
#[test]
fn events_sharing_a_segment_tag_share_their_process_columns() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let columns = |e: &Event| {
        (
            e.process_guid.clone(),
            e.sensor_id,
            e.hostname.clone(),
            e.pid,
            e.process_path.clone(),
            e.process_md5.clone(),
            e.process_sha256.clone(),
        )
    };
    let mut shared = 0;
    for d in decode_all(&root) {
        let events: Vec<&Event> = d
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(&**e),
                _ => None,
            })
            .collect();
        for (i, a) in events.iter().enumerate() {
            for b in &events[i + 1..] {
                if a.segment_tag.same_columns(b.segment_tag) {
                    shared += 1;
                    assert_eq!(columns(a), columns(b), "{}", d.file.path.display());
                }
            }
        }
    }
    assert!(
        shared > 1000,
        "bundles hold many events per process: {shared}"
    );
}

#[test]
fn zip_records_take_identity_from_the_property_dump() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let zips: Vec<Decoded> = decode_all(&root.join("zip"));
    assert_eq!(zips.len(), 6);
    for d in &zips {
        assert_eq!(d.file.meta.content_type.as_deref(), Some("application/zip"));
        assert_eq!(d.file.meta.exchange, RAW_EXCHANGE);
        for r in &d.records {
            let Record::Event(e) = r else { panic!("{r:?}") };
            assert_eq!(e.sensor_id, Some(1), "{}", d.file.path.display());
            assert_eq!(e.hostname.as_deref(), Some("HYPERV-WIN7-X86"));
            // hostId/nodeId are 0 in these headers: a zero says nothing and is not stored.
            assert!(e.details_value().get("host_id").is_none());
            assert!(e.details_value().get("node_id").is_none());
            if let Some(g) = &e.process_guid {
                assert!(g.starts_with("00000001-"), "{g}");
            }
        }
    }
    // The identity really comes from the headers: change them and the events follow.
    let mut o = CaptureOverrides::default();
    o.add_header_arg("sensorId=99").unwrap();
    o.add_header_arg("sensorHostName=OTHER").unwrap();
    let files = capture::walk(&[root.join("zip/0.zip")], &o).unwrap();
    let recs = decode(&files[0].meta, &files[0].body);
    assert_eq!(recs.len(), 63);
    for r in &recs {
        let Record::Event(e) = r else { panic!() };
        assert_eq!(e.sensor_id, Some(99));
        assert_eq!(e.hostname.as_deref(), Some("OTHER"));
    }
}

fn key_of(r: &Record) -> RecordKey {
    match r {
        Record::Event(e) => e.key,
        Record::Binary(b) => b.key,
        Record::Notification(n) => n.key,
        Record::Quarantined(q) => q.key,
    }
}

#[test]
fn keys_are_distinct_per_content_and_stable_across_redelivery() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let all = decode_all(&root);

    // Byte-identical files within each section.
    let mut bodies: HashMap<(String, &[u8]), Vec<&PathBuf>> = HashMap::new();
    for d in &all {
        bodies
            .entry((section(&root, d), d.file.body.as_slice()))
            .or_default()
            .push(&d.file.path);
    }
    let mut duplicates: BTreeMap<String, usize> = BTreeMap::new();
    for ((sec, _), paths) in &bodies {
        *duplicates.entry(sec.clone()).or_default() += paths.len() - 1;
    }

    for sec in ["protobuf", "json"] {
        let decoded: Vec<&Decoded> = all.iter().filter(|d| section(&root, d) == sec).collect();
        let keys: HashSet<RecordKey> = decoded.iter().map(|d| key_of(&d.records[0])).collect();
        let dups = duplicates.get(sec).copied().unwrap_or(0);
        eprintln!(
            "{sec}: {} files, {} byte-identical duplicates, {} distinct keys",
            decoded.len(),
            dups,
            keys.len()
        );
        // JSON keys include the routing key, so identical bodies under different keys stay
        // apart; count identical (routing key, body) pairs instead.
        let expected = if sec == "json" {
            decoded
                .iter()
                .map(|d| (d.file.meta.routing_key.as_str(), d.file.body.as_slice()))
                .collect::<HashSet<_>>()
                .len()
        } else {
            decoded.len() - dups
        };
        assert_eq!(keys.len(), expected, "{sec}");
    }
    let total_dups: usize = duplicates.values().sum();
    eprintln!("byte-identical duplicate fixture files: {total_dups} ({duplicates:?})");

    // Raw bundle records: all distinct, and a redelivery yields the very same keys.
    for sec in ["zip", "bundle"] {
        for d in all.iter().filter(|d| section(&root, d) == sec) {
            let first: Vec<RecordKey> = d.records.iter().map(key_of).collect();
            let again: Vec<RecordKey> = decode(&d.file.meta, &d.file.body)
                .iter()
                .map(key_of)
                .collect();
            assert_eq!(first, again, "{}", d.file.path.display());
            let distinct: HashSet<&RecordKey> = first.iter().collect();
            eprintln!(
                "{}: {} records, {} distinct keys",
                d.file.path.display(),
                first.len(),
                distinct.len()
            );
            assert_eq!(distinct.len(), first.len(), "{}", d.file.path.display());
        }
    }
}

/// The same event delivered on `api.events` (with env) and inside a raw bundle (without env, the
/// sensor named by AMQP headers) must get the same key so it is stored once.
#[test]
fn same_event_via_both_exchanges_is_one_key() {
    let Some(root) = common::forwarder_captures() else {
        return;
    };
    let mut compared = 0;
    for d in decode_all(&root.join("protobuf")) {
        let mut msg = CbEventMsg::decode(d.file.body.as_slice()).unwrap();
        let endpoint = msg.env.take().and_then(|e| e.endpoint).expect("env");
        let record = msg.encode_to_vec();
        let mut body = (record.len() as u32).to_le_bytes().to_vec();
        body.extend_from_slice(&record);
        let mut meta = DeliveryMeta {
            exchange: RAW_EXCHANGE.to_owned(),
            routing_key: String::new(),
            content_type: Some("application/zip".to_owned()),
            ..DeliveryMeta::default()
        };
        meta.headers
            .insert("sensorId".into(), endpoint.sensor_id.unwrap().into());
        meta.headers.insert(
            "sensorHostName".into(),
            endpoint.sensor_host_name.clone().unwrap_or_default().into(),
        );
        let raw = decode(&meta, &body);
        assert_eq!(raw.len(), 1);
        assert_eq!(
            key_of(&raw[0]),
            key_of(&d.records[0]),
            "{}",
            d.file.path.display()
        );
        if let (Record::Event(a), Record::Event(b)) = (&raw[0], &d.records[0]) {
            assert_eq!(a.process_guid, b.process_guid);
            assert_eq!(a.processes, b.processes);
        }
        compared += 1;
    }
    assert_eq!(compared, 4076);
}
