//! Deliveries: single events on `api.events`, zip bundles on `api.rawsensordata`, JSON
//! notifications, with the AMQP properties the server sets.

use super::SyntheticMessage;
use super::clock::{civil, dashed, unix_ms_from_filetime};
use super::encode::EvKind;
use super::host::Host;
use crate::model::{DeliveryMeta, Headers};
use crate::proto::CbEventMsg;
use prost::Message;
use serde_json::Value;
use std::io::Write;

pub(crate) const EVENTS_EXCHANGE: &str = "api.events";
pub(crate) const RAW_EXCHANGE: &str = "api.rawsensordata";

/// Events per kind in one delivery.
pub(crate) type KindCounts = [u32; EvKind::ALL.len()];

pub(crate) fn single(kind: EvKind, msg: &CbEventMsg) -> SyntheticMessage {
    SyntheticMessage {
        meta: DeliveryMeta {
            exchange: EVENTS_EXCHANGE.to_string(),
            routing_key: kind.routing_key().to_string(),
            content_type: Some("application/protobuf".to_string()),
            headers: Headers::new(),
        },
        body: msg.encode_to_vec(),
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

    /// The upload of everything pending as the server forwards it: a zip with one deflated
    /// member named like `EventLog_45f2535d.1--2017-01-19-04-11-11.log`.
    pub(crate) fn take(
        &mut self,
        host: &Host,
        session: u32,
        ft: i64,
    ) -> (SyntheticMessage, KindCounts) {
        let records = std::mem::take(&mut self.buf);
        let counts = std::mem::take(&mut self.counts);
        self.records = 0;
        self.epoch = self.epoch.wrapping_add(1);
        let ms = unix_ms_from_filetime(ft);
        let member = format!("EventLog_{session:08x}.1--{}.log", dashed(ms));
        let (body, content_type) = match zip_member(&member, &records, ms) {
            Ok(zip) => (zip, "application/zip"),
            // A zip into memory cannot fail short of a bug; should it, send the bare bundle
            // the way servers before 5.2.0 P4 did rather than lose the records.
            Err(_) => (records, "application/protobuf"),
        };
        let mut headers = Headers::new();
        headers.insert("sensorId".into(), Value::from(host.sensor_id));
        headers.insert("hostId".into(), Value::from(host.host_id()));
        headers.insert("nodeId".into(), Value::from(0));
        headers.insert("sensorHostName".into(), Value::from(host.name.clone()));
        let msg = SyntheticMessage {
            meta: DeliveryMeta {
                exchange: RAW_EXCHANGE.to_string(),
                routing_key: String::new(),
                content_type: Some(content_type.to_string()),
                headers,
            },
            body,
            at_ms: ms,
        };
        (msg, counts)
    }
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
