//! Decoding of AMQP deliveries into [`Record`]s.
//!
//! Dispatch follows the reference consumer (`docs/cb-bus.md` §2–§3): on the content type (compared
//! case-insensitively, parameters such as `; charset=…` ignored), then the exchange.
//!
//! | content type | exchange | decoded as |
//! |---|---|---|
//! | `application/json` | any | one [`Notification`](crate::model::Notification) ([`json`]) |
//! | `application/protobuf` | `api.rawsensordata` | zip of bundles, or a bare bundle ([`bundle`]) |
//! | `application/protobuf` | other | exactly one `CbEventMsg` ([`protobuf`]) |
//! | `application/zip` | any | zip of bundles, falling back to a bare bundle when there is no zip signature |
//! | anything else | — | quarantined (`UnknownContentType`) |
//!
//! [`decode`] never panics and never returns an empty list: every byte of a delivery ends up in an
//! event, binary or notification, or in a [`Quarantined`] record saying what failed where.
//!
//! Record keys are content keys, so a redelivery adds nothing:
//! - events and binaries: `record_key(sensor id as decimal text, the CbEventMsg bytes with every
//!   top-level env field removed)`: the same event from `api.events` (env set by the server) and
//!   from `api.rawsensordata` (no env, sensor named by AMQP headers) is one row;
//! - notifications: `record_key("notification", routing key, body)`.
//!
//! Process facts: each event carries what it teaches about processes (`Event::processes`). The
//! `Observed` facts an event header repeats about its own process are emitted once per delivery
//! per process (again only if they change within the delivery); the store merges facts by GUID,
//! and the records of one delivery are stored together, so this loses nothing and saves most of
//! the per-event allocations on bundles.

pub mod bundle;
pub mod guid;
pub mod json;
pub mod protobuf;

use crate::model::{DeliveryMeta, QuarantineReason, Quarantined, Record};
pub use protobuf::HeaderEnv;

/// Topic exchange carrying JSON notifications and per-event protobuf messages.
pub const EVENTS_EXCHANGE: &str = "api.events";
/// Fanout exchange carrying raw sensor uploads (zip bundles).
pub const RAW_EXCHANGE: &str = "api.rawsensordata";

pub const CONTENT_JSON: &str = "application/json";
pub const CONTENT_PROTOBUF: &str = "application/protobuf";
pub const CONTENT_ZIP: &str = "application/zip";

/// The body formats a content type announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    Json,
    Protobuf,
    Zip,
}

impl ContentKind {
    /// Classify an AMQP `content_type`: case-insensitive, parameters ignored.
    pub fn parse(content_type: Option<&str>) -> Option<ContentKind> {
        let ct = content_type?;
        let essence = ct.split(';').next().unwrap_or(ct).trim();
        if essence.eq_ignore_ascii_case(CONTENT_JSON) {
            Some(ContentKind::Json)
        } else if essence.eq_ignore_ascii_case(CONTENT_PROTOBUF) {
            Some(ContentKind::Protobuf)
        } else if essence.eq_ignore_ascii_case(CONTENT_ZIP) {
            Some(ContentKind::Zip)
        } else {
            None
        }
    }
}

/// Decode one delivery. Never fails and never panics: what cannot be decoded becomes a
/// [`Record::Quarantined`] carrying the bytes and the reason.
pub fn decode(meta: &DeliveryMeta, body: &[u8]) -> Vec<Record> {
    match ContentKind::parse(meta.content_type.as_deref()) {
        Some(ContentKind::Json) => vec![json::decode_notification(meta, body)],
        Some(ContentKind::Protobuf) if meta.exchange != RAW_EXCHANGE => {
            vec![decode_single(meta, body)]
        }
        Some(ContentKind::Protobuf | ContentKind::Zip) => {
            let env = HeaderEnv::from_headers(&meta.headers);
            // Bundles average a few hundred bytes per record.
            let mut out = Vec::with_capacity(body.len() / 256 + 1);
            bundle::decode_raw(meta, body, &env, &mut out);
            out
        }
        None => {
            let error = match &meta.content_type {
                Some(ct) => format!(
                    "unsupported content type {ct:?} on exchange {:?} (routing key {:?})",
                    meta.exchange, meta.routing_key
                ),
                None => format!(
                    "delivery has no content type (exchange {:?}, routing key {:?})",
                    meta.exchange, meta.routing_key
                ),
            };
            vec![Record::Quarantined(Box::new(Quarantined::new(
                meta,
                QuarantineReason::UnknownContentType,
                error,
                body.to_vec(),
            )))]
        }
    }
}

