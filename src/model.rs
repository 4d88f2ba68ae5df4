//! The typed records that flow from `decode` to `store`.
//!
//! One AMQP delivery decodes into zero or more [`Record`]s; the writer stores a whole batch of them in
//! one transaction. Every record carries a content-derived [`RecordKey`] so that a redelivered message
//! (after a reconnect or a crash before the ack) adds no row: the database refuses the duplicate key.

use serde_json::Value;
use std::collections::BTreeMap;

/// 128-bit content key (xxh3-128) identifying one record independently of when it was received.
pub type RecordKey = [u8; 16];

/// Hash parts into a [`RecordKey`]. Each part is length-prefixed so `("ab","c")` and `("a","bc")`
/// never collide.
pub fn record_key(parts: &[&[u8]]) -> RecordKey {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.digest128().to_le_bytes()
}

/// AMQP headers of a delivery, as JSON values (integers, strings, nested tables) so they can be
/// stored verbatim in quarantine rows and read back by analysts.
pub type Headers = BTreeMap<String, Value>;

/// What decode needs to know about a delivery besides its body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryMeta {
    /// Exchange the message was published to (`api.events`, `api.rawsensordata`).
    pub exchange: String,
    /// Routing key it was published with.
    pub routing_key: String,
    /// AMQP `content_type` property, if any.
    pub content_type: Option<String>,
    /// AMQP headers table (`sensorId`, `hostId`, `nodeId`, `sensorHostName` on raw bundles).
    pub headers: Headers,
}

/// Everything one delivery produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A raw endpoint event (one `CbEventMsg` other than a module info message).
    Event(Box<Event>),
    /// Binary metadata from a `CbModuleInfoMsg`.
    Binary(Box<Binary>),
    /// A JSON notification (watchlist, feed, alert, binary, partition, task error …).
    Notification(Box<Notification>),
    /// Input that could not be decoded, kept with its bytes.
    Quarantined(Box<Quarantined>),
}

/// Kinds of raw event, named by the payload sub-message of `CbEventMsg` that is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Procstart,
    Procend,
    Childproc,
    Modload,
    Filemod,
    Regmod,
    Netconn,
    Crossproc,
    Remotethread,
    Tamper,
    Processblock,
    Emet,
    Scriptexe,
    Fbscriptexe,
    Stats,
    Vtwrite,
    Vtload,
    ProcessMeta,
    NetconnBlocked,
    NetconnBlockedV2,
    InternalUse,
    /// A `CbEventMsg` with only a header (no payload sub-message). Stored, never dropped.
    HeaderOnly,
}

impl EventType {
    /// Every variant, in declaration order, so `ALL[t as usize] == t` (counting by type in an
    /// array; a test checks it).
    pub const ALL: [EventType; 22] = [
        EventType::Procstart,
        EventType::Procend,
        EventType::Childproc,
        EventType::Modload,
        EventType::Filemod,
        EventType::Regmod,
        EventType::Netconn,
        EventType::Crossproc,
        EventType::Remotethread,
        EventType::Tamper,
        EventType::Processblock,
        EventType::Emet,
        EventType::Scriptexe,
        EventType::Fbscriptexe,
        EventType::Stats,
        EventType::Vtwrite,
        EventType::Vtload,
        EventType::ProcessMeta,
        EventType::NetconnBlocked,
        EventType::NetconnBlockedV2,
        EventType::InternalUse,
        EventType::HeaderOnly,
    ];

    /// The `event_type` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Procstart => "procstart",
            EventType::Procend => "procend",
            EventType::Childproc => "childproc",
            EventType::Modload => "modload",
            EventType::Filemod => "filemod",
            EventType::Regmod => "regmod",
            EventType::Netconn => "netconn",
            EventType::Crossproc => "crossproc",
            EventType::Remotethread => "remotethread",
            EventType::Tamper => "tamper",
            EventType::Processblock => "processblock",
            EventType::Emet => "emet",
            EventType::Scriptexe => "scriptexe",
            EventType::Fbscriptexe => "fbscriptexe",
            EventType::Stats => "stats",
            EventType::Vtwrite => "vtwrite",
            EventType::Vtload => "vtload",
            EventType::ProcessMeta => "processmeta",
            EventType::NetconnBlocked => "netconnblocked",
            EventType::NetconnBlockedV2 => "netconnblockedv2",
            EventType::InternalUse => "internaluse",
            EventType::HeaderOnly => "header",
        }
    }

    /// Parse an `event_type` column value back.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded raw endpoint event.
