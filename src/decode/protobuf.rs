//! One serialized `CbEventMsg` → one [`Record`] (an [`Event`], or a [`Binary`] for module info).
//!
//! The message is classified by which payload sub-message is set, in the reference consumer's order
//! (`docs/cb-bus.md` §2), never by routing key. Typed [`Event`] fields carry what analysts filter and
//! join on; `details` carries every decoded payload field under the reference forwarder's 3.8.x key
//! names where it has one (without its bugs), else the proto field name in snake case.
//!
//! Two wire-level facts prost cannot give us are found by [`scan_top_level`]: whether the required
//! `header` (field 1) is present (prost fills in a default), and where the `env` field (13) sits, so
//! the record key can be computed over the message *without* env. That makes the same event arriving
//! via `api.events` (env set by the server) and via `api.rawsensordata` (no env) one row.

use std::ops::Range;

use prost::Message;
use serde_json::{Map, Value};

use super::guid::{
    filetime_to_start_ms, filetime_to_unix_ms, guid_from_parts, hash_hex, ipv4_from_sensor,
    ipv6_from_sensor, port_from_sensor, text_hash_upper,
};
use crate::model::{Binary, Event, EventType, FactRank, Headers, ProcessFacts, Record, record_key};
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

/// Decode one `CbEventMsg`. `Err` carries a text saying what failed (the caller quarantines it).
pub(crate) fn decode_message(bytes: &[u8], fallback: &HeaderEnv) -> Result<Record, String> {
    let scan = scan_top_level(bytes).map_err(|e| format!("malformed protobuf: {e}"))?;
    if !scan.has_header {
        return Err("CbEventMsg lacks its required header (field 1)".to_owned());
    }
    let msg = CbEventMsg::decode(bytes).map_err(|e| format!("CbEventMsg decode failed: {e}"))?;

    let endpoint = msg.env.as_ref().and_then(|e| e.endpoint.as_ref());
    let sensor_id = endpoint
        .and_then(|e| e.sensor_id)
        .map(i64::from)
        .or(fallback.sensor_id);
    let hostname = endpoint
        .and_then(|e| e.sensor_host_name.as_deref())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| fallback.hostname.clone());
    let host_id = endpoint.and_then(|e| e.host_id).or(fallback.host_id);
    let node_id = msg
        .env
        .as_ref()
        .and_then(|e| e.server.as_ref())
        .and_then(|s| s.node_id)
        .map(i64::from)
        .or(fallback.node_id);

    let sensor_text = sensor_id.map(|s| s.to_string()).unwrap_or_default();
    let key = record_key(&[sensor_text.as_bytes(), &without_env(bytes, &scan.env)]);

    let ctx = Ctx {
        msg: &msg,
        sensor_id,
        hostname: hostname.as_deref(),
        timestamp_ms: filetime_to_unix_ms(msg.header.timestamp.unwrap_or(0)),
    };

    let mut payloads = payloads(&msg);
    let primary = payloads.next();
    let extras: Vec<Payload<'_>> = payloads.collect();

    if let Some(Payload::Module(m)) = primary {
        let mut b = binary(&ctx, m)?;
        b.key = key;
        if let Value::Object(d) = &mut b.details {
            add_extras(d, &ctx, &extras);
            env_details(d, host_id, node_id);
        }
        return Ok(Record::Binary(Box::new(b)));
    }

    let mut ev = Event {
        key,
        timestamp_ms: ctx.timestamp_ms,
        sensor_id,
        hostname: hostname.clone(),
        ..Event::default()
    };
    let h = &msg.header;
    ev.process_guid = ctx.own_guid();
    ev.pid = h.process_pid.map(i64::from);
    ev.process_path = nonempty(h.process_path.as_deref())
        .map(str::to_owned)
        .or_else(|| lookup_string(&msg.strings, h.process_filepath_string_guid));
    ev.process_md5 = hash_hex(h.process_md5.as_deref());
    ev.process_sha256 = hash_hex(h.process_sha256.as_deref());

    let mut d = Map::new();
    match primary {
        Some(p) => fill(&mut ev, &mut d, &ctx, p),
        None => ev.event_type = Some(EventType::HeaderOnly),
    }
    if let Some(fork) = h.fork_pid {
        put(&mut d, "fork_pid", fork);
    }
    add_extras(&mut d, &ctx, &extras);
    env_details(&mut d, host_id, node_id);
    ev.details = Value::Object(d);

    // Every event with a process GUID teaches what its header says about that process; procstart
    // and procend already emitted a higher-ranked fact carrying the same fields.
    if let Some(guid) = &ev.process_guid
        && !matches!(
            ev.event_type,
            Some(EventType::Procstart | EventType::Procend)
        )
    {
        let own = ProcessFacts {
            guid: guid.clone(),
            rank: Some(FactRank::Observed),
            sensor_id,
            hostname: hostname.clone(),
            pid: ev.pid,
            path: ev.process_path.clone(),
            md5: ev.process_md5.clone(),
            sha256: ev.process_sha256.clone(),
            start_ms: filetime_to_start_ms(h.process_create_time),
            ..ProcessFacts::default()
        };
        ev.processes.insert(0, own);
    }
    Ok(Record::Event(Box::new(ev)))
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
fn add_extras(d: &mut Map<String, Value>, ctx: &Ctx<'_>, extras: &[Payload<'_>]) {
    if extras.is_empty() {
        return;
    }
    let mut others = Map::new();
    for p in extras {
        let details = match p {
            Payload::Module(m) => module_details(m),
            p => {
                let mut scratch = Event::default();
                let mut sd = Map::new();
                fill(&mut scratch, &mut sd, ctx, *p);
                sd
            }
        };
        others.insert(p.field_name().to_owned(), Value::Object(details));
    }
    d.insert("other_payloads".to_owned(), Value::Object(others));
}