/// `application/protobuf` on `api.events`: the body is exactly one `CbEventMsg`.
fn decode_single(meta: &DeliveryMeta, body: &[u8]) -> Record {
    let env = HeaderEnv::from_headers(&meta.headers);
    match protobuf::decode_message(body, &env) {
        Ok(r) => r,
        Err(e) => Record::Quarantined(Box::new(Quarantined::new(
            meta,
            QuarantineReason::BadProtobuf,
            e,
            body.to_vec(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::model::EventType;
    use crate::proto::{CbEventMsg, CbHeaderMsg};

    fn meta(exchange: &str, ct: Option<&str>) -> DeliveryMeta {
        DeliveryMeta {
            exchange: exchange.to_owned(),
            routing_key: "rk".to_owned(),
            content_type: ct.map(str::to_owned),
            ..DeliveryMeta::default()
        }
    }

    fn one_message() -> Vec<u8> {
        CbEventMsg {
            header: CbHeaderMsg {
                version: 4,
                ..CbHeaderMsg::default()
            },
            ..CbEventMsg::default()
        }
        .encode_to_vec()
    }

    fn only_quarantine(recs: &[Record]) -> &Quarantined {
        assert_eq!(recs.len(), 1, "{recs:?}");
        match &recs[0] {
            Record::Quarantined(q) => q,
            other => panic!("expected a quarantine, got {other:?}"),
        }
    }

    #[test]
    fn content_type_parsing() {
        assert_eq!(
            ContentKind::parse(Some("application/json")),
            Some(ContentKind::Json)
        );
        assert_eq!(
            ContentKind::parse(Some(" Application/JSON ; charset=UTF-8")),
            Some(ContentKind::Json)
        );
        assert_eq!(
            ContentKind::parse(Some("APPLICATION/ZIP")),
            Some(ContentKind::Zip)
        );
        assert_eq!(
            ContentKind::parse(Some("application/protobuf;proto=CbEventMsg")),
            Some(ContentKind::Protobuf)
        );
        assert_eq!(ContentKind::parse(Some("text/plain")), None);
        assert_eq!(ContentKind::parse(Some("")), None);
        assert_eq!(ContentKind::parse(None), None);
    }

    #[test]
    fn single_protobuf_on_api_events() {
        let body = one_message();
        let recs = decode(&meta(EVENTS_EXCHANGE, Some("application/protobuf")), &body);
        assert_eq!(recs.len(), 1);
        let Record::Event(e) = &recs[0] else {
            panic!("{recs:?}")
        };
        assert_eq!(e.event_type, Some(EventType::HeaderOnly));

        // A length-prefixed bundle on api.events is not a single message.
        let mut framed = (body.len() as u32).to_le_bytes().to_vec();
        framed.extend_from_slice(&body);
        let recs = decode(
            &meta(EVENTS_EXCHANGE, Some("application/protobuf")),
            &framed,
        );
        let q = only_quarantine(&recs);
        assert_eq!(q.reason, QuarantineReason::BadProtobuf);
        assert_eq!(q.body, framed);
    }

    #[test]
    fn unknown_or_missing_content_type() {
        for ct in [None, Some("text/plain"), Some("")] {
            let recs = decode(&meta(EVENTS_EXCHANGE, ct), b"payload");
            let q = only_quarantine(&recs);
            assert_eq!(q.reason, QuarantineReason::UnknownContentType);
            assert_eq!(q.body, b"payload");
            assert_eq!(q.routing_key, "rk");
            assert_eq!(q.content_type.as_deref(), ct);
        }
    }

    #[test]
    fn empty_body_never_vanishes() {
        for (exchange, ct) in [
            (EVENTS_EXCHANGE, "application/json"),
            (EVENTS_EXCHANGE, "application/protobuf"),
            (RAW_EXCHANGE, "application/protobuf"),
            (RAW_EXCHANGE, "application/zip"),
            (EVENTS_EXCHANGE, "application/zip"),
        ] {
            let recs = decode(&meta(exchange, Some(ct)), b"");
            let q = only_quarantine(&recs);
            assert!(q.body.is_empty(), "{exchange} {ct}");
        }
    }

    #[test]
    fn json_must_be_an_object() {
        for (body, needle) in [
            (&b"[1,2]"[..], "array"),
            (b"{\"a\":", "not valid JSON"),
            (b"\xff\xfe", "not UTF-8"),
            (b"42", "number"),
            (b"", "not valid JSON"),
        ] {
            let recs = decode(&meta(EVENTS_EXCHANGE, Some("application/json")), body);
            let q = only_quarantine(&recs);
            assert_eq!(q.reason, QuarantineReason::BadJson);
            assert_eq!(q.body, body);
            assert!(q.error.contains(needle), "{needle}: {}", q.error);
        }
    }

    #[test]
    fn notification_fields() {
        let body = br#"{"watchlist_name":"W","docs":[
            {"unique_id":"00000007-0000-0fd4-01d1-209aa22a57ee-00000001","process_md5":"445c3e95c8cb05403aedaec3baaa3a1d",
             "parent_unique_id":"00000007-0000-0fc8-01d1-209aa208f788-00000001","process_pid":4052,"path":"c:\\p.exe",
             "cmdline":"p","username":"u","hostname":"H","parent_pid":"4040"},
            {"unique_id":"00000008-0000-0001-01d1-209aa22a57ee-000000000002","sensor_id":"8"}],
            "event_timestamp":1447698003.24}"#;
        let mut m = meta(EVENTS_EXCHANGE, Some("application/json"));
        m.routing_key = "watchlist.12.hit.process".to_owned();
        let recs = decode(&m, body);
        let Record::Notification(n) = &recs[0] else {
            panic!("{recs:?}")
        };
        assert_eq!(n.kind, "watchlist.hit.process");
        assert!(n.is_process_hit());
        assert_eq!(n.watchlist_id, Some(12));
        assert_eq!(n.watchlist_name.as_deref(), Some("W"));
        assert_eq!(n.timestamp_ms, Some(1447698003240));
        assert_eq!(n.targets.len(), 2);
        assert_eq!(
            n.process_guid.as_deref(),
            Some("00000007-0000-0fd4-01d1-209aa22a57ee")
        );
        assert_eq!(n.segment.as_deref(), Some("00000001"));
        assert_eq!(n.sensor_id, Some(7), "from the GUID when the doc has none");
        assert_eq!(n.md5.as_deref(), Some("445C3E95C8CB05403AEDAEC3BAAA3A1D"));
        assert_eq!(n.targets[1].segment.as_deref(), Some("000000000002"));
        assert_eq!(n.targets[1].sensor_id, Some(8));
        assert_eq!(n.json.as_bytes(), body);
        let own = &n.processes[0];
        assert_eq!(own.rank, Some(crate::model::FactRank::Observed));
        assert_eq!(own.pid, Some(4052));
        assert_eq!(
            own.parent_guid.as_deref(),
            Some("00000007-0000-0fc8-01d1-209aa208f788")
        );
        assert_eq!(own.path.as_deref(), Some("c:\\p.exe"));
        assert_eq!(own.hostname.as_deref(), Some("H"));
        assert_eq!(
            own.start_ms,
            Some(crate::decode::guid::filetime_to_unix_ms(0x01d1209aa22a57ee))
        );
        let parent = &n.processes[1];
        assert_eq!(parent.rank, Some(crate::model::FactRank::ParentReference));
        assert_eq!(parent.pid, Some(4040));

        // Same body under another routing key is another notification; same key, same row.
        let again = decode(&m, body);
        let Record::Notification(n2) = &again[0] else {
            panic!()
        };
        assert_eq!(n.key, n2.key);
        m.routing_key = "watchlist.13.hit.process".to_owned();
        let Record::Notification(n3) = &decode(&m, body)[0] else {
            panic!()
        };
        assert_ne!(n.key, n3.key);
    }

    #[test]
    fn alert_unique_id_is_not_a_process() {
        let body = br#"{"unique_id":"f1c5c90d-bc72-4d64-939b-54b20584c024","process_id":"00000009-0000-0420-01d1-e1d90eaf1d93",
            "segment_id":"1","sensor_id":"9","watchlist_id":"11","md5":"028228c7068de998d9251c82e61d13a4"}"#;
        let mut m = meta(EVENTS_EXCHANGE, Some("application/json"));
        m.routing_key = "alert.watchlist.hit.query.process".to_owned();
        let Record::Notification(n) = &decode(&m, body)[0] else {
            panic!()
        };
        assert_eq!(
            n.process_guid.as_deref(),
            Some("00000009-0000-0420-01d1-e1d90eaf1d93")
        );
        assert_eq!(n.segment.as_deref(), Some("00000001"));
        assert_eq!(n.sensor_id, Some(9));
        assert_eq!(n.watchlist_id, Some(11));
        assert_eq!(n.md5.as_deref(), Some("028228C7068DE998D9251C82E61D13A4"));

        // Outside alerts unique_id is the process.
        m.routing_key = "watchlist.hit.process".to_owned();
        let Record::Notification(n) = &decode(&m, body)[0] else {
            panic!()
        };
        assert_eq!(
            n.process_guid.as_deref(),
            Some("f1c5c90d-bc72-4d64-939b-54b20584c024")
        );
    }

    #[test]
    fn binary_notification_endpoint() {
        let body = br#"{"md5":"2c354fa91ef605007fd11bb89eed2266","watchlist_id":3,
            "docs":[{"md5":"2C354FA91EF605007FD11BB89EED2266","endpoint":["WIN-OTEMNUTBS23|7"]}]}"#;
        let mut m = meta(EVENTS_EXCHANGE, Some("application/json"));
        m.routing_key = "watchlist.3.storage.hit.binary".to_owned();
        let Record::Notification(n) = &decode(&m, body)[0] else {
            panic!()
        };
        assert_eq!(n.kind, "watchlist.storage.hit.binary");
        assert!(!n.is_process_hit());
        assert_eq!(n.watchlist_id, Some(3), "JSON wins over the routing key");
        assert_eq!(n.hostname.as_deref(), Some("WIN-OTEMNUTBS23"));
        assert_eq!(n.sensor_id, Some(7));
        assert_eq!(n.process_guid, None);
        assert!(n.processes.is_empty());
    }
}
