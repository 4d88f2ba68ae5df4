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
pub const MIGRATIONS: &[&str] = &[V1, V2, V3];

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

/// V2: hit-triggered export jobs (`crate::jobs`) and the netconn ⨝ process view.
///
/// - `export_jobs`: one row per exported process and coalesce window. `state` moves
///   pending → running → done | failed; a done job goes back to pending when a new trigger or new
///   events of its processes arrive before `follow_until_ms`. `notification_id` is the latest
///   trigger (all of them are in `export_job_triggers`), `watermark` the highest `events.id` the
///   last export saw, `generation` counts changes so a change during an export is not lost,
///   `attempts` counts tries since the last success.
/// - `netconn_view`: every network connection event with the process that made it (the Sysmon
///   ProcessCreate ⨝ NetworkConnect join, by GUID). Partial indexes cover only network rows, so
///   ingest of other event types pays nothing for them.
const V2: &str = r#"
CREATE TABLE export_jobs (
    id               INTEGER PRIMARY KEY,
    notification_id  INTEGER,
    process_guid     TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'done', 'failed')),
    created_ms       INTEGER NOT NULL,
    due_ms           INTEGER NOT NULL,
    started_ms       INTEGER,
    finished_ms      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    output_path      TEXT,
    error            TEXT,
    follow_until_ms  INTEGER NOT NULL,
    watermark        INTEGER NOT NULL DEFAULT 0,
    triggers         INTEGER NOT NULL DEFAULT 1,
    last_trigger_ms  INTEGER NOT NULL,
    exports          INTEGER NOT NULL DEFAULT 0,
    generation       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX export_jobs_state ON export_jobs(state, due_ms);
CREATE INDEX export_jobs_process ON export_jobs(process_guid, created_ms);

CREATE TABLE export_job_triggers (
    job_id           INTEGER NOT NULL REFERENCES export_jobs(id) ON DELETE CASCADE,
    notification_id  INTEGER NOT NULL,
    received_ms      INTEGER NOT NULL,
    PRIMARY KEY (job_id, notification_id)
) WITHOUT ROWID;

CREATE INDEX events_netconn_time ON events(timestamp_ms)
    WHERE event_type IN ('netconn', 'netconnblocked', 'netconnblockedv2');
CREATE INDEX events_netconn_remote ON events(remote_ip, timestamp_ms)
    WHERE event_type IN ('netconn', 'netconnblocked', 'netconnblockedv2');

CREATE VIEW netconn_view AS
SELECT e.id                                   AS event_id,
       e.timestamp_ms                         AS timestamp_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.timestamp_ms / 1000.0, 'unixepoch') AS time_utc,
       e.event_type                           AS event_type,
       e.process_guid                         AS process_guid,
       COALESCE(p.sensor_id, e.sensor_id)     AS sensor_id,
       COALESCE(p.hostname, e.hostname)       AS hostname,
       COALESCE(p.pid, e.pid)                 AS pid,
       COALESCE(p.path, e.process_path)       AS process_path,
       p.cmdline                              AS process_cmdline,
       p.username                             AS process_username,
       COALESCE(p.md5, e.process_md5)         AS process_md5,
       p.parent_guid                          AS parent_guid,
       e.direction                            AS direction,
       e.protocol                             AS protocol,
       e.local_ip                             AS local_ip,
       e.local_port                           AS local_port,
       e.remote_ip                            AS remote_ip,
       e.remote_port                          AS remote_port,
       e.domain                               AS domain
FROM events e
LEFT JOIN processes p ON p.guid = e.process_guid
WHERE e.event_type IN ('netconn', 'netconnblocked', 'netconnblockedv2');
"#;

/// V3: the netconn partial indexes and `netconn_view` test `event_type` with `=`/`OR` instead of
/// `IN (…)`.
///
/// SQLite evaluates a partial index's `WHERE` on every insert into the table, and a constant
/// `IN` list of three or more values is coded as a throw-away B-tree built per statement
/// execution: two such indexes meant two temporary B-trees created and destroyed for every event
/// row, whatever its type (about a fifth of the writer's CPU). The `OR` form is a few
/// comparisons. The view's filter is written the same way, since the planner uses a partial index
/// only when the query's `WHERE` contains the index's own term.
const V3: &str = r#"
DROP VIEW netconn_view;
DROP INDEX events_netconn_time;
DROP INDEX events_netconn_remote;

CREATE INDEX events_netconn_time ON events(timestamp_ms)
    WHERE event_type = 'netconn' OR event_type = 'netconnblocked' OR event_type = 'netconnblockedv2';
CREATE INDEX events_netconn_remote ON events(remote_ip, timestamp_ms)
    WHERE event_type = 'netconn' OR event_type = 'netconnblocked' OR event_type = 'netconnblockedv2';

CREATE VIEW netconn_view AS
SELECT e.id                                   AS event_id,
       e.timestamp_ms                         AS timestamp_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.timestamp_ms / 1000.0, 'unixepoch') AS time_utc,
       e.event_type                           AS event_type,
       e.process_guid                         AS process_guid,
       COALESCE(p.sensor_id, e.sensor_id)     AS sensor_id,
       COALESCE(p.hostname, e.hostname)       AS hostname,
       COALESCE(p.pid, e.pid)                 AS pid,
       COALESCE(p.path, e.process_path)       AS process_path,
       p.cmdline                              AS process_cmdline,
       p.username                             AS process_username,
       COALESCE(p.md5, e.process_md5)         AS process_md5,
       p.parent_guid                          AS parent_guid,
       e.direction                            AS direction,
       e.protocol                             AS protocol,
       e.local_ip                             AS local_ip,
       e.local_port                           AS local_port,
       e.remote_ip                            AS remote_ip,
       e.remote_port                          AS remote_port,
       e.domain                               AS domain
FROM events e
LEFT JOIN processes p ON p.guid = e.process_guid
WHERE e.event_type = 'netconn' OR e.event_type = 'netconnblocked' OR e.event_type = 'netconnblockedv2';
"#;
