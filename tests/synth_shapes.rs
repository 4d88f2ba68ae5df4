//! The synthetic traffic generator against the real captures: what it publishes must look like
//! what a CB server publishes, field for field, so that demos and benchmarks exercise the same
//! paths as production traffic.
//!
//! Checks, at the prost level: per payload kind, the set of populated fields equals the set
//! populated in the captured messages of that kind (current-sensor SHA-256 fields and the
//! payloads no capture has, `networkv2` and `scriptexe`, are the documented additions); header
//! fields and the string table; `env` on single messages and not in bundle records; bundle AMQP
//! headers; the GUID formula and FILETIME ranges; JSON notification keys per routing key; hits
//! on generated processes after their events. Then everything generated goes through
//! `cbtrail::decode` with nothing quarantined and with the `details` keys of the captures'
//! decoded events. And the same seed gives the same bytes.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;

use cbtrail::capture::{self, CaptureOverrides};
use cbtrail::decode::decode;
use cbtrail::model::{DeliveryMeta, EventType, Record};
use cbtrail::proto::CbEventMsg;
use cbtrail::synth::{Synth, SynthConfig, SyntheticMessage, process_guid};
use prost::Message;
use serde_json::Value;

// ---- reading deliveries -------------------------------------------------------------------

/// The raw `CbEventMsg` records of a delivery, and whether they came in a bundle.
fn raw_records(meta: &DeliveryMeta, body: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let ct = meta.content_type.as_deref().unwrap_or("");
    if ct == "application/json" {
        return Vec::new();
    }
    if meta.exchange != "api.rawsensordata" && ct == "application/protobuf" {
        return vec![(body.to_vec(), false)];
    }
    let mut members = Vec::new();
    if body.starts_with(b"PK") {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(body)).expect("zip opens");
        for i in 0..z.len() {
            let mut f = z.by_index(i).expect("zip member");
            assert_eq!(f.compression(), zip::CompressionMethod::Deflated);
            let mut data = Vec::new();
            f.read_to_end(&mut data).expect("member inflates");
            members.push(data);
        }
    } else {
        members.push(body.to_vec());
    }
    let mut out = Vec::new();
    for m in members {
        let mut o = 0;
        while o + 4 <= m.len() {
            let len = u32::from_le_bytes(m[o..o + 4].try_into().unwrap()) as usize;
            o += 4;
            assert!(o + len <= m.len(), "record overruns its bundle");
            out.push((m[o..o + len].to_vec(), true));
            o += len;
        }
        assert_eq!(o, m.len(), "bundle ends on a record boundary");
    }
    out
}

/// Payload kind of a raw message, as the reference forwarder classifies it.
fn kind(m: &CbEventMsg) -> &'static str {
    if let Some(p) = &m.process {
        return if p.created == Some(true) {
            "procstart"
        } else {
            "procend"
        };
    }
    if m.modload.is_some() {
        "modload"
    } else if m.filemod.is_some() {
        "filemod"
    } else if m.networkv2.is_some() {
        "networkv2"
    } else if m.network.is_some() {
        "network"
    } else if m.regmod.is_some() {
        "regmod"
    } else if m.childproc.is_some() {
        "childproc"
    } else if let Some(c) = &m.crossproc {
        if c.open.is_some() {
            "crossprocopen"
        } else {
            "remotethread"
        }
    } else if m.emet.is_some() {
        "emet"
    } else if m.scriptexe.is_some() {
        "scriptexe"
    } else if m.tamper_alert.is_some() {
        "tamper"
    } else if m.blocked.is_some() {
        "blocked"
    } else if m.module.is_some() {
        "module"
    } else {
        "other"
    }
}

