//! One serialized `CbEventMsg` → one [`Record`] (an [`Event`], or a [`Binary`] for module info).
//!
//! The message is classified by which payload sub-message is set, in the reference consumer's order
//! (`docs/cb-bus.md` §2), never by routing key. Typed [`Event`] fields carry what analysts filter and
//! join on; `details` carries every decoded payload field under the reference forwarder's 3.8.x key
//! names where it has one (without its bugs), else the proto field name in snake case.
//!
//! Two wire-level facts prost cannot give us are found by `scan_top_level`: whether the required
//! `header` (field 1) is present (prost fills in a default), and where the `env` field (13) sits, so
//! the record key can be computed over the message *without* env. That makes the same event arriving
//! via `api.events` (env set by the server) and via `api.rawsensordata` (no env) one row.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;

use prost::Message;
use serde_json::Value;

use super::guid::{
    HEX_LOWER, filetime_to_start_ms, filetime_to_unix_ms, guid_from_parts, hash_hex,
    ipv4_from_sensor, ipv6_from_sensor, port_from_sensor, text_hash_upper,
};
use crate::model::{
    Binary, Event, EventType, FactRank, Headers, ProcessFacts, Record, SegmentTag, record_key,
};
use crate::proto::{
    CbChildProcessMsg, CbCrossProcessMsg, CbEmetMitigationAction, CbEmetMitigationMsg, CbEventMsg,
    CbFileBackedScriptExecute, CbFileModMsg, CbIpAddr, CbModuleInfoMsg, CbModuleLoadMsg,
    CbNetConnBlockedMsg, CbNetConnBlockedMsgv2, CbNetConnMsg, CbNetConnMsgv2, CbProcessBlockedMsg,
    CbProcessMetadataMsg, CbProcessMsg, CbRegModMsg, CbScriptExecute, CbStatisticsMsg, CbStringMsg,
    CbTamperAlertMsg, CbVtLoadMsg, CbVtWriteMsg, InternalUse,
};

/// Sensor identity taken from the AMQP headers of a raw delivery (`sensorId`, `hostId`, `nodeId`,
/// `sensorHostName`): records inside zip bundles carry no `env`, so this stands in for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEnv {
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    pub host_id: Option<i64>,
    pub node_id: Option<i64>,
}

impl HeaderEnv {
    /// Read the four headers; integers may arrive as JSON numbers or decimal strings.
    pub fn from_headers(headers: &Headers) -> HeaderEnv {
        let int = |k: &str| headers.get(k).and_then(value_i64);
        HeaderEnv {
            sensor_id: int("sensorId"),
            host_id: int("hostId"),
            node_id: int("nodeId"),
            hostname: headers
                .get("sensorHostName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }
    }
}

fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Wire-level scan

/// What the top-level wire scan found.
#[derive(Debug, Default)]
pub(crate) struct WireScan {
    pub has_header: bool,
    /// Byte ranges (tag through value) of every top-level field 13 (`env`).
    pub env: Vec<Range<usize>>,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(format!("truncated varint at byte {}", *pos));
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(format!(
        "varint longer than 10 bytes ending at byte {}",
        *pos
    ))
}

fn skip(buf: &[u8], pos: &mut usize, n: u64, what: &str) -> Result<(), String> {
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| pos.checked_add(n))
        .filter(|&end| end <= buf.len())
        .ok_or_else(|| {
            format!(
                "{what} of {n} bytes at byte {} overruns the {}-byte message",
                *pos,
                buf.len()
            )
        })?;
    *pos = end;
    Ok(())
}

/// Skip one field value of `wire_type` (tag already read). Groups are skipped to their end tag.
fn skip_value(
    buf: &[u8],
    pos: &mut usize,
    field: u64,
    wire_type: u64,
    depth: u32,
) -> Result<(), String> {
    match wire_type {
        0 => read_varint(buf, pos).map(drop),
        1 => skip(buf, pos, 8, "fixed64"),
        2 => {
            let len = read_varint(buf, pos)?;
            skip(buf, pos, len, "length-delimited field")
        }
        3 => {
            if depth > 64 {
                return Err("groups nested too deeply".to_owned());
            }
            loop {
                let tag = read_varint(buf, pos)?;
                let (f, wt) = (tag >> 3, tag & 7);
                if wt == 4 {
                    return if f == field {
                        Ok(())
                    } else {
                        Err(format!("end group {f} does not match start group {field}"))
                    };
                }
                if f == 0 {
                    return Err(format!("field number 0 at byte {}", *pos));
                }
                skip_value(buf, pos, f, wt, depth + 1)?;
            }
        }
        5 => skip(buf, pos, 4, "fixed32"),
        other => Err(format!(
            "invalid wire type {other} for field {field} at byte {}",
            *pos
        )),
    }
}

/// Walk the top-level fields of a `CbEventMsg` without decoding them.
pub(crate) fn scan_top_level(buf: &[u8]) -> Result<WireScan, String> {
    let mut scan = WireScan::default();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let tag = read_varint(buf, &mut pos)?;
        let (field, wire_type) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err(format!("field number 0 at byte {start}"));
        }
        if wire_type == 4 {
            return Err(format!("unexpected end group at byte {start}"));
        }
        skip_value(buf, &mut pos, field, wire_type, 0)?;
        match field {
            1 => scan.has_header = true,
            13 => scan.env.push(start..pos),
            _ => {}
        }
    }
    Ok(scan)
}

/// The message bytes with every top-level `env` field cut out (borrowed when there is none).
fn without_env<'a>(buf: &'a [u8], env: &[Range<usize>]) -> std::borrow::Cow<'a, [u8]> {
    if env.is_empty() {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut out = Vec::with_capacity(buf.len());
    let mut at = 0;
    for r in env {
        out.extend_from_slice(&buf[at..r.start]);
        at = r.end;
    }
    out.extend_from_slice(&buf[at..]);
    std::borrow::Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Per-delivery memory of the `Observed` facts already emitted, by process GUID.
///
/// A bundle holds hundreds of events of a handful of processes, and every event's header repeats
/// the same facts about its process. Emitting them once per delivery (again only when they change)
/// gives the store the same knowledge for a fraction of the allocations; the store merges facts by
/// GUID and rank, so which event of the delivery carries them does not matter.
///
/// The facts compared are the columns a segment shares (see [`SegmentTag`]), so each entry also
/// holds the tag of the events that matched it.
#[derive(Debug, Default)]
struct SeenFacts(HashMap<String, (ProcessFacts, SegmentTag), foldhash::fast::RandomState>);

/// What decoding the records of one delivery shares.
#[derive(Debug)]
pub(crate) struct InDelivery {
    seen: SeenFacts,
    /// Every event's `details` is put together in this one, cleared between records.
    details: Details,
    /// Every record is decoded into this one message in place. `CbEventMsg` is large (each
    /// payload is an inline option), and a fresh one per record, moved out of prost's `decode`,
    /// cost a memset and a memcpy of its whole size per record.
    msg: CbEventMsg,
}

impl Default for InDelivery {
    fn default() -> InDelivery {
        InDelivery {
            seen: SeenFacts::default(),
            details: Details::for_event(),
            msg: CbEventMsg::default(),
        }
    }
}

impl SeenFacts {
    /// Were exactly these header facts about `ev`'s process already emitted in this delivery? If
    /// so, the tag of the events that had them. Compared field by field before anything is cloned:
    /// that is the point.
    fn known(
        &self,
        ev: &Event,
        guid: &str,
        hostname: Option<&str>,
        start_ms: Option<i64>,
    ) -> Option<SegmentTag> {
        let (f, tag) = self.0.get(guid)?;
        let same = f.sensor_id == ev.sensor_id
            && f.hostname.as_deref() == hostname
            && f.pid == ev.pid
            && f.path == ev.process_path
            && f.md5 == ev.process_md5
            && f.sha256 == ev.process_sha256
            && f.start_ms == start_ms;
        same.then_some(*tag)
    }
}

/// Decode one `CbEventMsg` on its own (an `api.events` delivery).
pub(crate) fn decode_message(bytes: &[u8], fallback: &HeaderEnv) -> Result<Record, String> {
    thread_local! {
        /// Single events come one delivery after another on the decode thread: setting up (and
        /// freeing) a fresh message and details buffer for each was a twentieth of decoding one.
        static STATE: RefCell<InDelivery> = RefCell::new(InDelivery::default());
    }
    STATE.with_borrow_mut(|state| {
        // A delivery of its own: nothing emitted for an earlier one counts as seen.
        state.seen.0.clear();
        decode_in_delivery(bytes, fallback, state)
    })
}

/// Decode one `CbEventMsg` of a delivery. `Err` carries a text saying what failed (the caller
/// quarantines it).
pub(crate) fn decode_in_delivery(
    bytes: &[u8],
    fallback: &HeaderEnv,
    state: &mut InDelivery,
) -> Result<Record, String> {
    let scan = scan_top_level(bytes).map_err(|e| format!("malformed protobuf: {e}"))?;
    if !scan.has_header {
        return Err("CbEventMsg lacks its required header (field 1)".to_owned());
    }
    let InDelivery {
        seen,
        details: d,
        msg,
    } = state;
    msg.clear();
    msg.merge(bytes)
        .map_err(|e| format!("CbEventMsg decode failed: {e}"))?;
    // Moved out rather than copied: the next record clears the message anyway.
    let header_path = msg.header.process_path.take().filter(|p| !p.is_empty());
    let msg = &*msg;

    let endpoint = msg.env.as_ref().and_then(|e| e.endpoint.as_ref());
    let sensor_id = endpoint
        .and_then(|e| e.sensor_id)
        .map(i64::from)
        .or(fallback.sensor_id);
    let host_id = endpoint.and_then(|e| e.host_id).or(fallback.host_id);
    let hostname = endpoint
        .and_then(|e| e.sensor_host_name.as_deref())
        .filter(|s| !s.is_empty())
        .or(fallback.hostname.as_deref());
    let node_id = msg
        .env
        .as_ref()
        .and_then(|e| e.server.as_ref())
        .and_then(|s| s.node_id)
        .map(i64::from)
        .or(fallback.node_id);

    let mut digits = [0u8; 20];
    let sensor_text = sensor_id.map_or(&[][..], |s| decimal(s, &mut digits));
    let key = record_key(&[sensor_text, &without_env(bytes, &scan.env)]);

    let ctx = Ctx {
        msg,
        sensor_id,
        hostname,
        timestamp_ms: filetime_to_unix_ms(msg.header.timestamp.unwrap_or(0)),
    };

    let mut payloads = payloads(msg);
    let primary = payloads.next();
    let extras: Vec<Payload<'_>> = payloads.collect();

    if let Some(Payload::Module(m)) = primary {
        let mut b = binary(&ctx, m)?;
        b.key = key;
        let mut d = module_details(m);
        add_extras(&mut d, &ctx, &extras);
        env_details(&mut d, host_id, node_id);
        b.details = d.render();
        return Ok(Record::Binary(Box::new(b)));
    }

    let h = &msg.header;
    let mut ev = Box::new(Event {
        key,
        timestamp_ms: ctx.timestamp_ms,
        sensor_id,
        process_guid: ctx.own_guid(),
        pid: h.process_pid.map(i64::from),
        process_path: header_path
            .or_else(|| lookup_string(&msg.strings, h.process_filepath_string_guid)),
        process_md5: hash_hex(h.process_md5.as_deref()),
        process_sha256: hash_hex(h.process_sha256.as_deref()),
        ..Event::default()
    });

    // Every event with a process GUID teaches what its header says about that process (once per
    // delivery, see `SeenFacts`); procstart/procend emit a higher-ranked fact with these fields.
    let start_ms = filetime_to_start_ms(h.process_create_time);
    if let Some(guid) = &ev.process_guid
        && !matches!(primary, Some(Payload::Process(_)))
    {
        ev.segment_tag = match seen.known(&ev, guid, ctx.hostname, start_ms) {
            Some(tag) => tag,
            None => {
                let own = ProcessFacts {
                    guid: guid.clone(),
                    rank: Some(FactRank::Observed),
                    sensor_id,
                    hostname: ctx.hostname.map(str::to_owned),
                    pid: ev.pid,
                    path: ev.process_path.clone(),
                    md5: ev.process_md5.clone(),
                    sha256: ev.process_sha256.clone(),
                    start_ms,
                    ..ProcessFacts::default()
                };
                let tag = SegmentTag::fresh();
                seen.0.insert(own.guid.clone(), (own.clone(), tag));
                push_fact(&mut ev.processes, own);
                tag
            }
        };
    }
    // `known` compared `ctx.hostname`: the tag holds for the event's host from here on.
    ev.hostname = ctx.hostname.map(str::to_owned);

    d.clear();
    match primary {
        Some(p) => fill(&mut ev, d, &ctx, p),
        None => ev.event_type = Some(EventType::HeaderOnly),
    }
    if let Some(fork) = h.fork_pid {
        put(d, "fork_pid", fork);
    }
    add_extras(d, &ctx, &extras);
    env_details(d, host_id, node_id);
    ev.details = d.render();
    Ok(Record::Event(ev))
}

/// `v` in decimal, written into `buf` (no allocation; this runs for every record).
fn decimal(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// The message and identity every payload renderer needs.
struct Ctx<'a> {
    msg: &'a CbEventMsg,
    sensor_id: Option<i64>,
    hostname: Option<&'a str>,
    timestamp_ms: i64,
}

impl Ctx<'_> {
    /// GUID of the acting (header) process: the formula when sensor, pid and create time are all
    /// known, else the decimal legacy `header.process_guid`.
    fn own_guid(&self) -> Option<String> {
        let h = &self.msg.header;
        guid_from_parts(self.sensor_id, h.process_pid, h.process_create_time)
            .or_else(|| h.process_guid.map(|g| g.to_string()))
    }

    fn guid(&self, pid: Option<i32>, create_time: Option<i64>) -> Option<String> {
        guid_from_parts(self.sensor_id, pid, create_time)
    }

    /// The parent's GUID, unless the sensor says it does not know the parent: it then sends pid -1
    /// and create time 0, and a GUID built from those would make every orphan of the host a child
    /// of one made-up process.
    fn parent_guid(&self, pid: Option<i32>, create_time: Option<i64>) -> Option<String> {
        match (pid, create_time) {
            (Some(p), Some(t)) if p >= 0 && t > 0 => self.guid(pid, create_time),
            _ => None,
        }
    }

    fn facts(&self, guid: String, rank: FactRank) -> ProcessFacts {
        ProcessFacts {
            guid,
            rank: Some(rank),
            sensor_id: self.sensor_id,
            hostname: self.hostname.map(str::to_owned),
            ..ProcessFacts::default()
        }
    }

    /// Path of the event's object: the string-table entry named by `header.filepath_string_guid`.
    fn filepath(&self) -> Option<String> {
        lookup_string(&self.msg.strings, self.msg.header.filepath_string_guid)
    }
}

