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
//! of an event is kept together with the event time, `(timestamp_ms, event_key)`, so one B-tree
//! serves both duplicate detection and time-range queries, and new keys land near the right-hand
//! edge of the B-tree (events arrive roughly in time order) instead of at random pages. Since [`V5`]
//! that B-tree is the `event_keys` table, which the writer fills in key order, rather than an
//! index that SQLite filled in the order of the rows. What an index costs is mostly the pages it
//! dirties per commit: an index whose new entries land all over the tree (one per active process,
//! say) rewrites a page per entry. That is why events are found by process through their segments
//! ([`V4`]) rather than through a per-event process index.

/// Migration scripts, oldest first.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The tables analysts query, in documentation order. `events` is a view since V4 (see [`V4`]); it
/// reads and is queried like the table it replaced.
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

/// V4: events are stored as `event_rows` grouped into `event_segments`, and `events` becomes a view
/// with exactly the columns the table had.
///
/// A segment is a run of events one batch stored for one acting process: the writer stores a
/// batch's events grouped by process, so a segment's events have consecutive row ids
/// (`first_id`..=`last_id`), and the columns that describe the acting process (GUID, sensor, host,
/// pid, image path and hashes, and the batch's reception time) are stored once per segment instead
/// of once per event. Two things follow:
/// - the per-event `(process_guid, timestamp_ms)` index is gone. Its entries landed on a different
///   B-tree page for every active process, so every commit rewrote most of that index (it cost
///   more than the row itself). Events of a process are found through
///   `event_segments_process (process_guid, first_id)`, one entry per segment, and a row-id range
///   per segment;
/// - rows are about half the size.
///
/// The view joins on both the segment id and the id range, so the planner can go either way:
/// from a process GUID through the segment index to row-id ranges, or from a time range through
/// `events_time_key` to each row's segment by primary key. `INSTEAD OF` triggers keep the view
/// writable like the table was (tools, tests); the daemon writes the two tables directly.
///
/// Existing events move over in id order; consecutive events with the same process columns and
/// reception time share a segment.
const V4: &str = r#"
CREATE TABLE event_segments (
    id              INTEGER PRIMARY KEY,
    first_id        INTEGER NOT NULL,
    last_id         INTEGER NOT NULL,
    process_guid    TEXT,
    sensor_id       INTEGER,
    hostname        TEXT,
    pid             INTEGER,
    process_path    TEXT,
    process_md5     TEXT,
    process_sha256  TEXT,
    received_ms     INTEGER NOT NULL
);

CREATE TABLE event_rows (
    id              INTEGER PRIMARY KEY,
    segment_id      INTEGER NOT NULL,
    event_key       BLOB NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
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
    details         TEXT NOT NULL
);

INSERT INTO event_rows (id, segment_id, event_key, timestamp_ms, event_type, path, md5, sha256,
    action, target_guid, remote_ip, remote_port, local_ip, local_port, protocol, direction, domain,
    command_line, username, details)
SELECT id, sum(brk) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING), event_key, timestamp_ms,
    event_type, path, md5, sha256, action, target_guid, remote_ip, remote_port, local_ip,
    local_port, protocol, direction, domain, command_line, username, details
FROM (
    SELECT *, NOT coalesce(
        process_guid IS lag(process_guid) OVER w AND sensor_id IS lag(sensor_id) OVER w
        AND hostname IS lag(hostname) OVER w AND pid IS lag(pid) OVER w
        AND process_path IS lag(process_path) OVER w AND process_md5 IS lag(process_md5) OVER w
        AND process_sha256 IS lag(process_sha256) OVER w
        AND received_ms IS lag(received_ms) OVER w
        AND lag(id) OVER w IS NOT NULL, 0) AS brk
    FROM events
    WINDOW w AS (ORDER BY id)
);

INSERT INTO event_segments (id, first_id, last_id, process_guid, sensor_id, hostname, pid,
    process_path, process_md5, process_sha256, received_ms)
SELECT r.segment_id, min(r.id), max(r.id), e.process_guid, e.sensor_id, e.hostname, e.pid,
    e.process_path, e.process_md5, e.process_sha256, e.received_ms
FROM event_rows r JOIN events e ON e.id = r.id
GROUP BY r.segment_id;

DROP VIEW netconn_view;
DROP TABLE events;

CREATE UNIQUE INDEX events_time_key ON event_rows(timestamp_ms, event_key);
CREATE INDEX events_netconn_time ON event_rows(timestamp_ms)
    WHERE event_type = 'netconn' OR event_type = 'netconnblocked' OR event_type = 'netconnblockedv2';