/// `m` with its long byte and text values cut to one element: the same fields set, much less
/// `Debug` text (each byte of a `Vec<u8>` is a line of it).
fn shrunk(m: &CbEventMsg) -> CbEventMsg {
    fn b(v: &mut Option<Vec<u8>>) {
        if let Some(v) = v {
            v.truncate(1);
        }
    }
    fn s(v: &mut Option<String>) {
        if let Some(v) = v {
            v.truncate(1);
        }
    }
    let mut m = m.clone();
    b(&mut m.header.process_md5);
    b(&mut m.header.process_sha256);
    s(&mut m.header.process_path);
    for e in &mut m.strings {
        b(&mut e.utf8string);
    }
    if let Some(p) = &mut m.process {
        for f in [
            &mut p.md5hash,
            &mut p.sha256hash,
            &mut p.parent_md5,
            &mut p.parent_sha256,
            &mut p.commandline,
        ] {
            b(f);
        }
    }
    if let Some(c) = &mut m.childproc {
        for f in [&mut c.md5hash, &mut c.sha256hash, &mut c.commandline] {
            b(f);
        }
    }
    if let Some(x) = &mut m.modload {
        b(&mut x.md5hash);
        b(&mut x.sha256hash);
    }
    if let Some(x) = &mut m.filemod {
        b(&mut x.md5hash);
        b(&mut x.sha256hash);
    }
    if let Some(x) = &mut m.regmod {
        b(&mut x.utf8_regpath);
    }
    if let Some(x) = &mut m.module {
        for f in [
            &mut x.md5,
            &mut x.sha256,
            &mut x.icon,
            &mut x.image_file_header,
        ] {
            b(f);
        }
    }
    if let Some(c) = &mut m.crossproc {
        if let Some(o) = &mut c.open {
            b(&mut o.target_proc_md5);
            b(&mut o.target_proc_sha256);
        }
        if let Some(r) = &mut c.remotethread {
            b(&mut r.remote_proc_md5);
            b(&mut r.remote_proc_sha256);
        }
    }
    m
}

/// Dotted paths of the fields set in `m` (`header.process_pid`, `strings.guid`, …), read off
/// prost's derived `Debug`: a field printed as `None` or `[]` is unset, anything else is set.
fn populated(m: &CbEventMsg) -> BTreeSet<String> {
    let text = format!("{:#?}", shrunk(m));
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim_start();
        let t = t.strip_prefix("r#").unwrap_or(t);
        let Some((name, rest)) = t.split_once(": ") else {
            continue;
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut path: Vec<&str> = stack.iter().map(|(_, n)| n.as_str()).collect();
        path.push(name);
        let path = path.join(".");
        if rest == "None," || rest == "[]," {
            continue;
        }
        if rest.ends_with('{') || rest == "Some(" || rest == "[" {
            stack.push((indent, name.to_string()));
        }
        out.insert(path);
    }
    out
}

struct Raw {
    msg: CbEventMsg,
    bundled: bool,
    /// Index of the delivery in the stream.
    delivery: usize,
}

/// A delivery as published: properties and body.
type Delivery = (DeliveryMeta, Vec<u8>);

fn captured() -> Option<(Vec<Raw>, Vec<Delivery>)> {
    let root = common::forwarder_captures()?;
    let files = capture::walk(&[root], &CaptureOverrides::default()).expect("walk captures");
    let mut raws = Vec::new();
    let mut deliveries = Vec::new();
    for (i, f) in files.into_iter().enumerate() {
        for (bytes, bundled) in raw_records(&f.meta, &f.body) {
            let msg = CbEventMsg::decode(&bytes[..]).expect("captured message decodes");
            raws.push(Raw {
                msg,
                bundled,
                delivery: i,
            });
        }
        deliveries.push((f.meta, f.body));
    }
    Some((raws, deliveries))
}

struct Generated {
    msgs: Vec<SyntheticMessage>,
    raws: Vec<Raw>,
    summary: cbtrail::synth::SynthSummary,
    cfg: SynthConfig,
}

impl Generated {
    /// The raw records of delivery `i` (records are stored in delivery order).
    fn records_of(&self, i: usize) -> &[Raw] {
        let start = self.raws.partition_point(|r| r.delivery < i);
        let end = self.raws.partition_point(|r| r.delivery <= i);
        &self.raws[start..end]
    }
}

fn generate(spec: &str) -> Generated {
    let cfg = SynthConfig::parse(spec).expect("spec parses");
    let mut synth = Synth::new(cfg.clone());
    let msgs: Vec<SyntheticMessage> = synth.by_ref().collect();
    let summary = synth.summary();
    let mut raws = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        for (bytes, bundled) in raw_records(&m.meta, &m.body) {
            let msg = CbEventMsg::decode(&bytes[..]).expect("generated message decodes");
            raws.push(Raw {
                msg,
                bundled,
                delivery: i,
            });
        }
    }
    Generated {
        msgs,
        raws,
        summary,
        cfg,
    }
}