/// Payload sub-messages in classification order.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Process(&'a CbProcessMsg),
    Modload(&'a CbModuleLoadMsg),
    Filemod(&'a CbFileModMsg),
    NetworkV2(&'a CbNetConnMsgv2),
    Network(&'a CbNetConnMsg),
    Regmod(&'a CbRegModMsg),
    Childproc(&'a CbChildProcessMsg),
    Crossproc(&'a CbCrossProcessMsg),
    Emet(&'a CbEmetMitigationMsg),
    Scriptexe(&'a CbScriptExecute),
    Tamper(&'a CbTamperAlertMsg),
    Blocked(&'a CbProcessBlockedMsg),
    Module(&'a CbModuleInfoMsg),
    Stats(&'a CbStatisticsMsg),
    Vtwrite(&'a CbVtWriteMsg),
    Vtload(&'a CbVtLoadMsg),
    ProcessMeta(&'a CbProcessMetadataMsg),
    NetconnBlocked(&'a CbNetConnBlockedMsg),
    NetconnBlockedV2(&'a CbNetConnBlockedMsgv2),
    InternalUse(&'a InternalUse),
    Fbscriptexe(&'a CbFileBackedScriptExecute),
}

impl Payload<'_> {
    /// The `CbEventMsg` field name (key of a secondary payload in `details.other_payloads`).
    fn field_name(&self) -> &'static str {
        match self {
            Payload::Process(_) => "process",
            Payload::Modload(_) => "modload",
            Payload::Filemod(_) => "filemod",
            Payload::NetworkV2(_) => "networkv2",
            Payload::Network(_) => "network",
            Payload::Regmod(_) => "regmod",
            Payload::Childproc(_) => "childproc",
            Payload::Crossproc(_) => "crossproc",
            Payload::Emet(_) => "emet",
            Payload::Scriptexe(_) => "scriptexe",
            Payload::Tamper(_) => "tamperAlert",
            Payload::Blocked(_) => "blocked",
            Payload::Module(_) => "module",
            Payload::Stats(_) => "stats",
            Payload::Vtwrite(_) => "vtwrite",
            Payload::Vtload(_) => "vtload",
            Payload::ProcessMeta(_) => "processMeta",
            Payload::NetconnBlocked(_) => "netconnBlocked",
            Payload::NetconnBlockedV2(_) => "netconnBlockedv2",
            Payload::InternalUse(_) => "internalUse",
            Payload::Fbscriptexe(_) => "fbscriptexe",
        }
    }
}

fn payloads(m: &CbEventMsg) -> impl Iterator<Item = Payload<'_>> {
    [
        m.process.as_ref().map(Payload::Process),
        m.modload.as_ref().map(Payload::Modload),
        m.filemod.as_ref().map(Payload::Filemod),
        m.networkv2.as_ref().map(Payload::NetworkV2),
        m.network.as_ref().map(Payload::Network),
        m.regmod.as_ref().map(Payload::Regmod),
        m.childproc.as_ref().map(Payload::Childproc),
        m.crossproc.as_ref().map(Payload::Crossproc),
        m.emet.as_ref().map(Payload::Emet),
        m.scriptexe.as_ref().map(Payload::Scriptexe),
        m.tamper_alert.as_ref().map(Payload::Tamper),
        m.blocked.as_ref().map(Payload::Blocked),
        m.module.as_ref().map(Payload::Module),
        m.stats.as_ref().map(Payload::Stats),
        m.vtwrite.as_ref().map(Payload::Vtwrite),
        m.vtload.as_ref().map(Payload::Vtload),
        m.process_meta.as_ref().map(Payload::ProcessMeta),
        m.netconn_blocked.as_ref().map(Payload::NetconnBlocked),
        m.netconn_blockedv2.as_ref().map(Payload::NetconnBlockedV2),
        m.internal_use.as_ref().map(Payload::InternalUse),
        m.fbscriptexe.as_ref().map(Payload::Fbscriptexe),
    ]
    .into_iter()
    .flatten()
}

/// A message with more than one payload set is not seen in practice; the ones after the first
/// are still kept, rendered under `details.other_payloads.<field name>`.
fn add_extras(d: &mut Details, ctx: &Ctx<'_>, extras: &[Payload<'_>]) {
    if extras.is_empty() {
        return;
    }
    let mut others = Details::new();
    for p in extras {
        let details = match p {
            Payload::Module(m) => module_details(m),
            p => {
                let mut scratch = Event::default();
                let mut sd = Details::new();
                fill(&mut scratch, &mut sd, ctx, *p);
                sd
            }
        };
        others.insert_nested(p.field_name(), details);
    }
    d.insert_nested("other_payloads", others);
}

/// The endpoint's host id and the server node id, when they say something: on a single-node
/// server both are 0 for every event, and two map entries per event are not free.
fn env_details(d: &mut Details, host_id: Option<i64>, node_id: Option<i64>) {
    put_opt(d, "host_id", host_id.filter(|&h| h != 0));
    put_opt(d, "node_id", node_id.filter(|&n| n != 0));
}

/// Render one payload into the event's typed fields, `details` and process facts.
fn fill(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, p: Payload<'_>) {
    match p {
        Payload::Process(m) => process(ev, d, ctx, m),
        Payload::Modload(m) => modload(ev, d, ctx, m),
        Payload::Filemod(m) => filemod(ev, d, ctx, m),
        Payload::NetworkV2(m) => {
            ev.event_type = Some(EventType::Netconn);
            netconn_v2(ev, d, &NetV2::from(m));
        }
        Payload::Network(m) => {
            ev.event_type = Some(EventType::Netconn);
            netconn_v1(ev, d, &NetV1::from(m));
        }
        Payload::Regmod(m) => regmod(ev, d, m),
        Payload::Childproc(m) => childproc(ev, d, ctx, m),
        Payload::Crossproc(m) => crossproc(ev, d, ctx, m),
        Payload::Emet(m) => emet(ev, d, m),
        Payload::Scriptexe(m) => {
            ev.event_type = Some(EventType::Scriptexe);
            ev.sha256 = m
                .sha256
                .as_deref()
                .and_then(|s| text_hash_upper(s.as_bytes()));
            put_str(d, "script", m.script.as_deref());
            put_opt(d, "script_sha256", ev.sha256.as_deref());
        }
        Payload::Fbscriptexe(m) => {
            ev.event_type = Some(EventType::Fbscriptexe);
            ev.sha256 = m
                .sha256
                .as_deref()
                .and_then(|s| text_hash_upper(s.as_bytes()));
            ev.path = nonempty(m.filename.as_deref()).map(str::to_owned);
            put_str(d, "script", m.script.as_deref());
            put_opt(d, "script_sha256", ev.sha256.as_deref());
            put_str(d, "filename", m.filename.as_deref());
        }
        Payload::Tamper(m) => {
            ev.event_type = Some(EventType::Tamper);
            ev.action = m.r#type.map(tamper_type_name);
            put_opt(d, "tamper_type", ev.action.as_deref());
            put_opt(d, "tamper_sent", m.tamper_sent);
        }
        Payload::Blocked(m) => blocked(ev, d, ctx, m),
        Payload::Module(m) => {
            // Only reached for a module rendered as a secondary payload of an event.
            d.extend(module_details(m));
        }
        Payload::Stats(m) => {
            ev.event_type = Some(EventType::Stats);
            if let Some(s) = &m.lin_stats {
                put_opt(d, "lin_total", s.lin_total);
                put_opt(d, "lin_successful", s.lin_successful);
                put_opt(d, "lin_no_scanidi", s.lin_no_scanidi);
                put_opt(d, "lin_total_pended", s.lin_total_pended);
                put_opt(
                    d,
                    "lin_current_scanid_pended_size",
                    s.lin_current_scanid_pended_size,
                );
                put_opt(
                    d,
                    "lin_current_handlepath_pended_size",
                    s.lin_current_handlepath_pended_size,
                );
                put_opt(
                    d,
                    "lin_current_filepath_pended_size",
                    s.lin_current_filepath_pended_size,
                );
            }
        }
        Payload::Vtwrite(m) => {
            ev.event_type = Some(EventType::Vtwrite);
            ev.path = nonempty(m.file_written_filename.as_deref()).map(str::to_owned);
            ev.md5 = hash_hex(m.file_written_md5.as_deref());
            ev.sha256 = hash_hex(m.file_written_sha256.as_deref());
            put_opt(
                d,
                "writing_process_exe_md5",
                hash_hex(m.writing_process_exe_md5.as_deref()),
            );
            put_opt(d, "file_written_md5", ev.md5.as_deref());
            put_opt(d, "file_written_sha256", ev.sha256.as_deref());
            put_opt(
                d,
                "file_written_is_pe_module_hint",
                m.file_written_is_pe_module_hint,
            );
            put_str(
                d,
                "writing_process_filename",
                m.writing_process_filename.as_deref(),
            );
            put_str(
                d,
                "file_written_filename",
                m.file_written_filename.as_deref(),
            );
        }
        Payload::Vtload(m) => {
            ev.event_type = Some(EventType::Vtload);
            ev.md5 = hash_hex(m.loaded_module_md5.as_deref());
            put_opt(
                d,
                "loader_process_exe_md5",
                hash_hex(m.loader_process_exe_md5.as_deref()),
            );
            put_opt(d, "loaded_module_md5", ev.md5.as_deref());
        }
        Payload::ProcessMeta(m) => process_meta(ev, d, ctx, m),
        Payload::NetconnBlocked(m) => {
            ev.event_type = Some(EventType::NetconnBlocked);
            put_opt(
                d,
                "blocked_type",
                m.blocked_type.map(netconn_block_type_name),
            );
            netconn_v1(ev, d, &NetV1::from(m));
        }
        Payload::NetconnBlockedV2(m) => {
            ev.event_type = Some(EventType::NetconnBlockedV2);
            put_opt(
                d,
                "blocked_type",
                m.blocked_type.map(netconn_block_type_name),
            );
            put_opt(d, "port", m.port.map(port_from_sensor));
            netconn_v2(ev, d, &NetV2::from(m));
        }
        Payload::InternalUse(m) => {
            ev.event_type = Some(EventType::InternalUse);
            put_opt(
                d,
                "data_gen_source",
                m.data_gen_source.map(|v| match v {
                    1 => "known".to_owned(),
                    2 => "generated".to_owned(),
                    3 => "anonymized".to_owned(),
                    n => format!("unknown ({n})"),
                }),
            );
        }
    }
}

fn process(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, m: &CbProcessMsg) {
    let h = &ctx.msg.header;
    let started = m.created.unwrap_or(false);
    ev.event_type = Some(if started {
        EventType::Procstart
    } else {
        EventType::Procend
    });
    ev.path = ctx.filepath().or_else(|| ev.process_path.clone());
    ev.md5 = hash_hex(m.md5hash.as_deref()).or_else(|| ev.process_md5.clone());
    ev.sha256 = hash_hex(m.sha256hash.as_deref()).or_else(|| ev.process_sha256.clone());
    ev.command_line = text_opt(m.commandline.as_deref());
    ev.username = nonempty(m.username.as_deref()).map(str::to_owned);
    let parent_guid = ctx.parent_guid(m.parent_pid, m.parent_create_time);
    let parent_md5 = hash_hex(m.parent_md5.as_deref());
    let parent_sha256 = hash_hex(m.parent_sha256.as_deref());
    let parent_path = nonempty(m.parent_path.as_deref()).map(str::to_owned);

    put_opt(d, "created", m.created);
    put_col(d, "path", ev.path.as_deref());
    put_col(d, "md5", ev.md5.as_deref());
    put_col(d, "sha256", ev.sha256.as_deref());
    put_col(d, "command_line", ev.command_line.as_deref());
    put_opt(d, "pid", m.pid);
    put_opt(d, "parent_pid", m.parent_pid);
    put_opt(d, "parent_guid", parent_guid.as_deref());
    put_opt(d, "parent_guid_legacy", m.parent_guid);
    // The reference renders parent_create_time in Unix seconds; keep that meaning for the key.
    put_opt(
        d,
        "parent_create_time",
        m.parent_create_time.map(|t| filetime_to_unix_ms(t) / 1000),
    );
    put_opt(d, "parent_path", parent_path.as_deref());
    put_opt(d, "parent_md5", parent_md5.as_deref());
    put_opt(d, "parent_sha256", parent_sha256.as_deref());
    put_col(d, "username", ev.username.as_deref());
    put_str(d, "uid", m.uid.as_deref());
    put_opt(d, "have_seen_before", m.have_seen_before);
    put_opt(d, "deprecated", m.deprecated);
    put_opt(d, "creationobserved", m.creationobserved);
    put_opt(d, "expect_followon_w_md5", m.expect_followon_w_md5);
    put_opt(d, "filtering_known_dlls", m.b_filtering_known_dlls);
    put_opt(d, "actions_are_from_gpo", m.actions_are_from_gpo);
    put_opt(d, "logon_type", m.logon_type);
    if !m.actions.is_empty() {
        d.insert("actions", emet_actions(&m.actions));
    }

    if let Some(guid) = ev.process_guid.clone() {
        let mut f = ctx.facts(guid.clone(), FactRank::Procstart);
        f.parent_guid = parent_guid.clone();
        f.pid = h.process_pid.or(m.pid).map(i64::from);
        f.path = ev.path.clone();
        f.cmdline = ev.command_line.clone();
        f.md5 = ev.md5.clone();
        f.sha256 = ev.sha256.clone();
        f.username = ev.username.clone();
        f.start_ms = filetime_to_start_ms(h.process_create_time);
        if !started && ctx.timestamp_ms != 0 {
            f.end_ms = Some(ctx.timestamp_ms);
        }
        push_fact(&mut ev.processes, f);
    }
    if let Some(pg) = parent_guid {
        let mut f = ctx.facts(pg, FactRank::ParentReference);
        f.pid = m.parent_pid.map(i64::from);
        f.path = parent_path;
        f.md5 = parent_md5;
        f.sha256 = parent_sha256;
        f.start_ms = filetime_to_start_ms(m.parent_create_time);
        push_fact(&mut ev.processes, f);
    }
}

fn modload(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, m: &CbModuleLoadMsg) {
    ev.event_type = Some(EventType::Modload);
    ev.path = ctx
        .filepath()
        .or_else(|| lookup_string(&ctx.msg.strings, m.handlepath_string_guid));
    // The module's own hashes only: the reference's fallback to the process hashes would
    // attribute the process image's md5 to an arbitrary DLL.
    ev.md5 = hash_hex(m.md5hash.as_deref());
    ev.sha256 = hash_hex(m.sha256hash.as_deref());
    put_col(d, "path", ev.path.as_deref());
    put_col(d, "md5", ev.md5.as_deref());
    put_col(d, "sha256", ev.sha256.as_deref());
    put_opt(d, "guid", m.guid);
    put_opt(d, "scanid", m.scanid);
    put_opt(d, "is_process_base_module", m.is_process_base_module);
    put_opt(d, "image_base", m.image_base);
    put_opt(d, "image_size", m.image_size);
}

fn filemod(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, m: &CbFileModMsg) {
    ev.event_type = Some(EventType::Filemod);
    ev.path = ctx.filepath();
    ev.action = m.action.map(|a| {
        match a {
            1 => "create",
            2 => "write",
            4 => "delete",
            8 => "lastwrite",
            16 => "open",
            n => return format!("unknown ({n})"),
        }
        .to_owned()
    });
    ev.md5 = hash_hex(m.md5hash.as_deref());
    ev.sha256 = hash_hex(m.sha256hash.as_deref());
    put_col(d, "path", ev.path.as_deref());
    put_col(d, "action", ev.action.as_deref());
    put_opt(d, "action_type", m.action);
    put_opt(d, "file_type", m.r#type);
    put_opt(d, "filetype_name", m.r#type.map(file_type_name));
    put_opt(d, "file_md5", ev.md5.as_deref());
    put_opt(d, "file_sha256", ev.sha256.as_deref());
    put_opt(d, "tamper", m.tamper);
    put_opt(d, "tamper_sent", m.tamper_sent);
    put_opt(d, "have_seen_before", m.have_seen_before);
    put_opt(d, "guid", m.guid);
}

fn regmod(ev: &mut Event, d: &mut Details, m: &CbRegModMsg) {
    ev.event_type = Some(EventType::Regmod);
    ev.path = text_opt(m.utf8_regpath.as_deref());
    ev.action = m.action.map(|a| {
        match a {
            1 => "createkey",
            2 => "writeval",
            4 => "delkey",
            8 => "delval",
            n => return format!("unknown ({n})"),
        }
        .to_owned()
    });
    put_col(d, "path", ev.path.as_deref());
    put_col(d, "action", ev.action.as_deref());
    put_opt(d, "action_type", m.action);
    // Each key carries its own field (the reference swaps these two).
    put_opt(d, "tamper", m.tamper);
    put_opt(d, "tamper_sent", m.tamper_sent);
    put_opt(d, "have_seen_before", m.have_seen_before);
    put_opt(d, "guid", m.guid);
}

/// The fields shared by `CbNetConnMsg` and `CbNetConnBlockedMsg` (v1 layout).
struct NetV1<'a> {
    guid: Option<i64>,
    ipv4: Option<u32>,
    ipv6_lo: Option<u64>,
    ipv6_hi: Option<u64>,
    port: Option<u32>,
    protocol: Option<i32>,
    netpath: Option<&'a [u8]>,
    outbound: bool,
    proxy: Option<bool>,
    proxy_ipv4: Option<u32>,
    proxy_port: Option<u32>,
    proxy_netpath: Option<&'a str>,
    remote_ip: Option<u32>,
    remote_port: Option<u32>,
    local_ip: Option<u32>,
    local_port: Option<u32>,
}

impl<'a> From<&'a CbNetConnMsg> for NetV1<'a> {
    fn from(m: &'a CbNetConnMsg) -> Self {
        NetV1 {
            guid: m.guid,
            ipv4: m.ipv4_address,
            ipv6_lo: m.ipv6_lo_part,
            ipv6_hi: m.ipv6_hi_part,
            port: m.port,
            protocol: m.protocol,
            netpath: m.utf8_netpath.as_deref(),
            outbound: m.outbound(),
            proxy: m.proxy_connection,
            proxy_ipv4: m.proxy_ipv4_address,
            proxy_port: m.proxy_port,
            proxy_netpath: m.proxy_net_path.as_deref(),
            remote_ip: m.remote_ip_address,
            remote_port: m.remote_port,
            local_ip: m.local_ip_address,
            local_port: m.local_port,
        }
    }
}

impl<'a> From<&'a CbNetConnBlockedMsg> for NetV1<'a> {
    fn from(m: &'a CbNetConnBlockedMsg) -> Self {
        NetV1 {
            guid: None,
            ipv4: m.ipv4_address,
            ipv6_lo: m.ipv6_lo_part,
            ipv6_hi: m.ipv6_hi_part,
            port: m.port,
            protocol: m.protocol,
            netpath: m.utf8_netpath.as_deref(),
            outbound: m.outbound(),
            proxy: m.proxy_connection,
            proxy_ipv4: m.proxy_ipv4_address,
            proxy_port: m.proxy_port,
            proxy_netpath: m.proxy_net_path.as_deref(),
            remote_ip: m.remote_ip_address,
            remote_port: m.remote_port,
            local_ip: m.local_ip_address,
            local_port: m.local_port,
        }
    }
}

fn protocol_name(p: i32) -> String {
    match p {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        n => n.to_string(),
    }
}

fn direction(outbound: bool) -> String {
    if outbound { "outbound" } else { "inbound" }.to_owned()
}

fn netconn_v1(ev: &mut Event, d: &mut Details, n: &NetV1<'_>) {
    let ipv6 = match (n.ipv6_hi, n.ipv6_lo) {
        (None, None) => None,
        (hi, lo) => Some(ipv6_from_sensor(hi.unwrap_or(0), lo.unwrap_or(0), None)),
    };
    // `ipv4Address`/`port` are the remote end; newer sensors also fill remote*/local* explicitly.
    ev.remote_ip = n
        .remote_ip
        .or(n.ipv4)
        .map(ipv4_from_sensor)
        .or_else(|| ipv6.clone());
    ev.remote_port = n
        .remote_port
        .or(n.port)
        .map(|p| i64::from(port_from_sensor(p)));
    ev.local_ip = n.local_ip.map(ipv4_from_sensor);
    ev.local_port = n.local_port.map(|p| i64::from(port_from_sensor(p)));
    ev.protocol = n.protocol.map(protocol_name);
    ev.direction = Some(direction(n.outbound));
    ev.domain = text_opt(n.netpath);

    put_opt(d, "ipv4", n.ipv4.map(ipv4_from_sensor));
    put_opt(d, "ipv6", ipv6);
    put_opt(d, "port", n.port.map(port_from_sensor));
    put_opt(d, "protocol", n.protocol);
    put_col(d, "direction", ev.direction.as_deref());
    put_col(d, "domain", ev.domain.as_deref());
    put_col(d, "remote_ip", n.remote_ip.map(ipv4_from_sensor));
    put_col(d, "remote_port", n.remote_port.map(port_from_sensor));
    put_col(d, "local_ip", ev.local_ip.as_deref());
    put_col(d, "local_port", ev.local_port);
    put_opt(d, "proxy", n.proxy);
    put_opt(d, "proxy_ip", n.proxy_ipv4.map(ipv4_from_sensor));
    put_opt(d, "proxy_port", n.proxy_port.map(port_from_sensor));
    put_str(d, "proxy_domain", n.proxy_netpath);
    put_opt(d, "guid", n.guid);
}

/// The fields shared by `CbNetConnMsgv2` and `CbNetConnBlockedMsgv2`.
struct NetV2<'a> {
    protocol: Option<i32>,
    netpath: Option<&'a [u8]>,
    outbound: bool,
    proxy: Option<bool>,
    proxy_ip: Option<&'a CbIpAddr>,
    proxy_port: Option<u32>,
    proxy_netpath: Option<&'a str>,
    remote_ip: Option<&'a CbIpAddr>,
    remote_port: Option<u32>,
    local_ip: Option<&'a CbIpAddr>,
    local_port: Option<u32>,
    ja3: Option<&'a str>,
    ja3s: Option<&'a str>,
}

impl<'a> From<&'a CbNetConnMsgv2> for NetV2<'a> {
    fn from(m: &'a CbNetConnMsgv2) -> Self {
        NetV2 {
            protocol: m.protocol,
            netpath: m.utf8_netpath.as_deref(),
            outbound: m.outbound(),
            proxy: m.proxy_connection,
            proxy_ip: m.proxy_ip_address.as_ref(),
            proxy_port: m.proxy_port,
            proxy_netpath: m.proxy_net_path.as_deref(),
            remote_ip: m.remote_ip_address.as_ref(),
            remote_port: m.remote_port,
            local_ip: m.local_ip_address.as_ref(),
            local_port: m.local_port,
            ja3: m.ja3.as_deref(),
            ja3s: m.ja3s.as_deref(),
        }
    }
}

impl<'a> From<&'a CbNetConnBlockedMsgv2> for NetV2<'a> {
    fn from(m: &'a CbNetConnBlockedMsgv2) -> Self {
        NetV2 {
            protocol: m.protocol,
            netpath: m.utf8_netpath.as_deref(),
            outbound: m.outbound(),
            proxy: m.proxy_connection,
            proxy_ip: m.proxy_ip_address.as_ref(),
            proxy_port: m.proxy_port,
            proxy_netpath: m.proxy_net_path.as_deref(),
            remote_ip: m.remote_ip_address.as_ref(),
            remote_port: m.remote_port,
            local_ip: m.local_ip_address.as_ref(),
            local_port: m.local_port,
            ja3: m.ja3.as_deref(),
            ja3s: m.ja3s.as_deref(),
        }
    }
}

/// `CbIpAddr` → text: IPv6 (with `%scope`) when flagged, else the sensor IPv4 rule.
fn ip_addr(a: &CbIpAddr) -> String {
    if a.b_is_ipv6() {
        ipv6_from_sensor(
            a.ipv6_high.unwrap_or(0),
            a.ipv6_low.unwrap_or(0),
            a.ipv6_scope.as_deref(),
        )
    } else {
        ipv4_from_sensor(a.ipv4_address.unwrap_or(0))
    }
}

fn netconn_v2(ev: &mut Event, d: &mut Details, n: &NetV2<'_>) {
    ev.remote_ip = n.remote_ip.map(ip_addr);
    ev.remote_port = n.remote_port.map(|p| i64::from(port_from_sensor(p)));
    ev.local_ip = n.local_ip.map(ip_addr);
    ev.local_port = n.local_port.map(|p| i64::from(port_from_sensor(p)));
    ev.protocol = n.protocol.map(protocol_name);
    ev.direction = Some(direction(n.outbound));
    ev.domain = text_opt(n.netpath);

    // Lower-case `protocol` (the reference emits `Protocol` for v2 by accident).
    put_opt(d, "protocol", n.protocol);
    put_col(d, "domain", ev.domain.as_deref());
    put_col(d, "direction", ev.direction.as_deref());
    put_col(d, "local_ip", ev.local_ip.as_deref());
    put_col(d, "local_port", ev.local_port);
    put_col(d, "remote_ip", ev.remote_ip.as_deref());
    put_col(d, "remote_port", ev.remote_port);
    put_opt(d, "proxy", n.proxy);
    put_opt(d, "proxy_ip", n.proxy_ip.map(ip_addr));
    put_opt(d, "proxy_port", n.proxy_port.map(port_from_sensor));
    put_str(d, "proxy_domain", n.proxy_netpath);
    put_str(d, "ja3", n.ja3);
    put_str(d, "ja3s", n.ja3s);
}

fn childproc(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, m: &CbChildProcessMsg) {
    ev.event_type = Some(EventType::Childproc);
    // The child pid is an int64 on the wire; the GUID uses its low 32 bits.
    let child_pid = m.pid.map(|p| (p & 0xffff_ffff) as u32 as i32);
    let child_guid = ctx.guid(child_pid, m.create_time);
    ev.target_guid = child_guid.clone();
    ev.path = nonempty(m.path.as_deref()).map(str::to_owned);
    ev.md5 = hash_hex(m.md5hash.as_deref());
    ev.sha256 = hash_hex(m.sha256hash.as_deref());
    ev.command_line = text_opt(m.commandline.as_deref());
    ev.username = nonempty(m.username.as_deref()).map(str::to_owned);
    ev.action = m
        .created
        .map(|c| if c { "start" } else { "end" }.to_owned());

    put_opt(d, "created", m.created);
    put_col(d, "path", ev.path.as_deref());
    put_col(d, "md5", ev.md5.as_deref());
    put_col(d, "sha256", ev.sha256.as_deref());
    put_opt(d, "child_pid", m.pid);
    put_opt(d, "child_create_time", m.create_time);
    put_opt(d, "child_process_guid", child_guid.as_deref());
    put_opt(d, "parent_guid", ev.process_guid.as_deref());
    put_opt(d, "parent_guid_legacy", m.parent_guid);
    put_opt(d, "child_guid_legacy", m.child_guid);
    put_opt(
        d,
        "childproc_type",
        m.child_proc_type.map(|t| match t {
            0 => "Exec".to_owned(),
            1 => "Fork".to_owned(),
            2 => "OtherExec".to_owned(),
            n => format!("unknown ({n})"),
        }),
    );
    if let Some(s) = &m.suppressed {
        put_opt(d, "childproc_suppressed", Some(s.b_is_suppressed()));
        put_opt(
            d,
            "childproc_suppressed_state",
            s.state.map(|v| match v {
                1 => "EventlessModloads".to_owned(),
                2 => "EventlessWithXproc".to_owned(),
                n => format!("unknown ({n})"),
            }),
        );
    }
    put_opt(d, "childproc_commandline", ev.command_line.as_deref());
    put_opt(d, "childproc_username", ev.username.as_deref());
    put_opt(d, "tamper", m.tamper);
    put_opt(d, "tamper_sent", m.tamper_sent);

    if let Some(cg) = child_guid {
        let mut f = ctx.facts(cg, FactRank::Childproc);
        f.parent_guid = ev.process_guid.clone();
        f.pid = m.pid;
        f.path = ev.path.clone();
        f.md5 = ev.md5.clone();
        f.sha256 = ev.sha256.clone();
        f.cmdline = ev.command_line.clone();
        f.username = ev.username.clone();
        f.start_ms = filetime_to_start_ms(m.create_time);
        if m.created == Some(false) && ctx.timestamp_ms != 0 {
            f.end_ms = Some(ctx.timestamp_ms);
        }
        push_fact(&mut ev.processes, f);
    }
}

fn crossproc(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, m: &CbCrossProcessMsg) {
    struct Target<'a> {
        pid: Option<u32>,
        create_time: Option<u64>,
        path: Option<&'a str>,
        md5: Option<&'a [u8]>,
        sha256: Option<&'a [u8]>,
    }
    let (kind, target) = if let Some(o) = &m.open {
        ev.event_type = Some(EventType::Crossproc);
        let kind = match o.r#type {
            Some(2) => "open_thread",
            _ => "open_process",
        };
        put_opt(d, "requested_access", o.requested_access);
        let t = Target {
            pid: o.target_pid,
            create_time: o.target_proc_create_time,
            path: o.target_proc_path.as_deref(),
            md5: o.target_proc_md5.as_deref(),
            sha256: o.target_proc_sha256.as_deref(),
        };
        (Some(kind), Some(t))
    } else if let Some(r) = &m.remotethread {
        ev.event_type = Some(EventType::Remotethread);
        let t = Target {
            pid: r.remote_proc_pid,
            create_time: r.remote_proc_create_time,
            path: r.remote_proc_path.as_deref(),
            md5: r.remote_proc_md5.as_deref(),
            sha256: r.remote_proc_sha256.as_deref(),
        };
        (Some("remote_thread"), Some(t))
    } else {
        ev.event_type = Some(EventType::Crossproc);
        (None, None)
    };
    // Both set is not seen in practice: keep the remote thread half too.
    if m.open.is_some()
        && let Some(r) = &m.remotethread
    {
        let mut rt = Details::new();
        put_opt(&mut rt, "target_pid", r.remote_proc_pid);
        put_opt(&mut rt, "target_create_time", r.remote_proc_create_time);
        put_str(&mut rt, "target_path", r.remote_proc_path.as_deref());
        put_opt(
            &mut rt,
            "target_md5",
            hash_hex(r.remote_proc_md5.as_deref()),
        );
        put_opt(
            &mut rt,
            "target_sha256",
            hash_hex(r.remote_proc_sha256.as_deref()),
        );
        put_opt(
            &mut rt,
            "target_process_guid",
            ctx.guid(
                r.remote_proc_pid.map(|p| p as i32),
                r.remote_proc_create_time.map(|t| t as i64),
            ),
        );
        d.insert_nested("remotethread", rt);
    }
    ev.action = kind.map(str::to_owned);
    put_opt(d, "cross_process_type", ev.action.as_deref());
    put_opt(d, "is_target", m.is_target);
    put_opt(d, "tamper", m.tamper);
    put_opt(d, "tamper_sent", m.tamper_sent);
    let Some(t) = target else { return };

    let guid = ctx.guid(t.pid.map(|p| p as i32), t.create_time.map(|c| c as i64));
    ev.target_guid = guid.clone();
    ev.path = nonempty(t.path).map(str::to_owned);
    ev.md5 = hash_hex(t.md5);
    ev.sha256 = hash_hex(t.sha256);
    put_opt(d, "target_pid", t.pid);
    // Raw FILETIME, as the reference emits it.
    put_opt(d, "target_create_time", t.create_time);
    put_opt(d, "target_path", ev.path.as_deref());
    put_opt(d, "target_md5", ev.md5.as_deref());
    put_opt(d, "target_sha256", ev.sha256.as_deref());
    put_opt(d, "target_process_guid", guid.as_deref());

    if let Some(g) = guid {
        let mut f = ctx.facts(g, FactRank::ParentReference);
        f.pid = t.pid.map(i64::from);
        f.path = ev.path.clone();
        f.md5 = ev.md5.clone();
        f.sha256 = ev.sha256.clone();
        f.start_ms = filetime_to_start_ms(t.create_time.map(|c| c as i64));
        push_fact(&mut ev.processes, f);
    }
}

fn emet(ev: &mut Event, d: &mut Details, m: &CbEmetMitigationMsg) {
    ev.event_type = Some(EventType::Emet);
    ev.action = m
        .action
        .as_ref()
        .and_then(|a| a.mitigation_type)
        .map(mitigation_name);
    put_str(d, "log_message", m.action_text.as_deref());
    put_opt(d, "mitigation", ev.action.as_deref());
    put_opt(d, "blocked", m.blocked);
    put_opt(d, "log_id", m.emet_id);
    put_opt(d, "emet_timestamp", m.emet_timstamp);
}

fn blocked(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, m: &CbProcessBlockedMsg) {
    ev.event_type = Some(EventType::Processblock);
    let guid = ctx.guid(m.blocked_pid, m.blocked_proc_create_time.map(|t| t as i64));
    ev.target_guid = guid.clone();
    ev.path = nonempty(m.blocked_path.as_deref()).map(str::to_owned);
    ev.md5 = hash_hex(m.blockedmd5_hash.as_deref());
    ev.command_line = nonempty(m.blocked_cmdline.as_deref()).map(str::to_owned);
    ev.username = nonempty(m.blocked_username.as_deref()).map(str::to_owned);
    ev.action = m.block_result.map(|r| {
        match r {
            0 => "ProcessTerminated",
            1 => "NotTerminatedCBProcess",
            2 => "NotTerminatedSystemProcess",
            3 => "NotTerminatedCriticalSystemProcess",
            4 => "NotTerminatedWhitelistedPath",
            5 => "NotTerminatedOpenProcessError",
            6 => "NotTerminatedTerminateError",
            n => return format!("unknown ({n})"),
        }
        .to_owned()
    });

    put_col(d, "md5", ev.md5.as_deref());
    put_col(d, "path", ev.path.as_deref());
    // The reference names the blocked process `process_guid`/`pid`/`process_create_time`; here
    // those would be confused with the acting (header) process, so the target_* names of
    // crossproc are used.
    put_opt(d, "target_process_guid", guid.as_deref());
    put_opt(d, "target_pid", m.blocked_pid);
    put_opt(d, "target_create_time", m.blocked_proc_create_time);
    put_col(d, "command_line", ev.command_line.as_deref());
    put_str(d, "uid", m.blocked_uid.as_deref());
    put_col(d, "username", ev.username.as_deref());
    put_opt(
        d,
        "blocked_reason",
        m.blocked_type.map(|t| match t {
            1 => "Md5Hash".to_owned(),
            n => format!("unknown ({n})"),
        }),
    );
    put_opt(
        d,
        "blocked_event",
        m.blocked_event.map(|e| match e {
            1 => "ProcessCreate".to_owned(),
            2 => "RunningProcess".to_owned(),
            n => format!("unknown ({n})"),
        }),
    );
    put_opt(d, "blocked_result", ev.action.as_deref());
    put_opt(d, "blocked_error", m.block_error);

    if let Some(g) = guid {
        let mut f = ctx.facts(g, FactRank::ParentReference);
        f.pid = m.blocked_pid.map(i64::from);
        f.path = ev.path.clone();
        f.md5 = ev.md5.clone();
        f.cmdline = ev.command_line.clone();
        f.username = ev.username.clone();
        f.start_ms = filetime_to_start_ms(m.blocked_proc_create_time.map(|t| t as i64));
        push_fact(&mut ev.processes, f);
    }
}

fn process_meta(ev: &mut Event, d: &mut Details, ctx: &Ctx<'_>, m: &CbProcessMetadataMsg) {
    ev.event_type = Some(EventType::ProcessMeta);
    let guid = ctx.guid(m.process_pid, m.process_create_time);
    let parent_guid = ctx.parent_guid(m.parent_pid, m.parent_create_time);
    let md5 = hash_hex(m.process_md5.as_deref());
    let sha256 = hash_hex(m.process_sha256.as_deref());
    let cmdline = text_opt(m.commandline.as_deref());
    ev.path = nonempty(m.process_path.as_deref()).map(str::to_owned);
    ev.md5 = md5.clone();
    ev.sha256 = sha256.clone();
    ev.command_line = cmdline.clone();
    ev.username = nonempty(m.username.as_deref()).map(str::to_owned);
    ev.target_guid = guid.clone();

    put_opt(d, "meta_process_guid", guid.as_deref());
    put_opt(d, "process_guid_legacy", m.process_guid);
    put_opt(d, "process_create_time", m.process_create_time);
    put_opt(d, "process_pid", m.process_pid);
    put_opt(d, "process_md5", md5.as_deref());
    put_opt(d, "process_sha256", sha256.as_deref());
    put_opt(d, "process_path", ev.path.as_deref());
    put_str(d, "uid", m.uid.as_deref());
    put_col(d, "username", ev.username.as_deref());
    put_col(d, "command_line", cmdline.as_deref());
    put_opt(d, "parent_pid", m.parent_pid);
    put_opt(d, "parent_create_time", m.parent_create_time);
    put_opt(d, "parent_guid", parent_guid.as_deref());
    put_opt(d, "parent_md5", hash_hex(m.parent_md5.as_deref()));
    put_opt(d, "parent_sha256", hash_hex(m.parent_sha256.as_deref()));
    put_str(d, "parent_path", m.parent_path.as_deref());
    put_opt(d, "modload_count", m.modload_count);
    put_opt(d, "filemod_count", m.filemod_count);
    put_opt(d, "netconn_count", m.netconn_count);
    put_opt(d, "regmod_count", m.regmod_count);
    put_opt(d, "childproc_count", m.childproc_count);
    put_opt(d, "crossproc_count", m.crossproc_count);
    put_opt(d, "emet_count", m.emet_count);
    put_opt(d, "processblock_count", m.processblock_count);
    put_opt(d, "sensor_start_time", m.sensor_start_time);
    put_opt(d, "sensor_segment", m.sensor_segment);
    put_opt(d, "creationobserved", m.creationobserved);
    put_opt(d, "logon_type", m.logon_type);
    if !m.actions.is_empty() {
        d.insert("actions", emet_actions(&m.actions));
    }

    if let Some(g) = guid {
        let mut f = ctx.facts(g, FactRank::Observed);
        f.parent_guid = parent_guid;
        f.pid = m.process_pid.map(i64::from);
        f.path = ev.path.clone();
        f.md5 = md5;
        f.sha256 = sha256;
        f.cmdline = cmdline;
        f.username = ev.username.clone();
        f.start_ms = filetime_to_start_ms(m.process_create_time);
        push_fact(&mut ev.processes, f);
    }
}

fn binary(ctx: &Ctx<'_>, m: &CbModuleInfoMsg) -> Result<Binary, String> {
    let md5 = m
        .md5
        .as_deref()
        .and_then(text_hash_upper)
        .ok_or_else(|| "module info message (CbModuleInfoMsg) without md5".to_owned())?;
    let own = |s: &Option<String>| nonempty(s.as_deref()).map(str::to_owned);
    Ok(Binary {
        key: [0; 16],
        md5,
        sha256: m.sha256.as_deref().and_then(text_hash_upper),
        size: m
            .original_module_length
            .map(|l| l as i64)
            .or(m.copied_module_length.map(i64::from)),
        sensor_id: ctx.sensor_id,
        hostname: ctx.hostname.map(str::to_owned),
        timestamp_ms: ctx.timestamp_ms,
        file_description: own(&m.utf8_file_description),
        company_name: own(&m.utf8_company_name),
        product_name: own(&m.utf8_product_name),
        file_version: own(&m.utf8_file_version),
        original_filename: own(&m.utf8_original_file_name),
        digsig_result: own(&m.utf8_dig_sig_result),
        digsig_publisher: own(&m.utf8_dig_sig_publisher),
        details: String::new(),
    })
}

fn module_details(m: &CbModuleInfoMsg) -> Details {
    let mut d = Details::new();
    put_opt(&mut d, "md5", m.md5.as_deref().and_then(text_hash_upper));
    put_opt(
        &mut d,
        "sha256",
        m.sha256.as_deref().and_then(text_hash_upper),
    );
    put_opt(&mut d, "size", m.original_module_length);
    let mut sig = Details::new();
    put_str(&mut sig, "result", m.utf8_dig_sig_result.as_deref());
    put_str(&mut sig, "publisher", m.utf8_dig_sig_publisher.as_deref());
    put_str(
        &mut sig,
        "program_name",
        m.utf8_dig_sig_program_name.as_deref(),
    );
    put_str(
        &mut sig,
        "issuer_name",
        m.utf8_dig_sig_issuer_name.as_deref(),
    );
    put_str(
        &mut sig,
        "subject_name",
        m.utf8_dig_sig_subject_name.as_deref(),
    );
    put_str(
        &mut sig,
        "result_code",
        m.utf8_dig_sig_result_code.as_deref(),
    );
    put_str(&mut sig, "sign_time", m.utf8_dig_sig_sign_time.as_deref());
    if !sig.is_empty() {
        d.insert_nested("digsig", sig);
    }
    put_opt(&mut d, "utf_8_copied_module_length", m.copied_module_length);
    put_str(
        &mut d,
        "utf_8_file_description",
        m.utf8_file_description.as_deref(),
    );
    put_str(&mut d, "utf_8_company_name", m.utf8_company_name.as_deref());
    put_str(&mut d, "utf_8_product_name", m.utf8_product_name.as_deref());
    put_str(&mut d, "utf_8_file_version", m.utf8_file_version.as_deref());
    put_str(&mut d, "utf_8_comments", m.utf8_comments.as_deref());
    put_str(
        &mut d,
        "utf_8_legal_copyright",
        m.utf8_legal_copyright.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_legal_trademark",
        m.utf8_legal_trademark.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_internal_name",
        m.utf8_internal_name.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_original_file_name",
        m.utf8_original_file_name.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_product_description",
        m.utf8_product_description.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_product_version",
        m.utf8_product_version.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_private_build",
        m.utf8_private_build.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_special_build",
        m.utf8_special_build.as_deref(),
    );
    put_str(
        &mut d,
        "utf_8_on_disk_filename",
        m.utf8_on_disk_filename.as_deref(),
    );
    if let Some(icon) = m.icon.as_deref().filter(|b| !b.is_empty()) {
        d.insert("icon", base64(icon));
    }
    if let Some(h) = m.image_file_header.as_deref().filter(|b| !b.is_empty()) {
        d.insert("image_file_header", base64(h));
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Enum names

/// `CbFileType` name without its `filetype` prefix (`Pe`, `OfficeOpenXml` …).
fn file_type_name(t: i32) -> String {
    use crate::proto::cb_file_mod_msg::CbFileType;
    match CbFileType::try_from(t) {
        Ok(v) => {
            let n = v.as_str_name();
            n.strip_prefix("filetype").unwrap_or(n).to_owned()
        }
        Err(_) => format!("unknown ({t})"),
    }
}

fn tamper_type_name(t: i32) -> String {
    use crate::proto::cb_tamper_alert_msg::CbTamperAlertType;
    match CbTamperAlertType::try_from(t) {
        Ok(v) => {
            let n = v.as_str_name();
            n.strip_prefix("Alert").unwrap_or(n).to_owned()
        }
        Err(_) => format!("unknown ({t})"),
    }
}

/// `CbEmetMitigationTypes` name without its `action` prefix (`Dep`, `Eaf` …).
fn mitigation_name(t: i32) -> String {
    use crate::proto::cb_emet_mitigation_action::CbEmetMitigationTypes;
    match CbEmetMitigationTypes::try_from(t) {
        Ok(v) => {
            let n = v.as_str_name();
            n.strip_prefix("action").unwrap_or(n).to_owned()
        }
        Err(_) => format!("unknown ({t})"),
    }
}

fn netconn_block_type_name(t: i32) -> String {
    match t {
        1 => "NetworkIsolation".to_owned(),
        n => format!("unknown ({n})"),
    }
}

fn emet_actions(actions: &[CbEmetMitigationAction]) -> Value {
    Value::Array(
        actions
            .iter()
            .map(|a| match a.mitigation_type {
                Some(t) => Value::String(mitigation_name(t)),
                None => Value::Null,
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// An event teaches about at most two processes (its own and one other). Reserving exactly two
/// keeps the vector below glibc's large-bin size (Vec's default first growth to four 264-byte
/// facts is not), which otherwise forces a heap consolidation on nearly every event.
fn push_fact(v: &mut Vec<ProcessFacts>, f: ProcessFacts) {
    if v.capacity() == 0 {
        v.reserve_exact(2);
    }
    v.push(f);
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// UTF-8 bytes → text (invalid sequences replaced), `None` when absent or empty.
fn text_opt(b: Option<&[u8]>) -> Option<String> {
    b.filter(|b| !b.is_empty())
        .map(|b| match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        })
}

fn lookup_string(strings: &[CbStringMsg], guid: Option<i64>) -> Option<String> {
    let guid = guid?;
    strings
        .iter()
        .find(|s| s.guid == Some(guid))
        .and_then(|s| text_opt(s.utf8string.as_deref()))
}

/// The `details` object of one record. Each value is written as JSON text the moment it is put,
/// straight from the borrowed protobuf or event field, and the object is assembled once, on the
/// decode thread, with the keys sorted. Owning a copy of every value until then (a `String` or a
/// `serde_json::Value` per key) cost an allocation and a free per key, most of them copies of
/// strings the event keeps in its typed columns anyway.
///
/// Keys come out sorted (as `serde_json::Map` orders them); a key put again replaces the earlier
/// value, as in a map.
///
/// A field the event stores in the typed column of the same name (`path`, `md5`, `remote_ip`, ...)
/// is put with [`put_col`] and left out of an event's own object: repeating it there made up
/// half of the bytes of `details` and a quarter of the database. A secondary payload's object
/// (`other_payloads`) keeps it, since none of its fields has a column.
#[derive(Debug)]
struct Details {
    /// The values' JSON text, back to back in the order they were put.
    text: String,
    /// Each key with where its value lies in `text`.
    items: Vec<(&'static str, Range<usize>)>,
    /// The object is an event's own `details`, stored beside that event's typed columns.
    beside_columns: bool,
}

impl Details {
    /// Sized for a typical record (a few hundred bytes, up to a dozen keys): growing from empty
    /// cost several reallocations per record.
    fn new() -> Details {
        Details {
            text: String::with_capacity(384),
            items: Vec::with_capacity(16),
            beside_columns: false,
        }
    }

    /// The `details` of an event whose typed columns are stored with it.
    fn for_event() -> Details {
        Details {
            beside_columns: true,
            ..Details::new()
        }
    }

    fn insert(&mut self, key: &'static str, v: impl Json) {
        let start = self.text.len();
        v.write_json(&mut self.text);
        self.items.push((key, start..self.text.len()));
    }

    fn insert_nested(&mut self, key: &'static str, mut d: Details) {
        let start = self.text.len();
        d.write(&mut self.text);
        self.items.push((key, start..self.text.len()));
    }

    /// Put every value of `other`, in its order.
    fn extend(&mut self, other: Details) {
        let shift = self.text.len();
        self.text.push_str(&other.text);
        self.items.extend(
            other
                .items
                .into_iter()
                .map(|(key, r)| (key, r.start + shift..r.end + shift)),
        );
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empty again, keeping the memory for the next record.
    fn clear(&mut self) {
        self.text.clear();
        self.items.clear();
    }

    /// The object as JSON text (sorting the keys in place).
    fn render(&mut self) -> String {
        // Exactly what `write` needs at most (braces, and per key its quotes, colon and comma),
        // so the text is never reallocated on the way.
        let keys: usize = self.items.iter().map(|(key, _)| key.len() + 4).sum();
        let mut out = String::with_capacity(2 + keys + self.text.len());
        self.write(&mut out);
        out
    }

    fn write(&mut self, out: &mut String) {
        // Stable: of equal keys the last put comes last, and only the last is written. Most keys
        // differ in their first byte, and comparing that inline spares a memcmp call.
        self.items.sort_by(|(a, _), (b, _)| {
            a.as_bytes()
                .first()
                .cmp(&b.as_bytes().first())
                .then_with(|| a.cmp(b))
        });
        out.push('{');
        let mut items = self.items.iter().peekable();
        let mut first = true;
        while let Some((key, range)) = items.next() {
            if items.peek().is_some_and(|(next, _)| next == key) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            // Keys are names written in this file: nothing in them needs escaping.
            debug_assert!(key.bytes().all(|b| ESCAPE[usize::from(b)] == 0), "{key}");
            out.push('"');
            out.push_str(key);
            out.push_str("\":");
            out.push_str(&self.text[range.clone()]);
        }
        out.push('}');
    }
}

/// A value `details` can hold, written as JSON text.
trait Json {
    fn write_json(&self, out: &mut String);
}

impl Json for str {
    fn write_json(&self, out: &mut String) {
        write_str(out, self);
    }
}

impl Json for String {
    fn write_json(&self, out: &mut String) {
        write_str(out, self);
    }
}

impl Json for bool {
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

macro_rules! json_integer {
    ($($t:ty),*) => {$(
        impl Json for $t {
            fn write_json(&self, out: &mut String) {
                out.push_str(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}
json_integer!(u16, i32, i64, u32, u64);

impl Json for Value {
    fn write_json(&self, out: &mut String) {
        write_value(out, self);
    }
}

impl<T: Json + ?Sized> Json for &T {
    fn write_json(&self, out: &mut String) {
        (**self).write_json(out);
    }
}

/// `v` as JSON text, exactly as serde_json writes it. Strings, integers and booleans, nearly
/// everything a record holds, are written here directly; serde_json's general serializer cost
/// more than the rest of rendering a record.
fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => write_str(out, s),
        Value::Bool(b) => b.write_json(out),
        Value::Number(n) if n.is_i64() || n.is_u64() => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.write_json(out),
            (None, Some(u)) => u.write_json(out),
            (None, None) => unreachable!("checked: an integer"),
        },
        // Floats, arrays, nested objects, null: rare, and serialising a `Value` cannot fail.
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// What a byte of a JSON string is written as: 0 itself, `u` as `\u00XX`, else `\` and that byte
/// (serde_json's table, so the text is the same).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Does any of the 8 bytes of `w` need escaping (a control byte, `"` or `\`)? Exact: the
/// classic "has a zero byte" / "has a byte less than n" bit tricks never miss, and never fire
/// unless some byte matches.
const fn any_escape(w: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGH != 0
}

/// `s` as a JSON string literal. Every Windows path has backslashes, but runs of eight bytes
/// with nothing to escape are still most of the text, so those are skipped a word at a time;
/// byte by byte this was a tenth of the decode thread's work.
fn write_str(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push('"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_ne_bytes(word.try_into().expect("8 bytes"));
            if !any_escape(w) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        for (j, &b) in (i..end).zip(&bytes[i..end]) {
            let esc = ESCAPE[usize::from(b)];
            if esc == 0 {
                continue;
            }
            // `j` holds an ASCII byte, so both slice ends fall on character boundaries.
            out.push_str(&s[start..j]);
            match esc {
                b'u' => {
                    out.push_str("\\u00");
                    out.push(char::from(HEX_LOWER[usize::from(b >> 4)]));
                    out.push(char::from(HEX_LOWER[usize::from(b & 0xf)]));
                }
                c => {
                    out.push('\\');
                    out.push(char::from(c));
                }
            }
            start = j + 1;
        }
        i = end;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn put(d: &mut Details, key: &'static str, v: impl Json) {
    d.insert(key, v);
}

fn put_opt<T: Json>(d: &mut Details, key: &'static str, v: Option<T>) {
    if let Some(v) = v {
        d.insert(key, v);
    }
}

/// A field that is also the value of the event's typed column named `key`: only a secondary
/// payload's object keeps it (see [`Details`]).
fn put_col<T: Json>(d: &mut Details, key: &'static str, v: Option<T>) {
    if !d.beside_columns {
        put_opt(d, key, v);
    }
}

fn put_str(d: &mut Details, key: &'static str, v: Option<&str>) {
    if let Some(v) = nonempty(v) {
        d.insert(key, v);
    }
}

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    super::guid::base64_into(bytes, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::guid::process_guid;
    use crate::proto::{
        CbCreateRemoteThreadMsg, CbCrossProcessOpenMsg, CbEndpointEnvironmentMsg, CbEnvironmentMsg,
        CbHeaderMsg, CbServerEnvironmentMsg, CbSuppressedInfo,
    };

    #[test]
    fn values_are_written_exactly_as_serde_json_writes_them() {
        let mut all_bytes = String::new();
        for c in (0u32..0x80).filter_map(char::from_u32) {
            all_bytes.push(c);
        }
        let values = [
            Value::from(all_bytes),
            Value::from("c:\\windows\\system32\\ntdll.dll \"quoted\" ü 日本 \u{2028}"),
            Value::from(""),
            Value::from(i64::MIN),
            Value::from(-1),
            Value::from(0),
            Value::from(u64::MAX),
            Value::from(true),
            Value::from(false),
            Value::Null,
            Value::from(1.5),
            serde_json::json!(["a", 1, null, {"k": "v"}]),
        ];
        for v in values {
            let mut out = String::new();
            write_value(&mut out, &v);
            assert_eq!(out, serde_json::to_string(&v).unwrap());
        }
    }

    #[test]
    fn strings_are_escaped_wherever_the_byte_falls_in_a_word() {
        // Every escape and a multi-byte character, at every offset of strings up to three words
        // long, so each lands in the word-at-a-time skip, in a word's tail and past the last word.
        for special in ["\\", "\"", "\n", "\u{1}", "\u{1f}", "\u{7f}", "é", "日"] {
            for len in 0..24 {
                for at in 0..=len {
                    let s = format!("{}{special}{}", "a".repeat(at), "b".repeat(len - at));
                    let mut out = String::new();
                    write_str(&mut out, &s);
                    assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    const CT: i64 = 130921710236713495;
    const PARENT_CT: i64 = 130919142851396573;

    fn header() -> CbHeaderMsg {
        CbHeaderMsg {
            version: 4,
            timestamp: Some(CT + 10_000_000),
            process_pid: Some(1972),
            process_create_time: Some(CT),
            process_guid: Some(-42),
            process_path: Some("c:\\a.exe".to_owned()),
            process_md5: Some(vec![0xab; 16]),
            ..CbHeaderMsg::default()
        }
    }

    fn msg() -> CbEventMsg {
        CbEventMsg {
            header: header(),
            ..CbEventMsg::default()
        }
    }

    fn env(sensor: i32, host: &str) -> Option<CbEnvironmentMsg> {
        Some(CbEnvironmentMsg {
            endpoint: Some(CbEndpointEnvironmentMsg {
                sensor_id: Some(sensor),
                sensor_host_name: Some(host.to_owned()),
                host_id: Some(5),
            }),
            server: Some(CbServerEnvironmentMsg { node_id: Some(2) }),
        })
    }

    fn amqp(sensor: i64) -> HeaderEnv {
        HeaderEnv {
            sensor_id: Some(sensor),
            hostname: Some("AMQP-HOST".to_owned()),
            host_id: Some(0),
            node_id: Some(0),
        }
    }

    fn event(m: &CbEventMsg, fallback: &HeaderEnv) -> Event {
        match decode_message(&m.encode_to_vec(), fallback) {
            Ok(Record::Event(e)) => *e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn header_env_from_amqp_headers() {
        let mut h = Headers::new();
        h.insert("sensorId".into(), Value::from(12));
        h.insert("hostId".into(), Value::from("34"));
        h.insert("nodeId".into(), Value::from(u64::MAX));
        h.insert("sensorHostName".into(), Value::from("WIN-1"));
        let e = HeaderEnv::from_headers(&h);
        assert_eq!(e.sensor_id, Some(12));
        assert_eq!(e.host_id, Some(34));
        assert_eq!(e.node_id, Some(-1));
        assert_eq!(e.hostname.as_deref(), Some("WIN-1"));
        let empty = HeaderEnv::from_headers(&Headers::new());
        assert_eq!(empty, HeaderEnv::default());
    }

    #[test]
    fn env_wins_over_amqp_headers() {
        let mut m = msg();
        m.env = env(7, "ENV-HOST");
        m.tamper_alert = Some(CbTamperAlertMsg {
            r#type: Some(3),
            tamper_sent: Some(true),
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.sensor_id, Some(7));
        assert_eq!(e.hostname.as_deref(), Some("ENV-HOST"));
        assert_eq!(e.details_value()["host_id"], 5);
        assert_eq!(e.details_value()["node_id"], 2);
        assert_eq!(e.event_type, Some(EventType::Tamper));
        assert_eq!(e.action.as_deref(), Some("CbServiceStopped"));
        assert_eq!(e.details_value()["tamper_type"], "CbServiceStopped");
        assert_eq!(e.details_value()["tamper_sent"], true);

        let m2 = CbEventMsg { env: None, ..m };
        let e2 = event(&m2, &amqp(1));
        assert_eq!(e2.sensor_id, Some(1));
        assert_eq!(e2.hostname.as_deref(), Some("AMQP-HOST"));
    }

    #[test]
    fn key_ignores_env_wherever_it_sits() {
        // crossproc (14) is encoded after env (13), so stripping must splice around it.
        let mut m = msg();
        m.crossproc = Some(CbCrossProcessMsg {
            open: Some(CbCrossProcessOpenMsg {
                r#type: Some(1),
                target_pid: Some(708),
                ..CbCrossProcessOpenMsg::default()
            }),
            ..CbCrossProcessMsg::default()
        });
        let bare = event(&m, &amqp(7));
        let mut with_env = m.clone();
        with_env.env = env(7, "ENV-HOST");
        let enveloped = event(&with_env, &HeaderEnv::default());
        assert_eq!(bare.key, enveloped.key);
        assert_eq!(bare.process_guid, enveloped.process_guid);

        // Same bytes from another sensor are another event.
        assert_ne!(bare.key, event(&m, &amqp(8)).key);
        // Any other change of content changes the key.
        let mut other = m.clone();
        other.header.timestamp = Some(1);
        assert_ne!(bare.key, event(&other, &amqp(7)).key);

        // Two env fields (a concatenated message) are both cut.
        let mut bytes = with_env.encode_to_vec();
        bytes.extend_from_slice(
            &CbEventMsg {
                env: env(7, "X"),
                header: header(),
                ..CbEventMsg::default()
            }
            .encode_to_vec(),
        );
        let scan = scan_top_level(&bytes).unwrap();
        assert_eq!(scan.env.len(), 2);
        let stripped = without_env(&bytes, &scan.env);
        assert!(scan_top_level(&stripped).unwrap().env.is_empty());
    }

    #[test]
    fn wire_failures_are_errors() {
        assert!(
            decode_message(&[], &HeaderEnv::default())
                .unwrap_err()
                .contains("header")
        );
        let no_header = CbEventMsg {
            header: header(),
            ..CbEventMsg::default()
        }
        .encode_to_vec();
        // Drop field 1 entirely: re-encode only the strings table.
        let only_strings = CbEventMsg {
            header: header(),
            strings: vec![CbStringMsg {
                guid: Some(1),
                utf8string: Some(b"x".to_vec()),
                string_type: None,
            }],
            ..CbEventMsg::default()
        }
        .encode_to_vec();
        let header_len = no_header.len();
        let err = decode_message(&only_strings[header_len..], &HeaderEnv::default()).unwrap_err();
        assert!(err.contains("required header"), "{err}");

        assert!(decode_message(&[0xff; 12], &HeaderEnv::default()).is_err());
        assert!(
            decode_message(&[0x0a, 0x05, 0x08], &HeaderEnv::default())
                .unwrap_err()
                .contains("overruns")
        );
        // Invalid UTF-8 in a proto `string` field is a decode failure, not a panic.
        let mut bad_utf8 = msg();
        bad_utf8.header.process_path = Some("x".to_owned());
        let mut b = bad_utf8.encode_to_vec();
        let pos = b.iter().position(|&c| c == b'x').unwrap();
        b[pos] = 0xff;
        assert!(decode_message(&b, &HeaderEnv::default()).is_err());
    }

    #[test]
    fn scan_handles_every_wire_type() {
        // field 1 header (len 2: version=4), field 30 fixed64, field 31 fixed32,
        // field 32 group containing a varint, field 33 varint.
        let mut b = vec![0x0a, 0x02, 0x08, 0x04];
        b.extend_from_slice(&[0xf1, 0x01]);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[0xfd, 0x01]);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&[0x83, 0x02, 0x08, 0x01, 0x84, 0x02]);
        b.extend_from_slice(&[0x88, 0x02, 0x05]);
        let scan = scan_top_level(&b).unwrap();
        assert!(scan.has_header);
        assert!(scan.env.is_empty());
        assert!(scan_top_level(&[0x0e]).is_err(), "wire type 6");
        assert!(scan_top_level(&[0x04]).is_err(), "stray end group");
        assert!(
            scan_top_level(&[0x83, 0x02, 0x8c, 0x02]).is_err(),
            "mismatched group end"
        );
        assert!(scan_top_level(&[0x00]).is_err(), "field 0");
        assert!(scan_top_level(&[0x80; 11]).is_err(), "overlong varint");
        assert!(scan_top_level(&[0x09, 0, 0]).is_err(), "short fixed64");
        let deep: Vec<u8> = std::iter::repeat_n([0x83, 0x02], 100).flatten().collect();
        assert!(scan_top_level(&deep).is_err(), "deep groups");
    }

    #[test]
    fn each_single_delivery_starts_afresh() {
        // The decode thread keeps its message, details buffer and seen facts between single
        // deliveries: none of it may carry over. The same event twice teaches its facts twice
        // (each delivery may be stored or quarantined on its own), and an event after a richer
        // one shows nothing of the richer one.
        let mut rich = msg();
        rich.env = env(1, "WIN-1");
        rich.header.fork_pid = Some(7);
        let first = event(&rich, &amqp(1));
        let again = event(&rich, &amqp(1));
        assert_eq!(first.processes.len(), 1);
        assert_eq!(again.processes, first.processes);
        assert_eq!(again.details, first.details);
        assert!(
            first.details.contains("\"fork_pid\":7"),
            "{}",
            first.details
        );

        let plain = event(&msg(), &amqp(1));
        assert_eq!(plain.hostname.as_deref(), Some("AMQP-HOST"));
        assert_eq!(plain.details, "{}");
        assert_eq!(plain.processes.len(), 1);
    }

    #[test]
    fn header_only_and_legacy_guid() {
        let e = event(&msg(), &amqp(1));
        assert_eq!(e.event_type, Some(EventType::HeaderOnly));
        assert_eq!(
            e.process_guid.as_deref(),
            Some("00000001-0000-07b4-01d1-209a100bc217")
        );
        assert_eq!(e.timestamp_ms, 1447697424671);
        assert_eq!(e.processes.len(), 1);
        assert_eq!(e.processes[0].rank, Some(FactRank::Observed));
        assert_eq!(e.processes[0].start_ms, Some(1447697423671));
        assert_eq!(
            e.processes[0].md5.as_deref(),
            Some("ABABABABABABABABABABABABABABABAB")
        );

        // Without a sensor id the formula cannot apply: the legacy int64 is the id.
        let e = event(&msg(), &HeaderEnv::default());
        assert_eq!(e.process_guid.as_deref(), Some("-42"));
        let mut m = msg();
        m.header.process_pid = None;
        m.header.process_guid = None;
        m.header.timestamp = None;
        let e = event(&m, &amqp(1));
        assert_eq!(e.process_guid, None);
        assert!(e.processes.is_empty());
        assert_eq!(e.timestamp_ms, 0);
    }

    /// Regression: a sensor that does not know the parent sends pid -1 and create time 0; the GUID
    /// built from those (`…-ffff-ffff-0000-000000000000`) made every such process a child of one
    /// made-up inferred root.
    #[test]
    fn unknown_parent_makes_no_parent_guid() {
        let mut m = msg();
        m.process = Some(CbProcessMsg {
            created: Some(true),
            parent_pid: Some(-1),
            parent_create_time: Some(0),
            ..CbProcessMsg::default()
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Procstart));
        assert!(
            e.details_value().get("parent_guid").is_none(),
            "{}",
            e.details
        );
        assert_eq!(e.details_value()["parent_pid"], -1);
        assert_eq!(e.processes.len(), 1, "{:?}", e.processes);
        assert_eq!(e.processes[0].parent_guid, None);
    }

    #[test]
    fn procstart_and_procend() {
        let mut m = msg();
        m.header.filepath_string_guid = Some(99);
        m.strings = vec![CbStringMsg {
            guid: Some(99),
            utf8string: Some(b"c:\\image.exe".to_vec()),
            string_type: Some(1),
        }];
        m.process = Some(CbProcessMsg {
            created: Some(true),
            parent_pid: Some(2804),
            parent_create_time: Some(PARENT_CT),
            parent_guid: Some(-8915740139778150230),
            md5hash: Some(vec![0x01; 16]),
            commandline: Some(b"image.exe /x".to_vec()),
            parent_path: Some("c:\\parent.exe".to_owned()),
            parent_md5: Some(vec![0x02; 16]),
            username: Some("SYSTEM".to_owned()),
            actions: vec![CbEmetMitigationAction {
                mitigation_type: Some(1),
            }],
            ..CbProcessMsg::default()
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Procstart));
        assert_eq!(e.path.as_deref(), Some("c:\\image.exe"));
        assert_eq!(e.md5.as_deref(), Some("01010101010101010101010101010101"));
        assert_eq!(e.command_line.as_deref(), Some("image.exe /x"));
        let parent = "00000001-0000-0af4-01d1-1e444bf4c3dd";
        assert_eq!(e.details_value()["parent_guid"], parent);
        assert_eq!(
            e.details_value()["parent_guid_legacy"],
            -8915740139778150230i64
        );
        assert_eq!(e.details_value()["parent_create_time"], 1447440685);
        assert_eq!(e.details_value()["actions"], serde_json::json!(["Dep"]));
        assert_eq!(e.processes.len(), 2);
        let own = &e.processes[0];
        assert_eq!(own.rank, Some(FactRank::Procstart));
        assert_eq!(own.parent_guid.as_deref(), Some(parent));
        assert_eq!(own.cmdline.as_deref(), Some("image.exe /x"));
        assert_eq!(own.username.as_deref(), Some("SYSTEM"));
        assert_eq!(own.end_ms, None);
        let p = &e.processes[1];
        assert_eq!(p.guid, parent);
        assert_eq!(p.rank, Some(FactRank::ParentReference));
        assert_eq!(p.pid, Some(2804));
        assert_eq!(p.path.as_deref(), Some("c:\\parent.exe"));
        assert_eq!(p.md5.as_deref(), Some("02020202020202020202020202020202"));
        assert_eq!(p.start_ms, Some(1447440685139));

        if let Some(p) = m.process.as_mut() {
            p.created = Some(false);
        }
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Procend));
        assert_eq!(e.processes[0].rank, Some(FactRank::Procstart));
        assert_eq!(e.processes[0].end_ms, Some(e.timestamp_ms));
    }

    #[test]
    fn childproc_child_guid_and_facts() {
        let mut m = msg();
        m.childproc = Some(CbChildProcessMsg {
            created: Some(false),
            pid: Some(0x1_0000_07b4),
            create_time: Some(CT),
            path: Some("c:\\child.exe".to_owned()),
            md5hash: Some(vec![0xcd; 16]),
            commandline: Some(b"child".to_vec()),
            username: Some("u".to_owned()),
            child_proc_type: Some(1),
            suppressed: Some(CbSuppressedInfo {
                b_is_suppressed: Some(true),
                state: Some(2),
            }),
            tamper: Some(false),
            tamper_sent: Some(true),
            ..CbChildProcessMsg::default()
        });
        let e = event(&m, &amqp(3));
        let child = process_guid(3, 1972, CT);
        assert_eq!(e.event_type, Some(EventType::Childproc));
        assert_eq!(e.target_guid.as_deref(), Some(child.as_str()));
        assert_eq!(e.action.as_deref(), Some("end"));
        assert_eq!(e.details_value()["child_process_guid"], child.as_str());
        assert_eq!(
            e.details_value()["parent_guid"],
            e.process_guid.clone().unwrap().as_str()
        );
        assert_eq!(e.details_value()["childproc_type"], "Fork");
        assert_eq!(e.details_value()["childproc_suppressed"], true);
        assert_eq!(
            e.details_value()["childproc_suppressed_state"],
            "EventlessWithXproc"
        );
        assert_eq!(e.details_value()["tamper"], false);
        assert_eq!(e.details_value()["tamper_sent"], true);
        let facts = &e.processes;
        assert_eq!(facts[0].rank, Some(FactRank::Observed));
        assert_eq!(facts[1].guid, child);
        assert_eq!(facts[1].rank, Some(FactRank::Childproc));
        assert_eq!(facts[1].parent_guid, e.process_guid);
        assert_eq!(facts[1].cmdline.as_deref(), Some("child"));
        assert_eq!(facts[1].end_ms, Some(e.timestamp_ms));
        assert_eq!(facts[1].start_ms, Some(1447697423671));
    }

    #[test]
    fn crossproc_open_and_remotethread() {
        let mut m = msg();
        m.crossproc = Some(CbCrossProcessMsg {
            open: Some(CbCrossProcessOpenMsg {
                r#type: Some(2),
                target_pid: Some(708),
                target_proc_create_time: Some(CT as u64),
                requested_access: Some(5136),
                target_proc_path: Some("c:\\lsass.exe".to_owned()),
                target_proc_md5: Some(vec![0x38; 16]),
                target_proc_sha256: None,
            }),
            is_target: Some(false),
            ..CbCrossProcessMsg::default()
        });
        let e = event(&m, &amqp(7));
        let target = process_guid(7, 708, CT);
        assert_eq!(e.event_type, Some(EventType::Crossproc));
        assert_eq!(e.action.as_deref(), Some("open_thread"));
        assert_eq!(e.target_guid.as_deref(), Some(target.as_str()));
        assert_eq!(e.details_value()["target_create_time"], CT);
        assert_eq!(e.details_value()["requested_access"], 5136);
        assert_eq!(e.processes[1].rank, Some(FactRank::ParentReference));
        assert_eq!(e.processes[1].guid, target);

        m.crossproc = Some(CbCrossProcessMsg {
            remotethread: Some(CbCreateRemoteThreadMsg {
                remote_proc_pid: Some(2684),
                remote_proc_create_time: Some(CT as u64),
                remote_proc_path: Some("c:\\inj.exe".to_owned()),
                ..CbCreateRemoteThreadMsg::default()
            }),
            is_target: Some(true),
            ..CbCrossProcessMsg::default()
        });
        let e = event(&m, &amqp(7));
        assert_eq!(e.event_type, Some(EventType::Remotethread));
        assert_eq!(e.action.as_deref(), Some("remote_thread"));
        assert_eq!(e.target_guid, Some(process_guid(7, 2684, CT)));
        assert_eq!(e.path.as_deref(), Some("c:\\inj.exe"));
    }

    #[test]
    fn filemod_regmod_names() {
        let mut m = msg();
        m.header.filepath_string_guid = Some(5);
        m.strings = vec![CbStringMsg {
            guid: Some(5),
            utf8string: Some(b"c:\\f.txt".to_vec()),
            string_type: None,
        }];
        for (action, name) in [
            (1, "create"),
            (2, "write"),
            (4, "delete"),
            (8, "lastwrite"),
            (16, "open"),
            (3, "unknown (3)"),
        ] {
            m.filemod = Some(CbFileModMsg {
                action: Some(action),
                r#type: Some(17),
                md5hash: Some(vec![0xee; 16]),
                tamper: Some(true),
                tamper_sent: Some(false),
                ..CbFileModMsg::default()
            });
            let e = event(&m, &amqp(1));
            assert_eq!(e.event_type, Some(EventType::Filemod));
            assert_eq!(e.path.as_deref(), Some("c:\\f.txt"));
            assert_eq!(e.action.as_deref(), Some(name));
            assert_eq!(e.details_value()["filetype_name"], "OfficeOpenXml");
            assert_eq!(e.details_value()["file_type"], 17);
            assert_eq!(
                e.details_value()["file_md5"],
                "EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE"
            );
            assert_eq!(e.details_value()["tamper"], true);
            assert_eq!(e.details_value()["tamper_sent"], false);
        }
        m.filemod = None;
        for (action, name) in [
            (1, "createkey"),
            (2, "writeval"),
            (4, "delkey"),
            (8, "delval"),
        ] {
            m.regmod = Some(CbRegModMsg {
                action: Some(action),
                utf8_regpath: Some(b"\\registry\\machine\\x".to_vec()),
                tamper: Some(true),
                tamper_sent: Some(false),
                ..CbRegModMsg::default()
            });
            let e = event(&m, &amqp(1));
            assert_eq!(e.event_type, Some(EventType::Regmod));
            assert_eq!(e.action.as_deref(), Some(name));
            assert_eq!(e.path.as_deref(), Some("\\registry\\machine\\x"));
            // Not swapped (the reference forwarder's struct tags cross over).
            assert_eq!(e.details_value()["tamper"], true);
            assert_eq!(e.details_value()["tamper_sent"], false);
        }
    }

    #[test]
    fn netconn_v1_and_v2() {
        let mut m = msg();
        m.network = Some(CbNetConnMsg {
            ipv4_address: Some(465241111),
            port: Some(20480),
            protocol: Some(17),
            outbound: Some(false),
            utf8_netpath: Some(b"apis.google.com".to_vec()),
            local_ip_address: Some(1974188),
            local_port: Some(51392),
            ..CbNetConnMsg::default()
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Netconn));
        assert_eq!(e.remote_ip.as_deref(), Some("23.4.187.27"));
        assert_eq!(e.remote_port, Some(80));
        assert_eq!(e.local_ip.as_deref(), Some("172.31.30.0"));
        assert_eq!(e.local_port, Some(49352));
        assert_eq!(e.protocol.as_deref(), Some("udp"));
        assert_eq!(e.direction.as_deref(), Some("inbound"));
        assert_eq!(e.domain.as_deref(), Some("apis.google.com"));
        assert_eq!(e.details_value()["ipv4"], "23.4.187.27");
        assert_eq!(e.details_value()["port"], 80);

        m.network = None;
        let high = u64::from_le_bytes([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]);
        let low = u64::from_le_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
        m.networkv2 = Some(CbNetConnMsgv2 {
            protocol: Some(6),
            remote_ip_address: Some(CbIpAddr {
                b_is_ipv6: Some(true),
                ipv6_high: Some(high),
                ipv6_low: Some(low),
                ipv6_scope: Some("3".to_owned()),
                ..CbIpAddr::default()
            }),
            remote_port: Some(0xbb01),
            local_ip_address: Some(CbIpAddr {
                ipv4_address: Some(1974188),
                ..CbIpAddr::default()
            }),
            local_port: Some(51392),
            ja3: Some("abc".to_owned()),
            ..CbNetConnMsgv2::default()
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Netconn));
        assert_eq!(e.remote_ip.as_deref(), Some("2001:db8::1%3"));
        assert_eq!(e.remote_port, Some(443));
        assert_eq!(e.local_ip.as_deref(), Some("172.31.30.0"));
        assert_eq!(e.protocol.as_deref(), Some("tcp"));
        assert_eq!(
            e.direction.as_deref(),
            Some("outbound"),
            "proto default is outbound"
        );
        assert_eq!(e.details_value()["protocol"], 6);
        assert!(e.details_value().get("Protocol").is_none());
        assert_eq!(e.details_value()["ja3"], "abc");
    }

    #[test]
    fn blocked_emet_scripts() {
        let mut m = msg();
        m.blocked = Some(CbProcessBlockedMsg {
            blocked_type: Some(1),
            blocked_event: Some(2),
            blockedmd5_hash: Some(vec![0x45; 16]),
            blocked_path: Some("c:\\mspaint.exe".to_owned()),
            block_result: Some(0),
            blocked_pid: Some(1260),
            blocked_proc_create_time: Some(CT as u64),
            ..CbProcessBlockedMsg::default()
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Processblock));
        assert_eq!(e.target_guid, Some(process_guid(1, 1260, CT)));
        assert_eq!(e.details_value()["blocked_reason"], "Md5Hash");
        assert_eq!(e.details_value()["blocked_event"], "RunningProcess");
        assert_eq!(e.details_value()["blocked_result"], "ProcessTerminated");
        assert_eq!(
            e.processes.last().unwrap().rank,
            Some(FactRank::ParentReference)
        );

        let mut m = msg();
        m.emet = Some(CbEmetMitigationMsg {
            emet_id: Some(1032),
            emet_timstamp: Some(7),
            action: Some(CbEmetMitigationAction {
                mitigation_type: Some(8),
            }),
            action_text: Some("EAF".to_owned()),
            blocked: Some(true),
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Emet));
        assert_eq!(e.details_value()["mitigation"], "Eaf");
        assert_eq!(e.details_value()["log_id"], 1032);
        assert_eq!(e.details_value()["emet_timestamp"], 7);

        let mut m = msg();
        m.scriptexe = Some(CbScriptExecute {
            script: Some("Write-Host".to_owned()),
            sha256: Some("ab12".to_owned()),
        });
        let e = event(&m, &amqp(1));
        assert_eq!(e.event_type, Some(EventType::Scriptexe));
        assert_eq!(e.sha256.as_deref(), Some("AB12"));
        assert_eq!(e.details_value()["script"], "Write-Host");
    }

    #[test]
    fn module_is_a_binary() {
        let mut m = msg();
        m.module = Some(CbModuleInfoMsg {
            md5: Some(b"acf87af3b4b7f0d4c0ece41f2a8fda8e".to_vec()),
            sha256: Some(b"00ff".to_vec()),
            original_module_length: Some(1234),
            utf8_file_description: Some("desc".to_owned()),
            utf8_dig_sig_result: Some("Signed".to_owned()),
            icon: Some(vec![1, 2, 3, 4]),
            ..CbModuleInfoMsg::default()
        });
        let Ok(Record::Binary(b)) = decode_message(&m.encode_to_vec(), &amqp(1)) else {
            panic!("expected a binary");
        };
        assert_eq!(b.md5, "ACF87AF3B4B7F0D4C0ECE41F2A8FDA8E");
        assert_eq!(b.sha256.as_deref(), Some("00FF"));
        assert_eq!(b.size, Some(1234));
        assert_eq!(b.file_description.as_deref(), Some("desc"));
        assert_eq!(b.digsig_result.as_deref(), Some("Signed"));
        assert_eq!(b.details_value()["digsig"]["result"], "Signed");
        assert_eq!(b.details_value()["icon"], "AQIDBA==");
        assert_eq!(b.sensor_id, Some(1));

        m.module = Some(CbModuleInfoMsg::default());
        let err = decode_message(&m.encode_to_vec(), &amqp(1)).unwrap_err();
        assert!(err.contains("without md5"), "{err}");
    }

    #[test]
    fn every_payload_has_its_event_type() {
        type Setter = Box<dyn Fn(&mut CbEventMsg)>;
        let cases: Vec<(Setter, EventType)> = vec![
            (
                Box::new(|m| m.stats = Some(CbStatisticsMsg::default())),
                EventType::Stats,
            ),
            (
                Box::new(|m| m.vtwrite = Some(CbVtWriteMsg::default())),
                EventType::Vtwrite,
            ),
            (
                Box::new(|m| m.vtload = Some(CbVtLoadMsg::default())),
                EventType::Vtload,
            ),
            (
                Box::new(|m| m.process_meta = Some(CbProcessMetadataMsg::default())),
                EventType::ProcessMeta,
            ),
            (
                Box::new(|m| m.netconn_blocked = Some(CbNetConnBlockedMsg::default())),
                EventType::NetconnBlocked,
            ),
            (
                Box::new(|m| m.netconn_blockedv2 = Some(CbNetConnBlockedMsgv2::default())),
                EventType::NetconnBlockedV2,
            ),
            (
                Box::new(|m| m.internal_use = Some(InternalUse::default())),
                EventType::InternalUse,
            ),
            (
                Box::new(|m| m.fbscriptexe = Some(CbFileBackedScriptExecute::default())),
                EventType::Fbscriptexe,
            ),
            (
                Box::new(|m| m.modload = Some(CbModuleLoadMsg::default())),
                EventType::Modload,
            ),
            (
                Box::new(|m| m.tamper_alert = Some(CbTamperAlertMsg::default())),
                EventType::Tamper,
            ),
        ];
        for (set, ty) in cases {
            let mut m = msg();
            set(&mut m);
            assert_eq!(event(&m, &amqp(1)).event_type, Some(ty));
        }
    }

    #[test]
    fn reference_order_and_other_payloads_kept() {
        let mut m = msg();
        m.regmod = Some(CbRegModMsg {
            action: Some(1),
            ..CbRegModMsg::default()
        });
        m.filemod = Some(CbFileModMsg {
            action: Some(2),
            ..CbFileModMsg::default()
        });
        m.module = Some(CbModuleInfoMsg {
            md5: Some(b"aa".to_vec()),
            ..CbModuleInfoMsg::default()
        });
        let e = event(&m, &amqp(1));
        assert_eq!(
            e.event_type,
            Some(EventType::Filemod),
            "filemod precedes regmod"
        );
        assert_eq!(
            e.details_value()["other_payloads"]["regmod"]["action"],
            "createkey"
        );
        assert_eq!(e.details_value()["other_payloads"]["module"]["md5"], "AA");
    }

    #[test]
    fn process_meta_teaches_facts() {
        let mut m = msg();
        m.process_meta = Some(CbProcessMetadataMsg {
            process_pid: Some(10),
            process_create_time: Some(CT),
            parent_pid: Some(11),
            parent_create_time: Some(PARENT_CT),
            commandline: Some(b"x".to_vec()),
            ..CbProcessMetadataMsg::default()
        });
        let e = event(&m, &amqp(2));
        let f = e.processes.last().unwrap();
        assert_eq!(f.guid, process_guid(2, 10, CT));
        assert_eq!(f.parent_guid, Some(process_guid(2, 11, PARENT_CT)));
        assert_eq!(f.cmdline.as_deref(), Some("x"));
    }
}
