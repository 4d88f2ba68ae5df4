//! Database schema and migrations.
//!
//! The schema version lives in `PRAGMA user_version`. `MIGRATIONS[i]` moves a database from version
//! `i` to `i + 1`; opening a database applies the missing ones in one transaction each. A database
//! whose version is newer than this binary knows is refused rather than guessed at.
//!
//! Column meanings are documented for analysts in the README ("Database schema"); keep both in step.
//!
//! Indexes are deliberately few: every index is one more B-tree insert per row on the hot path (the
//! writer must sustain hundreds of thousands of events per second). In particular the idempotency key
//! of `events` is indexed together with the event time, `(timestamp_ms, event_key)`, so one index
//! serves both duplicate detection and time-range queries, and new keys land near the right-hand
//! edge of the B-tree (events arrive roughly in time order) instead of at random pages.

/// Migration scripts, oldest first.
pub const MIGRATIONS: &[&str] = &[V1];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The tables analysts query, in documentation order.
pub const TABLES: [&str; 7] = [
    "events",
    "processes",
    "binaries",
    "notifications",
    "notification_targets",
    "quarantine",
    "sensors",
];

const V1: &str = r#"
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    event_key       BLOB NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    process_guid    TEXT,
    sensor_id       INTEGER,
    hostname        TEXT,
    pid             INTEGER,
    process_path    TEXT,
    process_md5     TEXT,
    process_sha256  TEXT,
    path            TEXT,
    md5             TEXT,
    sha256          TEXT,
    action          TEXT,
    target_guid     TEXT,
    remote_ip       TEXT,
    remote_port     INTEGER,
    local_ip        TEXT,
    local_port      INTEGER,
    protocol        TEXT,
    direction       TEXT,
    domain          TEXT,
    command_line    TEXT,
    username        TEXT,
    details         TEXT NOT NULL,
    received_ms     INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_time_key ON events(timestamp_ms, event_key);
CREATE INDEX events_process ON events(process_guid, timestamp_ms);

CREATE TABLE processes (
    guid            TEXT PRIMARY KEY,
    parent_guid     TEXT,
    sensor_id       INTEGER,
    hostname        TEXT,
    pid             INTEGER,
    path            TEXT,
    cmdline         TEXT,
    md5             TEXT,
    sha256          TEXT,
    username        TEXT,
    start_ms        INTEGER,
    end_ms          INTEGER,
    inferred        INTEGER NOT NULL DEFAULT 0,
    fact_rank       INTEGER NOT NULL DEFAULT 0,
    column_ranks    INTEGER NOT NULL DEFAULT 0,
    first_seen_ms   INTEGER NOT NULL,
    last_event_ms   INTEGER
) WITHOUT ROWID;
CREATE INDEX processes_parent ON processes(parent_guid);
CREATE INDEX processes_host ON processes(hostname, start_ms);

CREATE TABLE binaries (
    md5               TEXT PRIMARY KEY,
    sha256            TEXT,
    size              INTEGER,
    sensor_id         INTEGER,
    hostname          TEXT,
    timestamp_ms      INTEGER NOT NULL,
    file_description  TEXT,
    company_name      TEXT,
    product_name      TEXT,
    file_version      TEXT,
    original_filename TEXT,
    digsig_result     TEXT,
    digsig_publisher  TEXT,
    details           TEXT NOT NULL,
    received_ms       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY,
    notification_key BLOB NOT NULL UNIQUE,
    routing_key      TEXT NOT NULL,
    type             TEXT NOT NULL,
    watchlist_id     INTEGER,
    watchlist_name   TEXT,
    feed_id          INTEGER,
    feed_name        TEXT,
    timestamp_ms     INTEGER,
    process_guid     TEXT,
    segment          TEXT,
    sensor_id        INTEGER,
    hostname         TEXT,
    md5              TEXT,
    json             TEXT NOT NULL,
    received_ms      INTEGER NOT NULL
);
CREATE INDEX notifications_process ON notifications(process_guid);
CREATE INDEX notifications_type ON notifications(type, received_ms);

CREATE TABLE notification_targets (
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    process_guid    TEXT,
    segment         TEXT,
    sensor_id       INTEGER,
    hostname        TEXT,
    md5             TEXT,
    PRIMARY KEY (notification_id, idx)
) WITHOUT ROWID;
CREATE INDEX notification_targets_process ON notification_targets(process_guid);

CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    quarantine_key  BLOB NOT NULL UNIQUE,
    exchange        TEXT NOT NULL,
    routing_key     TEXT NOT NULL,
    content_type    TEXT,
    headers         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    error           TEXT NOT NULL,
    body            BLOB NOT NULL,
    received_ms     INTEGER NOT NULL
);
CREATE INDEX quarantine_time ON quarantine(received_ms);

CREATE TABLE sensors (
    sensor_id       INTEGER PRIMARY KEY,
    hostname        TEXT,
    first_event_ms  INTEGER,
    last_event_ms   INTEGER,
    first_seen_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL
);
"#;