/// Runs covering every payload kind, including the rare ones (tamper alerts, blocks, EMET).
fn coverage_runs(modern: &str) -> Vec<Generated> {
    let mut runs: Vec<Generated> = Vec::new();
    let mut kinds = HashSet::new();
    for seed in 1..=8 {
        let g = generate(&format!(
            "seed={seed},hosts=40,processes=90,events=12,hit_rate=0.1,duration=1d,mode=mixed,modern={modern}"
        ));
        for r in &g.raws {
            kinds.insert(kind(&r.msg));
            if let Some(b) = &r.msg.blocked {
                kinds.insert(if b.blocked_pid.is_some() {
                    "block-running"
                } else {
                    "block-create"
                });
            }
        }
        runs.push(g);
        let wanted = [
            "tamper",
            "block-running",
            "block-create",
            "emet",
            "remotethread",
            "module",
        ];
        if wanted.iter().all(|k| kinds.contains(k)) {
            break;
        }
    }
    runs
}

fn fields_by_kind<'a>(
    raws: impl Iterator<Item = &'a Raw>,
) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut by: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for r in raws {
        let f = populated(&r.msg);
        by.entry(kind(&r.msg))
            .or_default()
            .extend(f.into_iter().filter(|p| !p.starts_with("env")));
    }
    by
}

/// Fields only current sensors send: SHA-256 next to every MD5.
const MODERN_ONLY: &[&str] = &[
    "header.process_sha256",
    "process.sha256hash",
    "process.parent_sha256",
    "childproc.sha256hash",
    "modload.sha256hash",
    "filemod.sha256hash",
    "crossproc.open.target_proc_sha256",
    "crossproc.remotethread.remote_proc_sha256",
    "module.sha256",
];

/// Payloads no capture holds (current sensors), with the fields they are sent with: the header
/// of the acting process and what the reference forwarder renders of them.
const UNCAPTURED: &[(&str, &[&str])] = &[
    (
        "networkv2",
        &[
            "networkv2",
            "networkv2.protocol",
            "networkv2.utf8_netpath",
            "networkv2.outbound",
            "networkv2.proxy_connection",
            "networkv2.remote_ip_address",
            "networkv2.remote_ip_address.b_is_ipv6",
            "networkv2.remote_ip_address.ipv4_address",
            "networkv2.remote_ip_address.ipv6_low",
            "networkv2.remote_ip_address.ipv6_high",
            "networkv2.remote_port",
            "networkv2.local_ip_address",
            "networkv2.local_ip_address.b_is_ipv6",
            "networkv2.local_ip_address.ipv4_address",
            "networkv2.local_ip_address.ipv6_low",
            "networkv2.local_ip_address.ipv6_high",
            "networkv2.local_port",
            "networkv2.ja3",
            "networkv2.ja3s",
        ],
    ),
    (
        "scriptexe",
        &["scriptexe", "scriptexe.script", "scriptexe.sha256"],
    ),
];

const HEADER_OF_ACTOR: &[&str] = &[
    "header",
    "header.version",
    "header.timestamp",
    "header.process_guid",
    "header.process_create_time",
    "header.process_pid",
    "header.process_md5",
    "header.process_path",
    "header.process_sha256",
];

fn diff(a: &BTreeSet<String>, b: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (
        a.difference(b).cloned().collect(),
        b.difference(a).cloned().collect(),
    )
}

// ---- the checks ---------------------------------------------------------------------------

#[test]
fn populated_fields_match_the_captures_per_payload_kind() {
    let Some((captured, _)) = captured() else {
        return;
    };
    let want = fields_by_kind(captured.iter());
    // A sanity check of the field reader itself on a capture.
    assert!(want["procstart"].contains("process.parent_create_time"));
    assert!(want["filemod"].contains("strings.utf8string"));

    // Sensors of the captured generations only: exactly the captured fields.
    let legacy = coverage_runs("0");
    let got = fields_by_kind(legacy.iter().flat_map(|g| g.raws.iter()));
    for (k, want_fields) in &want {
        let got_fields = got.get(k).cloned().unwrap_or_default();
        let (missing, extra) = diff(want_fields, &got_fields);
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{k}: captured but never generated {missing:?}; generated but never captured {extra:?}"
        );
    }
    for k in got.keys() {
        assert!(
            want.contains_key(k),
            "legacy sensors generated {k}, which no capture has"
        );
    }

    // With current sensors: the same plus SHA-256 fields and the uncaptured payloads.
    let modern = coverage_runs("0.5");
    let got = fields_by_kind(modern.iter().flat_map(|g| g.raws.iter()));
    for (k, got_fields) in &got {
        let mut allowed: BTreeSet<String> = match UNCAPTURED.iter().find(|(n, _)| n == k) {
            Some((_, fields)) => fields
                .iter()
                .chain(HEADER_OF_ACTOR)
                .map(|s| s.to_string())
                .collect(),
            None => want
                .get(k)
                .unwrap_or_else(|| {
                    panic!("generated {k}, which is neither captured nor documented")
                })
                .clone(),
        };
        let required = allowed.clone();
        allowed.extend(MODERN_ONLY.iter().map(|s| s.to_string()));
        let extra: Vec<_> = got_fields.difference(&allowed).collect();
        assert!(extra.is_empty(), "{k}: undocumented fields {extra:?}");
        let missing: Vec<_> = required
            .iter()
            .filter(|f| !got_fields.contains(*f) && !MODERN_ONLY.contains(&f.as_str()))
            .collect();
        assert!(missing.is_empty(), "{k}: never generated {missing:?}");
    }
    for sha in MODERN_ONLY {
        assert!(
            got.values().any(|f| f.contains(*sha)),
            "current sensors never sent {sha}"
        );
    }
    for (k, _) in UNCAPTURED {
        assert!(got.contains_key(k), "current sensors never sent {k}");
    }
}