CREATE INDEX events_netconn_remote ON event_rows(remote_ip, timestamp_ms)
    WHERE event_type = 'netconn' OR event_type = 'netconnblocked' OR event_type = 'netconnblockedv2';
CREATE INDEX event_segments_process ON event_segments(process_guid, first_id);

CREATE VIEW events AS
SELECT e.id              AS id,
       e.event_key       AS event_key,
       e.timestamp_ms    AS timestamp_ms,
       e.event_type      AS event_type,
       s.process_guid    AS process_guid,
       s.sensor_id       AS sensor_id,
       s.hostname        AS hostname,
       s.pid             AS pid,
       s.process_path    AS process_path,
       s.process_md5     AS process_md5,
       s.process_sha256  AS process_sha256,
       e.path            AS path,
       e.md5             AS md5,
       e.sha256          AS sha256,
       e.action          AS action,
       e.target_guid     AS target_guid,
       e.remote_ip       AS remote_ip,
       e.remote_port     AS remote_port,
       e.local_ip        AS local_ip,
       e.local_port      AS local_port,
       e.protocol        AS protocol,
       e.direction       AS direction,
       e.domain          AS domain,
       e.command_line    AS command_line,
       e.username        AS username,
       e.details         AS details,
       s.received_ms     AS received_ms
FROM event_segments s
JOIN event_rows e ON e.segment_id = s.id AND e.id BETWEEN s.first_id AND s.last_id;

-- One segment per row inserted through the view; the daemon writes whole segments itself.
CREATE TRIGGER events_insert INSTEAD OF INSERT ON events
BEGIN
    INSERT INTO event_segments (id, first_id, last_id, process_guid, sensor_id, hostname, pid,
        process_path, process_md5, process_sha256, received_ms)
    SELECT coalesce((SELECT max(id) FROM event_segments), 0) + 1, i, i, NEW.process_guid,
        NEW.sensor_id, NEW.hostname, NEW.pid, NEW.process_path, NEW.process_md5,
        NEW.process_sha256, coalesce(NEW.received_ms,
            CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
    FROM (SELECT coalesce(NEW.id, (SELECT max(id) FROM event_rows) + 1, 1) AS i);
    INSERT INTO event_rows (id, segment_id, event_key, timestamp_ms, event_type, path, md5,
        sha256, action, target_guid, remote_ip, remote_port, local_ip, local_port, protocol,
        direction, domain, command_line, username, details)
    SELECT first_id, id, NEW.event_key, NEW.timestamp_ms, NEW.event_type, NEW.path, NEW.md5,
        NEW.sha256, NEW.action, NEW.target_guid, NEW.remote_ip, NEW.remote_port, NEW.local_ip,
        NEW.local_port, NEW.protocol, NEW.direction, NEW.domain, NEW.command_line, NEW.username,
        NEW.details
    FROM event_segments WHERE id = (SELECT max(id) FROM event_segments);
END;

-- The process columns belong to the segment, which other events share: changing them through
-- one event would change them all, so it is refused.
CREATE TRIGGER events_update INSTEAD OF UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events: id and the process columns (process_guid, sensor_id, hostname, pid, process_path, process_md5, process_sha256, received_ms) belong to the event''s segment; update event_segments instead')
    WHERE NEW.id IS NOT OLD.id OR NEW.process_guid IS NOT OLD.process_guid
       OR NEW.sensor_id IS NOT OLD.sensor_id OR NEW.hostname IS NOT OLD.hostname
       OR NEW.pid IS NOT OLD.pid OR NEW.process_path IS NOT OLD.process_path
       OR NEW.process_md5 IS NOT OLD.process_md5 OR NEW.process_sha256 IS NOT OLD.process_sha256
       OR NEW.received_ms IS NOT OLD.received_ms;
    UPDATE event_rows SET event_key = NEW.event_key, timestamp_ms = NEW.timestamp_ms,
        event_type = NEW.event_type, path = NEW.path, md5 = NEW.md5, sha256 = NEW.sha256,
        action = NEW.action, target_guid = NEW.target_guid, remote_ip = NEW.remote_ip,
        remote_port = NEW.remote_port, local_ip = NEW.local_ip, local_port = NEW.local_port,
        protocol = NEW.protocol, direction = NEW.direction, domain = NEW.domain,
        command_line = NEW.command_line, username = NEW.username, details = NEW.details
    WHERE id = OLD.id;
END;

CREATE TRIGGER events_delete INSTEAD OF DELETE ON events
BEGIN
    DELETE FROM event_segments
    WHERE id = (SELECT segment_id FROM event_rows WHERE id = OLD.id)
      AND NOT EXISTS (SELECT 1 FROM event_rows r
                      WHERE r.id BETWEEN event_segments.first_id AND event_segments.last_id
                        AND r.segment_id = event_segments.id AND r.id <> OLD.id);
    DELETE FROM event_rows WHERE id = OLD.id;
END;

CREATE VIEW netconn_view AS
SELECT e.id                                   AS event_id,
       e.timestamp_ms                         AS timestamp_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.timestamp_ms / 1000.0, 'unixepoch') AS time_utc,
       e.event_type                           AS event_type,
       s.process_guid                         AS process_guid,
       COALESCE(p.sensor_id, s.sensor_id)     AS sensor_id,
       COALESCE(p.hostname, s.hostname)       AS hostname,
       COALESCE(p.pid, s.pid)                 AS pid,
       COALESCE(p.path, s.process_path)       AS process_path,
       p.cmdline                              AS process_cmdline,
       p.username                             AS process_username,
       COALESCE(p.md5, s.process_md5)         AS process_md5,
       p.parent_guid                          AS parent_guid,
       e.direction                            AS direction,
       e.protocol                             AS protocol,
       e.local_ip                             AS local_ip,
       e.local_port                           AS local_port,
       e.remote_ip                            AS remote_ip,
       e.remote_port                          AS remote_port,
       e.domain                               AS domain
