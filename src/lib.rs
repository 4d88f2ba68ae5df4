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
//! | [`tree`] | process trees from stored rows: ancestors, descendants, siblings, roots, depth, msticpy summary statistics |
//! | [`export`] | one process's lineage and descendants as per-process CSVs (summary spec), `tree.json`, text tree, written atomically |
//! | [`jobs`] | hit → export job (inside the notification's transaction), the job worker thread: settle, coalesce, follow, retry |
//! | [`query`] | command-line verbs `tree`, `ancestry`, `events`, `export`, `stats`, `jobs` (read-only) |
//!
//! Data flow and the reliability rule (ack only after commit) are described in the README.

pub mod decode;
pub mod export;
pub mod jobs;
pub mod model;
pub mod query;
pub mod store;
pub mod tree;

/// Types generated from `proto/sensor_events.proto` (proto2, no package).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