/// The string table as the server fills it: a message names a file through
/// `filepath_string_guid`, and `strings` holds exactly that entry.
fn check_string_table(r: &Raw) -> Result<(), String> {
    let h = &r.msg.header;
    if h.version != 4 {
        return Err(format!("header version {}", h.version));
    }
    match h.filepath_string_guid {
        Some(g) => {
            // One entry; modloads without the base-module flag repeat it (a sensor quirk the
            // captures show on every such load, and only there).
            let repeated = r
                .msg
                .modload
                .as_ref()
                .is_some_and(|m| m.is_process_base_module.is_none());
            let expected = if repeated { 2 } else { 1 };
            if r.msg.strings.len() != expected {
                return Err(format!("{} strings for one file", r.msg.strings.len()));
            }
            if repeated && r.msg.strings[0] != r.msg.strings[1] {
                return Err("repeated string entries differ".into());
            }
            let s = &r.msg.strings[0];
            if s.guid != Some(g) || s.string_type != Some(1) {
                return Err(format!("string entry {s:?} does not match guid {g}"));
            }
            if s.utf8string.as_ref().is_none_or(|b| b.is_empty()) {
                return Err("empty string entry".into());
            }
            if let Some(pg) = h.process_filepath_string_guid
                && pg != g
            {
                return Err("process path guid differs from file guid".into());
            }
            // The handle path is the file's own, except for some loads under WOW64
            // redirection, where it is the system32 path the program asked for.
            let wow64 = r.msg.strings[0]
                .utf8string
                .as_ref()
                .is_some_and(|p| p.windows(10).any(|w| w == br"\syswow64\"));
            if let Some(m) = &r.msg.modload
                && m.handlepath_string_guid != Some(g)
                && !wow64
            {
                return Err("modload handle path differs outside WOW64".into());
            }
        }
        None => {
            if !r.msg.strings.is_empty() {
                return Err("strings without a header reference".into());
            }
        }
    }
    let needs_file = matches!(kind(&r.msg), "modload" | "filemod" | "procend" | "blocked");
    if needs_file && h.filepath_string_guid.is_none() {
        return Err(format!("{} without a file name", kind(&r.msg)));
    }
    Ok(())
}

#[test]
fn header_and_string_table_as_the_server_fills_them() {
    let Some((captured, _)) = captured() else {
        return;
    };
    // The rule holds on the captures (so checking it means something) …
    for r in &captured {
        check_string_table(r).unwrap_or_else(|e| panic!("capture breaks the rule: {e}"));
    }
    // … and on generated traffic.
    let g = generate("seed=5,hosts=12,processes=100,events=25,mode=mixed");
    assert!(g.raws.len() > 10_000);
    for r in &g.raws {
        check_string_table(r).unwrap_or_else(|e| panic!("{e}: {:?}", r.msg));
    }
    // Same path, same string id (as in the captures), across messages and hosts.
    let mut ids: HashMap<Vec<u8>, i64> = HashMap::new();
    for r in &g.raws {
        for s in &r.msg.strings {
            let prev = ids.insert(
                s.utf8string.clone().unwrap_or_default(),
                s.guid.unwrap_or(0),
            );
            assert!(
                prev.is_none_or(|p| Some(p) == s.guid),
                "one path, two string ids"
            );
        }
    }
}

#[test]
fn env_on_single_messages_only_and_bundle_headers_like_the_captures() {
    let Some((captured, deliveries)) = captured() else {
        return;
    };
    assert!(
        captured
            .iter()
            .filter(|r| !r.bundled)
            .all(|r| r.msg.env.is_some())
    );
    assert!(
        captured
            .iter()
            .filter(|r| r.bundled)
            .all(|r| r.msg.env.is_none())
    );
    let captured_headers: BTreeSet<String> = deliveries
        .iter()
        .filter(|(m, _)| m.exchange == "api.rawsensordata")
        .flat_map(|(m, _)| m.headers.keys().cloned())
        .collect();
    assert_eq!(
        captured_headers,
        ["hostId", "nodeId", "sensorHostName", "sensorId"]
            .map(String::from)
            .into()
    );

    let g = generate("seed=9,hosts=6,processes=80,events=20,mode=mixed");
    let mut singles = 0;
    let mut bundles = 0;
    for (i, m) in g.msgs.iter().enumerate() {
        let ct = m.meta.content_type.as_deref();
        match (m.meta.exchange.as_str(), ct) {
            ("api.events", Some("application/protobuf")) => {
                singles += 1;
                assert!(m.meta.routing_key.starts_with("ingress.event."));
                let r = g.records_of(i).first().expect("record");
                let env = r.msg.env.as_ref().expect("single messages carry env");
                let ep = env.endpoint.as_ref().expect("endpoint");
                assert!(ep.sensor_id.is_some_and(|s| s > 0) && ep.sensor_host_name.is_some());
                assert_eq!(env.server.as_ref().and_then(|s| s.node_id), Some(0));
            }
            ("api.rawsensordata", Some("application/zip")) => {
                bundles += 1;
                let keys: BTreeSet<String> = m.meta.headers.keys().cloned().collect();
                assert_eq!(keys, captured_headers);
                assert!(m.meta.headers["sensorId"].is_i64());
                assert!(m.meta.headers["hostId"].is_i64());
                assert!(m.meta.headers["nodeId"].is_i64());
                assert!(m.meta.headers["sensorHostName"].is_string());
                let mut z = zip::ZipArchive::new(std::io::Cursor::new(&m.body)).unwrap();
                assert_eq!(z.len(), 1);
                let name = z.by_index(0).unwrap().name().unwrap().to_string();
                // EventLog_45f2535d.1--2017-01-19-04-11-11.log
                assert!(
                    name.starts_with("EventLog_") && name.ends_with(".log"),
                    "{name}"
                );
                assert_eq!(
                    name.len(),
                    "EventLog_45f2535d.1--2017-01-19-04-11-11.log".len()
                );
            }
            ("api.events", Some("application/json")) => {}
            other => panic!("unexpected delivery {other:?}"),
        }
    }
    assert!(singles > 0 && bundles > 0);
    assert!(
        g.raws
            .iter()
            .filter(|r| r.bundled)
            .all(|r| r.msg.env.is_none())
    );
}

#[test]
fn guids_follow_the_server_formula_and_times_are_plausible() {
    let g = generate("seed=3,hosts=10,processes=120,events=20,hit_rate=0.1,mode=mixed");
    let start_ft = (g.cfg.start_ms + 11_644_473_600_000) * 10_000;
    let end_ft = start_ft + g.cfg.duration_secs as i64 * 10_000_000;
    let mut started: HashSet<String> = HashSet::new();
    let mut legacy_of: HashMap<String, i64> = HashMap::new();
    let mut users: HashMap<String, String> = HashMap::new();
    for (i, m) in g.msgs.iter().enumerate() {
        let sensor = match m.meta.headers.get("sensorId") {
            Some(v) => v.as_i64().unwrap() as i32,
            None => 0,
        };
        for r in g.records_of(i) {
            let sensor = r
                .msg
                .env
                .as_ref()
                .and_then(|e| e.endpoint.as_ref())
                .and_then(|e| e.sensor_id)
                .unwrap_or(sensor);
            assert!(sensor > 0);
            let h = &r.msg.header;
            let ts = h.timestamp.expect("every message has a timestamp");
            // Events of the window (snapshots name processes up to weeks older).
            assert!(
                ts >= start_ft - 30 * 86_400 * 10_000_000 && ts <= end_ft + 36_000_000_000,
                "{ts}"
            );
            if let (Some(pid), Some(ct)) = (h.process_pid, h.process_create_time) {
                assert!(ct <= ts, "created after its event");
                assert!(ct > start_ft - 30 * 86_400 * 10_000_000, "create time {ct}");
                let guid = process_guid(sensor, pid, ct);
                assert_eq!(guid.len(), 36);
                if r.msg
                    .process
                    .as_ref()
                    .is_some_and(|p| p.created == Some(true))
                {
                    started.insert(guid.clone());
                }
                // The sensor's 64-bit id is stable for a process (0 only on childproc ends).
                if let Some(l) = h.process_guid.filter(|&l| l != 0) {
                    let prev = legacy_of.insert(guid.clone(), l);
                    assert!(
                        prev.is_none_or(|p| p == l),
                        "process {guid} changed its legacy id"
                    );
                }
                if !matches!(kind(&r.msg), "procstart" | "emet") {
                    assert!(
                        started.contains(&guid),
                        "{} from {guid} before its procstart",
                        kind(&r.msg)
                    );
                }
            }
            if let Some(c) = &r.msg.childproc {
                let child = process_guid(sensor, c.pid.unwrap() as i32, c.create_time.unwrap());
                let created = c.created == Some(true);
                let suppressed =
                    c.suppressed.as_ref().and_then(|s| s.b_is_suppressed) == Some(true);
                assert!(
                    created || suppressed || started.contains(&child),
                    "end of unknown child"
                );
                assert_eq!(
                    h.process_guid == Some(0),
                    !created,
                    "childproc end has no actor id"
                );
            }
            if let Some(p) = &r.msg.process
                && p.created == Some(true)
                && p.pid != Some(0)
            {
                // Every parent is a process the stream announced (possibly the reduced
                // record of one that exited before the sensor started).
                let parent =
                    process_guid(sensor, p.parent_pid.unwrap(), p.parent_create_time.unwrap());
                if p.parent_pid == Some(-1) {
                    // Regression: a boot process started before its parent came out parentless.
                    assert!(
                        p.md5hash.is_none(),
                        "only the reduced record of an exited parent has no parent"
                    );
                } else {
                    assert!(
                        started.contains(&parent),
                        "parent {parent} of a procstart never announced"
                    );
                }
                let me = process_guid(sensor, p.pid.unwrap(), h.process_create_time.unwrap());
                if let Some(user) = &p.username {
                    users.insert(me, user.clone());
                }
                // Regression: console hosts ran as the interactive user under SYSTEM consoles.
                if h.process_path
                    .as_deref()
                    .is_some_and(|p| p.ends_with(r"\conhost.exe"))
                    && let Some(parent_user) = users.get(&parent)
                {
                    assert_eq!(
                        p.username.as_ref(),
                        Some(parent_user),
                        "conhost runs as its console"
                    );
                }
            }
        }
    }
    assert!(started.len() > 500);
}

fn normalize_routing_key(rk: &str) -> String {
    let parts: Vec<&str> = rk.split('.').collect();
    if parts.len() > 2 && parts[0] == "feed" && parts[1].parse::<u64>().is_ok() {
        format!("feed.<id>.{}", parts[2..].join("."))
    } else {
        rk.to_string()
    }
}

fn normalize_key(k: &str) -> String {
    match k.strip_prefix("watchlist_") {
        Some(id) if id.parse::<u64>().is_ok() => "watchlist_<id>".into(),
        _ => k.to_string(),
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().map(|k| normalize_key(k)).collect())
        .unwrap_or_default()
}

fn doc_keys(v: &Value) -> Vec<BTreeSet<String>> {
    v.get("docs")
        .and_then(Value::as_array)
        .map(|docs| {
            docs.iter()
                .map(|d| {
                    keys(d)
                        .into_iter()
                        .filter(|k| !k.starts_with("alliance_"))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn json_notifications_have_the_keys_of_the_captured_ones() {
    let Some((_, deliveries)) = captured() else {
        return;
    };
    // Per routing key: every key any capture has, and the keys all captures have.
    let mut union: HashMap<(String, bool), BTreeSet<String>> = HashMap::new();
    let mut inter: HashMap<(String, bool), BTreeSet<String>> = HashMap::new();
    for (meta, body) in &deliveries {
        if meta.content_type.as_deref() != Some("application/json") {
            continue;
        }
        let v: Value = serde_json::from_slice(body).expect("captured JSON");
        let rk = normalize_routing_key(&meta.routing_key);
        let mut sets = vec![(false, keys(&v))];
        sets.extend(doc_keys(&v).into_iter().map(|d| (true, d)));
        for (docs, set) in sets {
            let key = (rk.clone(), docs);
            union
                .entry(key.clone())
                .or_default()
                .extend(set.iter().cloned());
            inter
                .entry(key)
                .and_modify(|i| i.retain(|k| set.contains(k)))
                .or_insert(set);
        }
    }
    let g = generate("seed=4,hosts=12,processes=100,events=15,hit_rate=0.3");
    let mut seen = BTreeSet::new();
    for m in &g.msgs {
        if m.meta.content_type.as_deref() != Some("application/json") {
            continue;
        }
        assert_eq!(m.meta.exchange, "api.events");
        let v: Value = serde_json::from_slice(&m.body).expect("generated JSON");
        let rk = normalize_routing_key(&m.meta.routing_key);
        let mut sets = vec![(false, keys(&v))];
        sets.extend(doc_keys(&v).into_iter().map(|d| (true, d)));
        for (docs, set) in sets {
            let key = (rk.clone(), docs);
            let all = union
                .get(&key)
                .unwrap_or_else(|| panic!("{rk}: no captured notification of this kind"));
            let extra: Vec<_> = set.difference(all).collect();
            assert!(
                extra.is_empty(),
                "{rk} (docs: {docs}): keys never captured {extra:?}"
            );
            let missing: Vec<_> = inter[&key].difference(&set).collect();
            assert!(missing.is_empty(), "{rk} (docs: {docs}): lacks {missing:?}");
        }
        seen.insert(rk);
    }
    for rk in [
        "watchlist.hit.process",
        "watchlist.storage.hit.process",
        "feed.<id>.ingress.hit.process",
        "feed.query.hit.process",
        "alert.watchlist.hit.query.process",
        "binaryinfo.observed",
        "binaryinfo.host.observed",
        "binaryinfo.group.observed",
        "binarystore.file.added",
        "watchlist.storage.hit.binary",
    ] {
        assert!(seen.contains(rk), "never generated {rk}");
    }
}

/// GUID (36 characters) a process hit notification is about.
fn hit_target(rk: &str, v: &Value) -> Option<String> {
    let id = match rk {
        "watchlist.hit.process" => v["docs"][0]["unique_id"].as_str(),
        "alert.watchlist.hit.query.process" => v["process_id"].as_str(),
        _ if rk.ends_with(".hit.process") => v["process_id"].as_str(),
        _ => None,
    }?;
    Some(id[..36].to_string())
}

#[test]
fn hits_name_generated_processes_after_their_events() {
    let g = generate("seed=6,hosts=10,processes=120,events=25,hit_rate=0.15,mode=mixed");
    let mut announced: HashSet<String> = HashSet::new();
    let mut hit_guids = Vec::new();
    let mut notified = 0;
    for (i, m) in g.msgs.iter().enumerate() {
        let sensor = m
            .meta
            .headers
            .get("sensorId")
            .and_then(Value::as_i64)
            .unwrap_or(0) as i32;
        for r in g.records_of(i) {
            let sensor = r
                .msg
                .env
                .as_ref()
                .and_then(|e| e.endpoint.as_ref())
                .and_then(|e| e.sensor_id)
                .unwrap_or(sensor);
            if let (Some(p), Some(pid), Some(ct)) = (
                &r.msg.process,
                r.msg.header.process_pid,
                r.msg.header.process_create_time,
            ) && p.created == Some(true)
            {
                announced.insert(process_guid(sensor, pid, ct));
            }
        }
        if m.meta.content_type.as_deref() == Some("application/json") {
            let v: Value = serde_json::from_slice(&m.body).unwrap();
            if let Some(guid) = hit_target(&m.meta.routing_key, &v) {
                notified += 1;
                assert!(
                    announced.contains(&guid),
                    "{} on {guid} before its procstart",
                    m.meta.routing_key
                );
                if !hit_guids.contains(&guid) {
                    hit_guids.push(guid);
                }
            }
        }
    }
    assert!(
        notified >= g.summary.hits as usize && g.summary.hits > 20,
        "{}",
        g.summary
    );
    let summary: HashSet<&String> = g.summary.hit_process_guids.iter().collect();
    let found: HashSet<&String> = hit_guids.iter().collect();
    assert_eq!(
        summary, found,
        "the summary names the processes the notifications hit"
    );
}

/// `details` keys of decoded events, per event type.
fn details_keys(records: &[Record]) -> BTreeMap<String, BTreeSet<String>> {
    let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in records {
        let (t, d) = match r {
            Record::Event(e) => (
                e.event_type
                    .map_or("untyped", EventType::as_str)
                    .to_string(),
                e.details_value(),
            ),
            Record::Binary(b) => ("binary".to_string(), b.details_value()),
            _ => continue,
        };
        if let Some(o) = d.as_object() {
            by.entry(t).or_default().extend(o.keys().cloned());
        }
    }
    by
}

/// Decoded keys only current sensors' messages have (SHA-256 values; v2 network fields and
/// AMSI scripts are new payloads).
const MODERN_DETAIL_KEYS: &[&str] = &[
    "sha256",
    "parent_sha256",
    "file_sha256",
    "target_sha256",
    "ja3",
    "ja3s",
    "proxy",
    "proxy_ip",
    "proxy_domain",
    "proxy_port",
    "Protocol",
    "script",
    "script_sha256",
];

#[test]
fn generated_traffic_decodes_cleanly_with_the_captured_details() {
    let Some((_, deliveries)) = captured() else {
        return;
    };
    let mut captured_records = Vec::new();
    for (meta, body) in &deliveries {
        captured_records.extend(decode(meta, body));
    }
    let want = details_keys(&captured_records);

    for (modern, runs) in [(false, coverage_runs("0")), (true, coverage_runs("0.5"))] {
        let mut records = Vec::new();
        let mut events = 0;
        let mut notifications = 0;
        let mut hits = 0;
        for g in &runs {
            events += g.summary.events;
            notifications += g.summary.notifications;
            hits += g.summary.hits;
        }
        for m in runs.iter().flat_map(|g| g.msgs.iter()) {
            let out = decode(&m.meta, &m.body);
            for r in &out {
                if let Record::Quarantined(q) = r {
                    panic!(
                        "quarantined {:?}: {} ({})",
                        q.reason, q.error, m.meta.routing_key
                    );
                }
            }
            records.extend(out);
        }
        let decoded_events = records
            .iter()
            .filter(|r| matches!(r, Record::Event(_) | Record::Binary(_)))
            .count() as u64;
        assert_eq!(
            decoded_events, events,
            "every generated event decodes to one record"
        );
        let decoded_notifications = records
            .iter()
            .filter(|r| matches!(r, Record::Notification(_)))
            .count() as u64;
        assert_eq!(decoded_notifications, notifications);
        let decoded_hits = records
            .iter()
            .filter(|r| matches!(r, Record::Notification(n) if n.is_process_hit()))
            .count() as u64;
        assert!(
            decoded_hits >= hits,
            "every hit notification is recognised as one"
        );

        let got = details_keys(&records);
        for (t, got_keys) in &got {
            let Some(want_keys) = want.get(t) else {
                assert!(
                    modern && t == "scriptexe",
                    "decoded {t} events, which no capture has"
                );
                continue;
            };
            let extra: Vec<_> = got_keys
                .difference(want_keys)
                .filter(|k| !(modern && MODERN_DETAIL_KEYS.contains(&k.as_str())))
                .collect();
            let missing: Vec<_> = want_keys.difference(got_keys).collect();
            assert!(
                extra.is_empty() && missing.is_empty(),
                "{t} details: not in captures {extra:?}; never generated {missing:?}"
            );
        }
        for t in want.keys() {
            assert!(got.contains_key(t), "never generated a decoded {t}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let spec = "seed=17,hosts=5,processes=60,events=15,hit_rate=0.1,mode=mixed";
    let a: Vec<SyntheticMessage> = Synth::new(SynthConfig::parse(spec).unwrap()).collect();
    let b: Vec<SyntheticMessage> = Synth::new(SynthConfig::parse(spec).unwrap()).collect();
    assert!(a.len() > 1000);
    assert!(a == b, "two runs of one seed differ");
    let c: Vec<SyntheticMessage> =
        Synth::new(SynthConfig::parse(&spec.replace("seed=17", "seed=18")).unwrap()).collect();
    assert!(a != c, "another seed gives other traffic");
}

#[test]
fn config_errors_name_the_key() {
    for (spec, key) in [
        ("hosts=0", "hosts"),
        ("processes=lots", "processes"),
        ("mode=carrier-pigeon", "mode"),
        ("hit_rate=2", "hit_rate"),
        ("colour=blue", "colour"),
    ] {
        let err = SynthConfig::parse(spec).unwrap_err().to_string();
        assert!(err.contains(key), "{spec}: {err}");
    }
}
