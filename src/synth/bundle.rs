//! Deliveries: single events on `api.events`, zip bundles on `api.rawsensordata`, JSON
//! notifications, with the AMQP properties the server sets.

use super::SyntheticMessage;
use super::clock::{civil, dashed, unix_ms_from_filetime};
use super::encode::EvKind;
use super::host::Host;
use crate::model::{DeliveryMeta, Headers};
use crate::proto::{CbEnvironmentMsg, CbEventMsg};
use prost::Message;
use serde_json::Value;
use std::io::Write;

pub(crate) const EVENTS_EXCHANGE: &str = "api.events";
pub(crate) const RAW_EXCHANGE: &str = "api.rawsensordata";

/// Events per kind in one delivery.
pub(crate) type KindCounts = [u32; EvKind::ALL.len()];

/// `env` as field 13 of a `CbEventMsg`: tag, length, message.
pub(crate) fn env_field(env: &CbEnvironmentMsg) -> Vec<u8> {
    let mut out = Vec::with_capacity(env.encoded_len() + 3);
    prost::encoding::message::encode(13, env, &mut out);
    out
}

/// Whether `msg` has a field numbered above 13 (`env`) set; prost writes fields in number
/// order, so only then does `env` not go last.
fn has_field_after_env(msg: &CbEventMsg) -> bool {
    msg.crossproc.is_some()
        || msg.tamper_alert.is_some()
        || msg.blocked.is_some()
        || msg.emet.is_some()
        || msg.netconn_blocked.is_some()
        || msg.process_meta.is_some()
        || msg.networkv2.is_some()
        || msg.netconn_blockedv2.is_some()
        || msg.internal_use.is_some()
        || msg.scriptexe.is_some()
        || msg.fbscriptexe.is_some()
}

/// A single event as the server publishes it on `api.events`, with `env` filled in. The bytes
/// are exactly prost's encoding of `msg` with `env` set (appending the pre-encoded field when
/// it goes last saves encoding the same host details for every message).
pub(crate) fn single(
    kind: EvKind,
    msg: &mut CbEventMsg,
    env: &CbEnvironmentMsg,
    env_field: &[u8],
) -> SyntheticMessage {
    let body = if msg.env.is_none() && !has_field_after_env(msg) {
        let mut body = Vec::with_capacity(msg.encoded_len() + env_field.len());
        // Encoding into a Vec with enough capacity cannot fail.
        let _ = msg.encode(&mut body);
        body.extend_from_slice(env_field);
        body
    } else {
        msg.env = Some(env.clone());
        msg.encode_to_vec()
    };
    SyntheticMessage {
        meta: DeliveryMeta {
            exchange: EVENTS_EXCHANGE.to_string(),
            routing_key: kind.routing_key().to_string(),
            content_type: Some("application/protobuf".to_string()),
            headers: Headers::new(),
        },
        body,
        at_ms: 0,
    }
}

pub(crate) fn json(routing_key: String, body: &Value) -> SyntheticMessage {
    SyntheticMessage {
        meta: DeliveryMeta {
            exchange: EVENTS_EXCHANGE.to_string(),
            routing_key,
            content_type: Some("application/json".to_string()),
            headers: Headers::new(),
        },
        body: serde_json::to_vec(body).unwrap_or_default(),
        at_ms: 0,
    }
}

/// Records a sensor holds until it uploads them.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    buf: Vec<u8>,
    pub records: u32,
    pub counts: KindCounts,
    /// Bumped at every upload, so a stale upload timer is recognised.
    pub epoch: u32,
}

