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
//! | [`store`] | schema and migrations, the batch writer, read-only queries, retention and size |
//! | [`tree`] | process trees from stored rows: ancestors, descendants, siblings, roots, depth, msticpy summary statistics |
//! | [`export`] | one process's lineage and descendants as per-process CSVs (summary spec), `tree.json`, text tree, written atomically |
//! | [`jobs`] | hit → export job (inside the notification's transaction), the job worker thread: settle, coalesce, follow, retry |
//! | [`query`] | command-line verbs `tree`, `ancestry`, `events`, `export`, `stats`, `jobs` (read-only) |
//! | [`capture`] | capture files on disk (JSON, protobuf, zip + pika property dumps, bundles) → deliveries (replay, publish) |
//! | [`pipeline`] | decode thread → writer thread → committed batches, ack after commit |
//! | [`bus`] | RabbitMQ connection, our queue and bindings, the publisher |
//! | [`daemon`] | `cbtrail run`: supervisor, sessions, shutdown |
//! | [`replay`] | `cbtrail replay`: offline ingest through the same pipeline |
//! | [`config`] | settings from TOML and `CBTRAIL_*`, validation, cb.conf credentials |
//! | [`shutdown`] | signals, shutdown flag, systemd notify and watchdog |
//! | [`alloc`] | the allocator's settings (mimalloc's purge delay, no transparent huge pages), applied first thing by the binaries |
//! | [`metrics`] | every Prometheus metric name, described once; typed recording functions |
//! | [`synth`] | seeded generator of realistic CB bus traffic (hosts, process trees, raw events, bundles, hits) for demos and benchmarks |
//!
//! Data flow and the reliability rule (ack only after commit) are described in the README.

pub mod alloc;
pub mod bus;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod export;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod query;
pub mod replay;
pub mod shutdown;
pub mod store;
pub mod synth;
pub mod tree;

/// Types generated from `proto/sensor_events.proto` (proto2, no package).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