fn env_details(d: &mut Map<String, Value>, host_id: Option<i64>, node_id: Option<i64>) {
    put_opt(d, "host_id", host_id);
    put_opt(d, "node_id", node_id);
}

/// Render one payload into the event's typed fields, `details` and process facts.
fn fill(ev: &mut Event, d: &mut Map<String, Value>, ctx: &Ctx<'_>, p: Payload<'_>) {
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
            put_opt(d, "script_sha256", ev.sha256.clone());
        }
        Payload::Fbscriptexe(m) => {
            ev.event_type = Some(EventType::Fbscriptexe);
            ev.sha256 = m
                .sha256
                .as_deref()
                .and_then(|s| text_hash_upper(s.as_bytes()));
            ev.path = nonempty(m.filename.as_deref()).map(str::to_owned);
            put_str(d, "script", m.script.as_deref());
            put_opt(d, "script_sha256", ev.sha256.clone());
            put_str(d, "filename", m.filename.as_deref());
        }
        Payload::Tamper(m) => {
            ev.event_type = Some(EventType::Tamper);
            ev.action = m.r#type.map(tamper_type_name);
            put_opt(d, "tamper_type", ev.action.clone());
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
            put_opt(d, "file_written_md5", ev.md5.clone());
            put_opt(d, "file_written_sha256", ev.sha256.clone());
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
            put_opt(d, "loaded_module_md5", ev.md5.clone());
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

fn process(ev: &mut Event, d: &mut Map<String, Value>, ctx: &Ctx<'_>, m: &CbProcessMsg) {
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
    let parent_guid = ctx.guid(m.parent_pid, m.parent_create_time);
    let parent_md5 = hash_hex(m.parent_md5.as_deref());
    let parent_sha256 = hash_hex(m.parent_sha256.as_deref());
    let parent_path = nonempty(m.parent_path.as_deref()).map(str::to_owned);

    put_opt(d, "created", m.created);
    put_opt(d, "path", ev.path.clone());
    put_opt(d, "md5", ev.md5.clone());
    put_opt(d, "sha256", ev.sha256.clone());
    put_opt(d, "command_line", ev.command_line.clone());
    put_opt(d, "pid", m.pid);
    put_opt(d, "parent_pid", m.parent_pid);
    put_opt(d, "parent_guid", parent_guid.clone());
    put_opt(d, "parent_guid_legacy", m.parent_guid);
    // The reference renders parent_create_time in Unix seconds; keep that meaning for the key.
    put_opt(
        d,
        "parent_create_time",
        m.parent_create_time.map(|t| filetime_to_unix_ms(t) / 1000),
    );
    put_opt(d, "parent_path", parent_path.clone());
    put_opt(d, "parent_md5", parent_md5.clone());
    put_opt(d, "parent_sha256", parent_sha256.clone());
    put_opt(d, "username", ev.username.clone());
    put_str(d, "uid", m.uid.as_deref());
    put_opt(d, "have_seen_before", m.have_seen_before);
    put_opt(d, "deprecated", m.deprecated);
    put_opt(d, "creationobserved", m.creationobserved);
    put_opt(d, "expect_followon_w_md5", m.expect_followon_w_md5);
    put_opt(d, "filtering_known_dlls", m.b_filtering_known_dlls);
    put_opt(d, "actions_are_from_gpo", m.actions_are_from_gpo);
    put_opt(d, "logon_type", m.logon_type);
    if !m.actions.is_empty() {
        d.insert("actions".to_owned(), emet_actions(&m.actions));
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
        ev.processes.push(f);
    }
    if let Some(pg) = parent_guid {
        let mut f = ctx.facts(pg, FactRank::ParentReference);
        f.pid = m.parent_pid.map(i64::from);
        f.path = parent_path;
        f.md5 = parent_md5;
        f.sha256 = parent_sha256;
        f.start_ms = filetime_to_start_ms(m.parent_create_time);
        ev.processes.push(f);
    }
}

fn modload(ev: &mut Event, d: &mut Map<String, Value>, ctx: &Ctx<'_>, m: &CbModuleLoadMsg) {
    ev.event_type = Some(EventType::Modload);
    ev.path = ctx
        .filepath()
        .or_else(|| lookup_string(&ctx.msg.strings, m.handlepath_string_guid));
    // The module's own hashes only: the reference's fallback to the process hashes would
    // attribute the process image's md5 to an arbitrary DLL.
    ev.md5 = hash_hex(m.md5hash.as_deref());
    ev.sha256 = hash_hex(m.sha256hash.as_deref());
    put_opt(d, "path", ev.path.clone());
    put_opt(d, "md5", ev.md5.clone());
    put_opt(d, "sha256", ev.sha256.clone());
    put_opt(d, "guid", m.guid);
    put_opt(d, "scanid", m.scanid);
    put_opt(d, "is_process_base_module", m.is_process_base_module);
    put_opt(d, "image_base", m.image_base);
    put_opt(d, "image_size", m.image_size);
}

fn filemod(ev: &mut Event, d: &mut Map<String, Value>, ctx: &Ctx<'_>, m: &CbFileModMsg) {
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
    put_opt(d, "path", ev.path.clone());
    put_opt(d, "action", ev.action.clone());
    put_opt(d, "action_type", m.action);
    put_opt(d, "file_type", m.r#type);
    put_opt(d, "filetype_name", m.r#type.map(file_type_name));
    put_opt(d, "file_md5", ev.md5.clone());
    put_opt(d, "file_sha256", ev.sha256.clone());
    put_opt(d, "tamper", m.tamper);
    put_opt(d, "tamper_sent", m.tamper_sent);
    put_opt(d, "have_seen_before", m.have_seen_before);
    put_opt(d, "guid", m.guid);
}

fn regmod(ev: &mut Event, d: &mut Map<String, Value>, m: &CbRegModMsg) {
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
    put_opt(d, "path", ev.path.clone());
    put_opt(d, "action", ev.action.clone());
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

fn netconn_v1(ev: &mut Event, d: &mut Map<String, Value>, n: &NetV1<'_>) {
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
    put_opt(d, "direction", ev.direction.clone());
    put_opt(d, "domain", ev.domain.clone());
    put_opt(d, "remote_ip", n.remote_ip.map(ipv4_from_sensor));
    put_opt(d, "remote_port", n.remote_port.map(port_from_sensor));
    put_opt(d, "local_ip", ev.local_ip.clone());
    put_opt(d, "local_port", ev.local_port);
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

fn netconn_v2(ev: &mut Event, d: &mut Map<String, Value>, n: &NetV2<'_>) {
    ev.remote_ip = n.remote_ip.map(ip_addr);
    ev.remote_port = n.remote_port.map(|p| i64::from(port_from_sensor(p)));
    ev.local_ip = n.local_ip.map(ip_addr);
    ev.local_port = n.local_port.map(|p| i64::from(port_from_sensor(p)));
    ev.protocol = n.protocol.map(protocol_name);
    ev.direction = Some(direction(n.outbound));
    ev.domain = text_opt(n.netpath);

    // Lower-case `protocol` (the reference emits `Protocol` for v2 by accident).
    put_opt(d, "protocol", n.protocol);
    put_opt(d, "domain", ev.domain.clone());
    put_opt(d, "direction", ev.direction.clone());
    put_opt(d, "local_ip", ev.local_ip.clone());
    put_opt(d, "local_port", ev.local_port);
    put_opt(d, "remote_ip", ev.remote_ip.clone());
    put_opt(d, "remote_port", ev.remote_port);
    put_opt(d, "proxy", n.proxy);
    put_opt(d, "proxy_ip", n.proxy_ip.map(ip_addr));
    put_opt(d, "proxy_port", n.proxy_port.map(port_from_sensor));
    put_str(d, "proxy_domain", n.proxy_netpath);
    put_str(d, "ja3", n.ja3);
    put_str(d, "ja3s", n.ja3s);
}

fn childproc(ev: &mut Event, d: &mut Map<String, Value>, ctx: &Ctx<'_>, m: &CbChildProcessMsg) {
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
    put_opt(d, "path", ev.path.clone());
    put_opt(d, "md5", ev.md5.clone());
    put_opt(d, "sha256", ev.sha256.clone());
    put_opt(d, "child_pid", m.pid);
    put_opt(d, "child_create_time", m.create_time);
    put_opt(d, "child_process_guid", child_guid.clone());
    put_opt(d, "parent_guid", ev.process_guid.clone());
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
    put_opt(d, "childproc_commandline", ev.command_line.clone());
    put_opt(d, "childproc_username", ev.username.clone());
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
        ev.processes.push(f);
    }
}

fn crossproc(ev: &mut Event, d: &mut Map<String, Value>, ctx: &Ctx<'_>, m: &CbCrossProcessMsg) {
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
        let mut rt = Map::new();
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
        d.insert("remotethread".to_owned(), Value::Object(rt));
    }
    ev.action = kind.map(str::to_owned);
    put_opt(d, "cross_process_type", ev.action.clone());
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
    put_opt(d, "target_path", ev.path.clone());
    put_opt(d, "target_md5", ev.md5.clone());
    put_opt(d, "target_sha256", ev.sha256.clone());
    put_opt(d, "target_process_guid", guid.clone());

    if let Some(g) = guid {
        let mut f = ctx.facts(g, FactRank::ParentReference);
        f.pid = t.pid.map(i64::from);
        f.path = ev.path.clone();
        f.md5 = ev.md5.clone();
        f.sha256 = ev.sha256.clone();
        f.start_ms = filetime_to_start_ms(t.create_time.map(|c| c as i64));
        ev.processes.push(f);
    }
}

fn emet(ev: &mut Event, d: &mut Map<String, Value>, m: &CbEmetMitigationMsg) {
    ev.event_type = Some(EventType::Emet);
    ev.action = m
        .action
        .as_ref()
        .and_then(|a| a.mitigation_type)
        .map(mitigation_name);
    put_str(d, "log_message", m.action_text.as_deref());
    put_opt(d, "mitigation", ev.action.clone());
    put_opt(d, "blocked", m.blocked);
    put_opt(d, "log_id", m.emet_id);
    put_opt(d, "emet_timestamp", m.emet_timstamp);
}

fn blocked(ev: &mut Event, d: &mut Map<String, Value>, ctx: &Ctx<'_>, m: &CbProcessBlockedMsg) {
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

    put_opt(d, "md5", ev.md5.clone());
    put_opt(d, "path", ev.path.clone());
    // The reference names the blocked process `process_guid`/`pid`/`process_create_time`; here
    // those would be confused with the acting (header) process, so the target_* names of
    // crossproc are used.
    put_opt(d, "target_process_guid", guid.clone());
    put_opt(d, "target_pid", m.blocked_pid);
    put_opt(d, "target_create_time", m.blocked_proc_create_time);
    put_opt(d, "command_line", ev.command_line.clone());
    put_str(d, "uid", m.blocked_uid.as_deref());
    put_opt(d, "username", ev.username.clone());
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
    put_opt(d, "blocked_result", ev.action.clone());
    put_opt(d, "blocked_error", m.block_error);

    if let Some(g) = guid {
        let mut f = ctx.facts(g, FactRank::ParentReference);
        f.pid = m.blocked_pid.map(i64::from);
        f.path = ev.path.clone();
        f.md5 = ev.md5.clone();
        f.cmdline = ev.command_line.clone();
        f.username = ev.username.clone();
        f.start_ms = filetime_to_start_ms(m.blocked_proc_create_time.map(|t| t as i64));
        ev.processes.push(f);
    }
}

fn process_meta(
    ev: &mut Event,
    d: &mut Map<String, Value>,
    ctx: &Ctx<'_>,
    m: &CbProcessMetadataMsg,
) {
    ev.event_type = Some(EventType::ProcessMeta);
    let guid = ctx.guid(m.process_pid, m.process_create_time);
    let parent_guid = ctx.guid(m.parent_pid, m.parent_create_time);
    let md5 = hash_hex(m.process_md5.as_deref());
    let sha256 = hash_hex(m.process_sha256.as_deref());
    let cmdline = text_opt(m.commandline.as_deref());
    ev.path = nonempty(m.process_path.as_deref()).map(str::to_owned);
    ev.md5 = md5.clone();
    ev.sha256 = sha256.clone();
    ev.command_line = cmdline.clone();
    ev.username = nonempty(m.username.as_deref()).map(str::to_owned);
    ev.target_guid = guid.clone();

    put_opt(d, "meta_process_guid", guid.clone());
    put_opt(d, "process_guid_legacy", m.process_guid);
    put_opt(d, "process_create_time", m.process_create_time);
    put_opt(d, "process_pid", m.process_pid);
    put_opt(d, "process_md5", md5.clone());
    put_opt(d, "process_sha256", sha256.clone());
    put_opt(d, "process_path", ev.path.clone());
    put_str(d, "uid", m.uid.as_deref());
    put_opt(d, "username", ev.username.clone());
    put_opt(d, "command_line", cmdline.clone());
    put_opt(d, "parent_pid", m.parent_pid);
    put_opt(d, "parent_create_time", m.parent_create_time);
    put_opt(d, "parent_guid", parent_guid.clone());
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
        d.insert("actions".to_owned(), emet_actions(&m.actions));
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
        ev.processes.push(f);
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
        details: Value::Object(module_details(m)),
    })
}

fn module_details(m: &CbModuleInfoMsg) -> Map<String, Value> {
    let mut d = Map::new();
    put_opt(&mut d, "md5", m.md5.as_deref().and_then(text_hash_upper));
    put_opt(
        &mut d,
        "sha256",
        m.sha256.as_deref().and_then(text_hash_upper),
    );
    put_opt(&mut d, "size", m.original_module_length);
    let mut sig = Map::new();
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
        d.insert("digsig".to_owned(), Value::Object(sig));
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
        d.insert("icon".to_owned(), Value::String(base64(icon)));
    }
    if let Some(h) = m.image_file_header.as_deref().filter(|b| !b.is_empty()) {
        d.insert("image_file_header".to_owned(), Value::String(base64(h)));
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

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// UTF-8 bytes → text (invalid sequences replaced), `None` when absent or empty.
fn text_opt(b: Option<&[u8]>) -> Option<String> {
    b.filter(|b| !b.is_empty())
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn lookup_string(strings: &[CbStringMsg], guid: Option<i64>) -> Option<String> {
    let guid = guid?;
    strings
        .iter()
        .find(|s| s.guid == Some(guid))
        .and_then(|s| text_opt(s.utf8string.as_deref()))
}

fn put(d: &mut Map<String, Value>, key: &str, v: impl Into<Value>) {
    d.insert(key.to_owned(), v.into());
}

fn put_opt<T: Into<Value>>(d: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        d.insert(key.to_owned(), v.into());
    }
}

fn put_str(d: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = nonempty(v) {
        d.insert(key.to_owned(), Value::String(v.to_owned()));
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
