//! cbtrail: a Carbon Black EDR event-bus consumer that keeps everything the server publishes in
//! SQLite, builds process trees from it and exports a process's events and tree when a watchlist or
//! feed hits it.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`proto`] | prost types generated from `proto/sensor_events.proto` |
//! | [`model`] | the records that flow between stages: events, binaries, notifications, quarantine |
//! | [`decode`] | AMQP delivery → records: JSON notifications, single `CbEventMsg`, zip and bare bundles |
//! | [`capture`] | capture files on disk (JSON, protobuf, zip + pika property dumps, bundles) → deliveries for replay and publish |
//! | [`store`] | schema and migrations, the batch writer, read-only queries |
//!
//! Data flow and the reliability rule (ack only after commit) are described in the README.

pub mod capture;
pub mod decode;
pub mod model;
pub mod store;

/// Types generated from `proto/sensor_events.proto` (proto2, no package).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
