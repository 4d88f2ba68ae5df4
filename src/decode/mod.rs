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