FROM event_rows e
JOIN event_segments s ON s.id = e.segment_id
LEFT JOIN processes p ON p.guid = s.process_guid
WHERE e.event_type = 'netconn' OR e.event_type = 'netconnblocked' OR e.event_type = 'netconnblockedv2';
"#;

/// V5: the idempotency key of an event moves from the `events_time_key` index on `event_rows` to a
/// table of its own, `event_keys (timestamp_ms, event_key) → event_id`, which the writer fills in
/// key order.
///
/// SQLite adds a row's index entries as it inserts the row, and the writer inserts a batch's rows
/// grouped by process (see [`V4`]), so consecutive entries of `events_time_key` landed all over
/// the batch's time window: a B-tree descent to a different leaf each time, and page splits that
/// redistribute whole neighbouring pages instead of appending at the right-hand edge. Written by
/// the writer itself, sorted by key, the same entries arrive in B-tree order and mostly append:
/// storing a million generated bundle events took the writer a fifth to a quarter less CPU. The
/// table is still one B-tree keyed by `(timestamp_ms, event_key)`, so it serves duplicate
/// detection and time-range queries as the index did; the `events` view joins it on that key (and
/// on the row id), so the planner can start from a time range or from a process.
const V5: &str = r#"
CREATE TABLE event_keys (
    timestamp_ms    INTEGER NOT NULL,
    event_key       BLOB NOT NULL,
    event_id        INTEGER NOT NULL,
    PRIMARY KEY (timestamp_ms, event_key)
) WITHOUT ROWID;

INSERT INTO event_keys (timestamp_ms, event_key, event_id)
SELECT timestamp_ms, event_key, id FROM event_rows INDEXED BY events_time_key
ORDER BY timestamp_ms, event_key;

DROP VIEW events;
DROP INDEX events_time_key;

CREATE VIEW events AS
SELECT e.id              AS id,
       k.event_key       AS event_key,
       k.timestamp_ms    AS timestamp_ms,
       e.event_type      AS event_type,
       s.process_guid    AS process_guid,
       s.sensor_id       AS sensor_id,
       s.hostname        AS hostname,
       s.pid             AS pid,
       s.process_path    AS process_path,
       s.process_md5     AS process_md5,
       s.process_sha256  AS process_sha256,
       e.path            AS path,
       e.md5             AS md5,
       e.sha256          AS sha256,
       e.action          AS action,
       e.target_guid     AS target_guid,
       e.remote_ip       AS remote_ip,
       e.remote_port     AS remote_port,
       e.local_ip        AS local_ip,
       e.local_port      AS local_port,
       e.protocol        AS protocol,
       e.direction       AS direction,
       e.domain          AS domain,
       e.command_line    AS command_line,
       e.username        AS username,
       e.details         AS details,
       s.received_ms     AS received_ms
