//! Decoding of AMQP deliveries into [`Record`]s.

use crate::model::{DeliveryMeta, Record};

/// Decode one delivery. Never fails and never panics: what cannot be decoded becomes a
/// [`Record::Quarantined`] carrying the bytes and the reason.
pub fn decode(meta: &DeliveryMeta, body: &[u8]) -> Vec<Record> {
    let _ = (meta, body);
    todo!("decode")
}