///
/// Typed fields are the ones analysts filter and join on; `details` holds every other decoded field
/// of the payload (names as in the reference forwarder's JSON where it has one) so nothing is lost.
/// A field a typed field of the same name holds is not repeated there.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub key: RecordKey,
    pub event_type: Option<EventType>,
    /// Event time, UTC milliseconds since the Unix epoch (0 when the header has none).
    pub timestamp_ms: i64,
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    /// Bare 36-character process GUID of the acting process (or the legacy decimal id).
    pub process_guid: Option<String>,
    pub pid: Option<i64>,
    pub process_path: Option<String>,
    pub process_md5: Option<String>,
    pub process_sha256: Option<String>,
    /// The object of the event: file, registry key, module, child image, target process path.
    pub path: Option<String>,
    /// Hash of the object of the event (upper-case hex).
    pub md5: Option<String>,
    pub sha256: Option<String>,
    /// Action name (filemod create/write/…, regmod createkey/…, childproc start/end …).
    pub action: Option<String>,
    /// GUID of the other process: child (childproc), target (crossproc/remotethread), blocked.
    pub target_guid: Option<String>,
    pub remote_ip: Option<String>,
    pub remote_port: Option<i64>,
    pub local_ip: Option<String>,
    pub local_port: Option<i64>,
    /// `tcp` / `udp` / the protocol number as text.
    pub protocol: Option<String>,
    /// `outbound` / `inbound`.
    pub direction: Option<String>,
    /// DNS name of a netconn.
    pub domain: Option<String>,
    pub command_line: Option<String>,
    pub username: Option<String>,
    /// The payload's other decoded fields: the text of a JSON object, rendered by decode (off the
    /// writer thread, which stores it as it is). Empty stands for `{}`.
    pub details: String,
    /// What this event teaches about processes (its own, its parent, its child).
    pub processes: Vec<ProcessFacts>,
    /// Which events decode already found to share this one's acting-process columns.
    pub segment_tag: SegmentTag,
}

/// Marks events whose acting-process columns (`process_guid`, `sensor_id`, `hostname`, `pid`,
/// `process_path`, `process_md5`, `process_sha256`) decode found equal: two events with the same
/// non-zero tag have equal columns; different tags, or zero, tell nothing.
///
/// The writer groups a process's events into segments by those columns. Comparing their strings
/// there cost a twentieth of the writer's time, nearly all of it cache misses: the strings were
/// written on the decode thread's core. Decode compares them anyway (once per delivery and
/// process, see `decode::protobuf`), so it hands on the answer.
///
/// The tag is not part of the event's content: any two tags compare equal, so events decoded
/// twice from the same bytes are still equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentTag(u64);

impl SegmentTag {
    /// A tag no other event has yet.
    pub fn fresh() -> SegmentTag {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SegmentTag(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// Do both events carry the same tag, and so the same acting-process columns?
    pub fn same_columns(self, other: SegmentTag) -> bool {
        self.0 != 0 && self.0 == other.0
    }
}

impl PartialEq for SegmentTag {
    fn eq(&self, _: &SegmentTag) -> bool {
        true
    }
}

impl Event {
    /// `details` parsed (tests, tools); `{}` when empty.
    pub fn details_value(&self) -> Value {
        parse_details(&self.details)
    }
}

/// A `details` text as a JSON value; text that is not JSON (never produced by decode) as a string.
fn parse_details(text: &str) -> Value {
    if text.is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// How much a [`ProcessFacts`] source can be trusted; higher ranks overwrite lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FactRank {
    /// Only known because a child named it as parent: the row is `inferred`.
    ParentReference = 0,
    /// From the header of some event of the process, or from a notification.
    Observed = 1,
    /// From the parent's childproc event.
    Childproc = 2,
    /// From the process's own procstart/procend.
    Procstart = 3,
}

/// Facts about one process learned from one record. The store merges them into `processes`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessFacts {
    /// Bare 36-character GUID.
    pub guid: String,
    pub rank: Option<FactRank>,
    pub parent_guid: Option<String>,
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    pub pid: Option<i64>,
    pub path: Option<String>,
    pub cmdline: Option<String>,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    pub username: Option<String>,
    /// Process start, UTC ms (from the GUID's create time or procstart).
    pub start_ms: Option<i64>,
    /// Process end, UTC ms (procend, childproc end).
    pub end_ms: Option<i64>,
}

/// Binary metadata (`CbModuleInfoMsg`), one row per md5.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Binary {
    pub key: RecordKey,
    /// Upper-case hex md5.
    pub md5: String,
    pub sha256: Option<String>,
    pub size: Option<i64>,
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    pub timestamp_ms: i64,
    pub file_description: Option<String>,
    pub company_name: Option<String>,
    pub product_name: Option<String>,
    pub file_version: Option<String>,
    pub original_filename: Option<String>,
    pub digsig_result: Option<String>,
    pub digsig_publisher: Option<String>,
    /// Every decoded field: the text of a JSON object (empty stands for `{}`).
    pub details: String,
}