FROM event_segments s
JOIN event_rows e ON e.segment_id = s.id AND e.id BETWEEN s.first_id AND s.last_id
JOIN event_keys k ON k.timestamp_ms = e.timestamp_ms AND k.event_key = e.event_key
    AND k.event_id = e.id;

-- One segment per row inserted through the view; the daemon writes whole segments itself.
CREATE TRIGGER events_insert INSTEAD OF INSERT ON events
BEGIN
    INSERT INTO event_segments (id, first_id, last_id, process_guid, sensor_id, hostname, pid,
        process_path, process_md5, process_sha256, received_ms)
    SELECT coalesce((SELECT max(id) FROM event_segments), 0) + 1, i, i, NEW.process_guid,
        NEW.sensor_id, NEW.hostname, NEW.pid, NEW.process_path, NEW.process_md5,
        NEW.process_sha256, coalesce(NEW.received_ms,
            CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
    FROM (SELECT coalesce(NEW.id, (SELECT max(id) FROM event_rows) + 1, 1) AS i);
    INSERT INTO event_keys (timestamp_ms, event_key, event_id)
    SELECT NEW.timestamp_ms, NEW.event_key, first_id
    FROM event_segments WHERE id = (SELECT max(id) FROM event_segments);
    INSERT INTO event_rows (id, segment_id, event_key, timestamp_ms, event_type, path, md5,
        sha256, action, target_guid, remote_ip, remote_port, local_ip, local_port, protocol,
        direction, domain, command_line, username, details)
    SELECT first_id, id, NEW.event_key, NEW.timestamp_ms, NEW.event_type, NEW.path, NEW.md5,
        NEW.sha256, NEW.action, NEW.target_guid, NEW.remote_ip, NEW.remote_port, NEW.local_ip,
        NEW.local_port, NEW.protocol, NEW.direction, NEW.domain, NEW.command_line, NEW.username,
        NEW.details
    FROM event_segments WHERE id = (SELECT max(id) FROM event_segments);
END;

-- The process columns belong to the segment, which other events share: changing them through
-- one event would change them all, so it is refused.
CREATE TRIGGER events_update INSTEAD OF UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events: id and the process columns (process_guid, sensor_id, hostname, pid, process_path, process_md5, process_sha256, received_ms) belong to the event''s segment; update event_segments instead')
    WHERE NEW.id IS NOT OLD.id OR NEW.process_guid IS NOT OLD.process_guid
       OR NEW.sensor_id IS NOT OLD.sensor_id OR NEW.hostname IS NOT OLD.hostname
       OR NEW.pid IS NOT OLD.pid OR NEW.process_path IS NOT OLD.process_path
       OR NEW.process_md5 IS NOT OLD.process_md5 OR NEW.process_sha256 IS NOT OLD.process_sha256
       OR NEW.received_ms IS NOT OLD.received_ms;
    UPDATE event_keys SET timestamp_ms = NEW.timestamp_ms, event_key = NEW.event_key
    WHERE timestamp_ms = OLD.timestamp_ms AND event_key = OLD.event_key
      AND (NEW.timestamp_ms IS NOT OLD.timestamp_ms OR NEW.event_key IS NOT OLD.event_key);
    UPDATE event_rows SET event_key = NEW.event_key, timestamp_ms = NEW.timestamp_ms,
        event_type = NEW.event_type, path = NEW.path, md5 = NEW.md5, sha256 = NEW.sha256,
        action = NEW.action, target_guid = NEW.target_guid, remote_ip = NEW.remote_ip,
        remote_port = NEW.remote_port, local_ip = NEW.local_ip, local_port = NEW.local_port,
        protocol = NEW.protocol, direction = NEW.direction, domain = NEW.domain,
        command_line = NEW.command_line, username = NEW.username, details = NEW.details
    WHERE id = OLD.id;
END;

CREATE TRIGGER events_delete INSTEAD OF DELETE ON events
BEGIN
    DELETE FROM event_segments
    WHERE id = (SELECT segment_id FROM event_rows WHERE id = OLD.id)
      AND NOT EXISTS (SELECT 1 FROM event_rows r
                      WHERE r.id BETWEEN event_segments.first_id AND event_segments.last_id
                        AND r.segment_id = event_segments.id AND r.id <> OLD.id);
    DELETE FROM event_keys WHERE timestamp_ms = OLD.timestamp_ms AND event_key = OLD.event_key;
    DELETE FROM event_rows WHERE id = OLD.id;
END;

"#;
