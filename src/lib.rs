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
//! | [`store`] | schema and migrations, the batch writer, read-only queries |
//! | [`capture`] | capture files on disk → deliveries (replay, publish) |
//! | [`pipeline`] | decode thread → writer thread → committed batches, ack after commit |
//! | [`bus`] | RabbitMQ connection, our queue and bindings, the publisher |
//! | [`daemon`] | `cbtrail run`: supervisor, sessions, shutdown |
//! | [`replay`] | `cbtrail replay`: offline ingest through the same pipeline |
//! | [`config`] | settings from TOML and `CBTRAIL_*`, validation, cb.conf credentials |
//! | [`shutdown`] | signals, shutdown flag, systemd notify and watchdog |
//! | [`metrics`] | every metric name, described once |
//! | [`synth`] | seeded generator of realistic CB bus traffic (process trees, raw events, hits) |
//!
//! Data flow and the reliability rule (ack only after commit) are described in the README.

pub mod bus;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod replay;
pub mod shutdown;
pub mod store;
pub mod synth;

/// Types generated from `proto/sensor_events.proto` (proto2, no package).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