impl Binary {
    /// `details` parsed (tests, tools); `{}` when empty.
    pub fn details_value(&self) -> Value {
        parse_details(&self.details)
    }
}

/// The process a notification is about (one per `docs` element, or the top level).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotificationTarget {
    /// Bare 36-character process GUID.
    pub process_guid: Option<String>,
    /// Segment suffix of `unique_id`/`process_id`, as hex text (`00000001`).
    pub segment: Option<String>,
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    pub md5: Option<String>,
}

/// A JSON notification from `api.events`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notification {
    pub key: RecordKey,
    pub routing_key: String,
    /// Type with embedded ids removed: `feed.24.ingress.hit.process` → `feed.ingress.hit.process`,
    /// `watchlist.12.hit.process` → `watchlist.hit.process`.
    pub kind: String,
    pub watchlist_id: Option<i64>,
    pub watchlist_name: Option<String>,
    pub feed_id: Option<i64>,
    pub feed_name: Option<String>,
    /// Event time of the notification (UTC ms), when it carries one.
    pub timestamp_ms: Option<i64>,
    /// First target's fields, for quick filtering.
    pub process_guid: Option<String>,
    pub segment: Option<String>,
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    pub md5: Option<String>,
    /// Every process or binary the notification names (one per `docs` element).
    pub targets: Vec<NotificationTarget>,
    /// The whole JSON body as received.
    pub json: String,
    /// Process facts learned from the notification's docs.
    pub processes: Vec<ProcessFacts>,
}

impl Notification {
    /// A watchlist, feed or alert hit on a process: such a notification triggers an export.
    pub fn is_process_hit(&self) -> bool {
        let k = self.kind.as_str();
        (k.starts_with("watchlist.") || k.starts_with("feed.") || k.starts_with("alert."))
            && k.contains("hit")
            && k.ends_with(".process")
    }
}

/// Why an input was quarantined (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuarantineReason {
    UnknownContentType,
    BadJson,
    BadProtobuf,
    BadZip,
    BadFraming,
    /// Decoded, but the database refused the records (kept whole so nothing is lost).
    StoreRejected,
}

impl QuarantineReason {
    pub const ALL: [QuarantineReason; 6] = [
        QuarantineReason::UnknownContentType,
        QuarantineReason::BadJson,
        QuarantineReason::BadProtobuf,
        QuarantineReason::BadZip,
        QuarantineReason::BadFraming,
        QuarantineReason::StoreRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::UnknownContentType => "unknown_content_type",
            QuarantineReason::BadJson => "bad_json",
            QuarantineReason::BadProtobuf => "bad_protobuf",
            QuarantineReason::BadZip => "bad_zip",
            QuarantineReason::BadFraming => "bad_framing",
            QuarantineReason::StoreRejected => "store_rejected",
        }
    }
}

/// Bytes that could not be decoded, with where they came from and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub key: RecordKey,
    pub exchange: String,
    pub routing_key: String,
    pub content_type: Option<String>,
    pub headers: Headers,
    pub reason: QuarantineReason,
    /// Full error text (which member, which offset, what failed).
    pub error: String,
    /// The bytes that failed: the whole delivery body, or the one bundle record that failed.
    pub body: Vec<u8>,
}

impl Quarantined {
    /// Quarantine `body` from the delivery described by `meta`.
    pub fn new(
        meta: &DeliveryMeta,
        reason: QuarantineReason,
        error: String,
        body: Vec<u8>,
    ) -> Quarantined {
        let key = record_key(&[
            b"quarantine",
            meta.exchange.as_bytes(),
            meta.routing_key.as_bytes(),
            meta.content_type.as_deref().unwrap_or("").as_bytes(),
            error.as_bytes(),
            &body,
        ]);
        Quarantined {
            key,
            exchange: meta.exchange.clone(),
            routing_key: meta.routing_key.clone(),
            content_type: meta.content_type.clone(),
            headers: meta.headers.clone(),
            reason,
            error,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_listed_at_its_discriminant() {
        for (i, t) in EventType::ALL.into_iter().enumerate() {
            assert_eq!(t as usize, i, "{t}");
        }
    }
}