impl Pending {
    /// Append `msg` as `[u32 LE length][CbEventMsg]` (bundle records carry no `env`).
    pub(crate) fn push(&mut self, kind: EvKind, msg: &CbEventMsg) {
        let len = msg.encoded_len();
        self.buf.reserve(len + 4);
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        // Encoding into a Vec only fails for lack of capacity, which `reserve` ruled out.
        let _ = msg.encode(&mut self.buf);
        self.records += 1;
        self.counts[kind as usize] += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The upload of everything pending, not yet zipped: the records as the body, and the
    /// name of the zip member they go in (`EventLog_45f2535d.1--2017-01-19-04-11-11.log`).
    /// [`zip_body`] finishes it, possibly on another thread.
    pub(crate) fn take(
        &mut self,
        host: &Host,
        session: u32,
        ft: i64,
    ) -> (SyntheticMessage, KindCounts, String) {
        let records = std::mem::take(&mut self.buf);
        let counts = std::mem::take(&mut self.counts);
        self.records = 0;
        self.epoch = self.epoch.wrapping_add(1);
        let ms = unix_ms_from_filetime(ft);
        let member = format!("EventLog_{session:08x}.1--{}.log", dashed(ms));
        let mut headers = Headers::new();
        headers.insert("sensorId".into(), Value::from(host.sensor_id));
        headers.insert("hostId".into(), Value::from(host.host_id()));
        headers.insert("nodeId".into(), Value::from(0));
        headers.insert("sensorHostName".into(), Value::from(host.name.clone()));
        let msg = SyntheticMessage {
            meta: DeliveryMeta {
                exchange: RAW_EXCHANGE.to_string(),
                routing_key: String::new(),
                content_type: Some("application/zip".to_string()),
                headers,
            },
            body: records,
            at_ms: ms,
        };
        (msg, counts, member)
    }
}

/// Zip `msg`'s records into its body as one deflated member. A zip into memory cannot fail
/// short of a bug; should it, the bare bundle goes out the way servers before 5.2.0 P4 sent it
/// (`application/protobuf`) rather than losing the records.
pub(crate) fn zip_body(msg: &mut SyntheticMessage, member: &str) {
    match zip_member(member, &msg.body, msg.at_ms) {
        Ok(zip) => msg.body = zip,
        Err(_) => msg.meta.content_type = Some("application/protobuf".to_string()),
    }
}

/// Zip `records` as member `member`: what [`zip_body`] does, for a worker thread.
pub(crate) fn zip_records(member: &str, records: &[u8], ms: i64) -> Option<Vec<u8>> {
    zip_member(member, records, ms).ok()
}

fn zip_member(name: &str, data: &[u8], ms: i64) -> zip::result::ZipResult<Vec<u8>> {
    let c = civil(ms);
    let modified = zip::DateTime::from_date_and_time(
        c.year.clamp(1980, 2107) as u16,
        c.month as u8,
        c.day as u8,
        c.hour as u8,
        c.minute as u8,
        c.second as u8,
    )
    .unwrap_or_default();
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        // Fast deflate: sensors favour CPU over ratio, and so must a benchmark driver.
        .compression_level(Some(1))
        .last_modified_time(modified);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(
        data.len() / 3 + 256,
    )));
    w.start_file(name, options)?;
    w.write_all(data)?;
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn appended_env_is_prosts_own_encoding() {
        let env = CbEnvironmentMsg {
            endpoint: Some(crate::proto::CbEndpointEnvironmentMsg {
                sensor_id: Some(7),
                sensor_host_name: Some("WIN-OTEMNUTBS23".into()),
                host_id: Some(0),
            }),
            server: Some(crate::proto::CbServerEnvironmentMsg { node_id: Some(0) }),
        };
        let field = env_field(&env);
        let header = crate::proto::CbHeaderMsg {
            version: 4,
            timestamp: Some(130_921_710_236_713_495),
            ..Default::default()
        };
        for msg in [
            CbEventMsg {
                header: header.clone(),
                regmod: Some(crate::proto::CbRegModMsg::default()),
                ..Default::default()
            },
            CbEventMsg {
                header,
                crossproc: Some(crate::proto::CbCrossProcessMsg::default()),
                ..Default::default()
            },
        ] {
            let mut expected = msg.clone();
            expected.env = Some(env.clone());
            let mut m = msg;
            let single = single(EvKind::Regmod, &mut m, &env, &field);
            assert_eq!(single.body, expected.encode_to_vec());
        }
    }

    #[test]
    fn zip_member_round_trips() {
        let data = b"\x03\x00\x00\x00abc".repeat(50);
        let z = zip_member(
            "EventLog_00000001.1--2024-03-04-08-00-00.log",
            &data,
            1_709_539_200_000,
        )
        .unwrap();
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
        assert_eq!(a.len(), 1);
        let mut f = a.by_index(0).unwrap();
        assert_eq!(
            f.name().unwrap(),
            "EventLog_00000001.1--2024-03-04-08-00-00.log"
        );
        assert_eq!(f.compression(), zip::CompressionMethod::Deflated);
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }
}
