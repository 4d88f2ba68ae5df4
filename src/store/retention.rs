//! Retention and size: deleting what is older than the configured horizon, giving the space back to
//! the filesystem, and reporting what the database holds (`cbtrail db-info`).
//!
//! Retention runs beside live ingest, so it is written never to stall it:
//! - it uses its own connection, with a busy timeout, and deletes in small chunks (default 5,000
//!   rows), each its own short `BEGIN IMMEDIATE` transaction, sleeping between chunks so the writer
//!   gets the lock between them (the writer needs a busy timeout too);
//! - every chunk is found through an index (`event_keys`, `notifications_type`, primary keys) with
//!   keyset pagination, so no chunk rescans what an earlier one already passed;
//! - it then frees pages with `PRAGMA incremental_vacuum(N)`, again a step at a time, and a passive
//!   checkpoint, so the main file shrinks. That needs `auto_vacuum=INCREMENTAL`, which can only be set
//!   before the first table is created (the store does so); on an older file the free pages are
//!   reused by new rows but the file does not shrink, and the report says so.
//!
//! What goes: events whose event time *and* reception time are both older than the horizon (an event
//! with a bogus sensor clock, e.g. time 0, is kept for the full period after it arrived; one whose
//! clock is more than a day ahead goes by its reception time alone), notifications
//! and quarantined inputs received before the horizon, and processes whose last activity is older than
//! the horizon and that nothing stored refers to any more (no events, no child process, no
//! notification). A chain of such ancestors is removed leaf first in the same run. Binaries (one row
//! per md5, reference data) and sensors are kept.

use super::schema::SCHEMA_VERSION;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DAY_MS: i64 = 86_400_000;

/// Errors of retention and `db-info`.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is not a cbtrail database (schema version 0)")]
    NotCbtrail(PathBuf),
    #[error(
        "database {path} has schema version {found}, newer than this cbtrail supports ({supported}); upgrade cbtrail"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the report: {0}")]
    Output(#[source] std::io::Error),
}

/// How a retention run paces itself. [`Default`] is what the daemon uses.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    /// Keep this many days; 0 keeps everything forever (the run then only reports sizes).
    pub days: u32,
    /// Rows examined per transaction. Small enough that one chunk holds the write lock for tens of
    /// milliseconds.
    pub chunk_rows: usize,
    /// Sleep between chunks, so the ingest writer always gets the lock in between.
    pub pause: Duration,
    /// Bytes freed per `incremental_vacuum` step (whole pages, at least one).
    pub vacuum_bytes: u64,
    /// How long a chunk waits for the writer's lock before giving up with an error.
    pub busy_timeout: Duration,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            days: 0,
            chunk_rows: 5_000,
            pause: Duration::from_millis(50),
            vacuum_bytes: 8 * 1024 * 1024,
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// The `auto_vacuum` mode of a database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoVacuum {
    /// Free pages are reused but the file never shrinks (without a full `VACUUM`).
    None,
    /// The file shrinks at every commit.
    Full,
    /// The file shrinks when `PRAGMA incremental_vacuum` runs (what cbtrail creates).
    Incremental,
}

impl AutoVacuum {
    fn from_pragma(v: i64) -> AutoVacuum {
        match v {
            1 => AutoVacuum::Full,
            2 => AutoVacuum::Incremental,
            _ => AutoVacuum::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AutoVacuum::None => "none",
            AutoVacuum::Full => "full",
            AutoVacuum::Incremental => "incremental",
        }
    }
}

/// What one retention run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionReport {
    /// Rows older than this (UTC ms) were eligible; `None` when retention is off (days = 0).
    pub horizon_ms: Option<i64>,
    pub events_deleted: u64,
    pub notifications_deleted: u64,
    pub quarantine_deleted: u64,
    pub processes_deleted: u64,
    /// Pages returned to the filesystem by `incremental_vacuum`.
    pub pages_vacuumed: u64,
    /// Free pages still inside the file afterwards.
    pub free_pages: u64,
    pub auto_vacuum: AutoVacuum,
    /// Main database file size before and after the run.
    pub file_bytes_before: u64,
    pub file_bytes_after: u64,
    /// The stop callback asked the run to end early; what was done is committed.
    pub interrupted: bool,
    pub elapsed: Duration,
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.horizon_ms {
            None => write!(f, "retention off (keep forever)")?,
            Some(h) => write!(
                f,
                "retention before {}: deleted {} events, {} notifications, {} quarantined, {} processes",
                format_ms(h),
                self.events_deleted,
                self.notifications_deleted,
                self.quarantine_deleted,
                self.processes_deleted
            )?,
        }
        write!(
            f,
            "; vacuumed {} pages, {} free pages left (auto_vacuum {}); file {} -> {}; {:.1}s{}",
            self.pages_vacuumed,
            self.free_pages,
            self.auto_vacuum.as_str(),
            human_bytes(self.file_bytes_before),
            human_bytes(self.file_bytes_after),
            self.elapsed.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )
    }
}

/// Delete everything older than `days` days before `now_ms` from the database at `path` and shrink the
/// file, with the default pacing. `days == 0` keeps everything (only free pages are vacuumed).
pub fn run_once(path: &Path, days: u32, now_ms: i64) -> Result<RetentionReport, MaintenanceError> {
    let opts = RetentionOptions {
        days,
        ..RetentionOptions::default()
    };
    run_once_with(path, &opts, now_ms, &|| false)
}

/// [`run_once`] with explicit pacing. `should_stop` is polled between chunks (shutdown): when it
/// returns true the run ends after committing the current chunk and reports `interrupted`.
pub fn run_once_with(
    path: &Path,
    opts: &RetentionOptions,
    now_ms: i64,
    should_stop: &dyn Fn() -> bool,
) -> Result<RetentionReport, MaintenanceError> {
    let started = Instant::now();
    let file_bytes_before = file_len(path)?;
    let conn = open_checked(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let mut run = Run {
        conn,
        path,
        opts,
        should_stop,
        interrupted: false,
    };
    run.sql(|c| c.busy_timeout(opts.busy_timeout))?;

    let horizon_ms = (opts.days > 0).then(|| now_ms.saturating_sub(i64::from(opts.days) * DAY_MS));
    let mut report = RetentionReport {
        horizon_ms,
        events_deleted: 0,
        notifications_deleted: 0,
        quarantine_deleted: 0,
        processes_deleted: 0,
        pages_vacuumed: 0,
        free_pages: 0,
        auto_vacuum: AutoVacuum::None,
        file_bytes_before,
        file_bytes_after: file_bytes_before,
        interrupted: false,
        elapsed: Duration::ZERO,
    };
    if let Some(h) = horizon_ms {
        // Event times before the horizon, then event times more than a day in the future: a sensor
        // with its clock far ahead would otherwise keep its events forever.
        let future = now_ms.saturating_add(DAY_MS);
        report.events_deleted = run.delete_events(h, i64::MIN, h)?;
        if !run.interrupted {
            report.events_deleted += run.delete_events(h, future, i64::MAX)?;
        }
        if !run.interrupted {
            report.notifications_deleted = run.delete_notifications(h)?;
        }
        if !run.interrupted {
            report.quarantine_deleted = run.delete_quarantine(h)?;
        }
        if !run.interrupted {
            report.processes_deleted = run.delete_processes(h)?;
        }
    }
    // Vacuuming after an interruption would only delay shutdown; the next run frees the pages.
    let (auto_vacuum, vacuumed, free) = run.vacuum(!run.interrupted)?;
    report.auto_vacuum = auto_vacuum;
    report.pages_vacuumed = vacuumed;
    report.free_pages = free;
    // Truncation reaches the main file when the WAL frames holding it are checkpointed. PASSIVE never
    // waits for readers or the writer; if it cannot finish, the next automatic checkpoint does.
    run.sql(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())))?;
    report.interrupted = run.interrupted;
    report.file_bytes_after = file_len(path)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// State of one retention run.
struct Run<'a> {
    conn: Connection,
    path: &'a Path,
    opts: &'a RetentionOptions,
    should_stop: &'a dyn Fn() -> bool,
    interrupted: bool,
}

impl Run<'_> {
    fn sql<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, MaintenanceError> {
        f(&mut self.conn).map_err(|source| MaintenanceError::Sqlite {
            path: self.path.to_owned(),
            source,
        })
    }

    /// Between two chunks: give the writer the lock, and honour a stop request.
    fn between_chunks(&mut self) -> bool {
        if (self.should_stop)() {
            self.interrupted = true;
            return false;
        }
        if !self.opts.pause.is_zero() {
            std::thread::sleep(self.opts.pause);
        }
        if (self.should_stop)() {
            self.interrupted = true;
            return false;
        }
        true
    }

    fn limit(&self) -> i64 {
        i64::try_from(self.opts.chunk_rows.max(1)).unwrap_or(i64::MAX)
    }

    /// Events received before the horizon whose event time lies in `(after, below)`, in event-time
    /// order through `event_keys`; the keyset cursor `(timestamp_ms, event_key)` moves past every examined
    /// row, deleted or kept, so kept rows are never examined twice.
    fn delete_events(
        &mut self,
        horizon: i64,
        after: i64,
        below: i64,
    ) -> Result<u64, MaintenanceError> {
        let limit = self.limit();
        // Keys are 16 bytes: 17 bytes of 0xFF sort after every key, so the first chunk starts past
        // every row at `after` itself.
        let mut cursor: (i64, Vec<u8>) = (after, vec![0xFF; 17]);
        let mut deleted = 0u64;
        loop {
            let (examined, n, next) = self.sql(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let rows: Vec<(i64, i64, i64, Vec<u8>, i64)> = {
                    let mut st = tx.prepare_cached(EVENTS_CHUNK)?;
                    st.query_map(params![below, cursor.0, cursor.1, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?
                };
                let mut n = 0u64;
                let mut segments = Vec::new();
                {
                    let mut del = tx.prepare_cached("DELETE FROM event_rows WHERE id = ?1")?;
                    let mut del_key = tx.prepare_cached(
                        "DELETE FROM event_keys WHERE timestamp_ms = ?1 AND event_key = ?2",
                    )?;
                    for (id, ts, received, key, segment) in &rows {
                        if *received < horizon {
                            n += del.execute([id])? as u64;
                            del_key.execute(params![ts, key])?;
                            segments.push(*segment);
                        }
                    }
                }
                segments.sort_unstable();
                segments.dedup();
                {
                    let mut del = tx.prepare_cached(DELETE_EMPTY_SEGMENT)?;
                    for s in segments {
                        del.execute([s])?;
                    }
                }
                tx.commit()?;
                let next = rows.last().map(|(_, ts, _, key, _)| (*ts, key.clone()));
                Ok((rows.len(), n, next))
            })?;
            deleted += n;
            match next {
                Some(c) if examined as i64 == limit => cursor = c,
                _ => return Ok(deleted),
            }
            if !self.between_chunks() {
                return Ok(deleted);
            }
        }
    }

    /// Notifications type by type through `notifications_type (type, received_ms)`: the distinct
    /// types are walked with one index seek each, then each type's old rows are a range scan.
    fn delete_notifications(&mut self, horizon: i64) -> Result<u64, MaintenanceError> {
        let limit = self.limit();
        let mut deleted = 0u64;
        let mut kind: Option<String> =
            self.sql(|c| c.query_row(NOTIFICATION_FIRST_TYPE, [], |r| r.get(0)))?;
        while let Some(k) = kind {
            loop {
                let n = self.sql(|c| {
                    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let ids: Vec<i64> = {
                        let mut st = tx.prepare_cached(NOTIFICATIONS_CHUNK)?;
                        st.query_map(params![k, horizon, limit], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()?
                    };
                    {
                        // Explicit rather than relying on ON DELETE CASCADE, which needs
                        // `foreign_keys=ON` on this connection.
                        let mut targets = tx.prepare_cached(
                            "DELETE FROM notification_targets WHERE notification_id = ?1",
                        )?;
                        let mut del =
                            tx.prepare_cached("DELETE FROM notifications WHERE id = ?1")?;
                        for id in &ids {
                            targets.execute([id])?;
                            del.execute([id])?;
                        }
                    }
                    tx.commit()?;
                    Ok(ids.len())
                })?;
                deleted += n as u64;
                if (n as i64) < limit {
                    break;
                }
                if !self.between_chunks() {
                    return Ok(deleted);
                }
            }
            if !self.between_chunks() {
                return Ok(deleted);
            }
            kind = self.sql(|c| c.query_row(NOTIFICATION_NEXT_TYPE, [&k], |r| r.get(0)))?;
        }
        Ok(deleted)
    }

    /// Quarantine has no time index (it is small and rarely written): walk it by rowid.
    fn delete_quarantine(&mut self, horizon: i64) -> Result<u64, MaintenanceError> {
        let limit = self.limit();
        let mut cursor = i64::MIN;
        let mut deleted = 0u64;
        loop {
            let (examined, n, last) = self.sql(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let rows: Vec<(i64, i64)> = {
                    let mut st = tx.prepare_cached(QUARANTINE_CHUNK)?;
                    st.query_map(params![cursor, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?
                };
                let mut n = 0u64;
                {
                    let mut del = tx.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?;
                    for (id, received) in &rows {
                        if *received < horizon {
                            n += del.execute([id])? as u64;
                        }
                    }
                }
                tx.commit()?;
                Ok((rows.len(), n, rows.last().map(|r| r.0)))
            })?;
            deleted += n;
            match last {
                Some(id) if examined as i64 == limit => cursor = id,
                _ => return Ok(deleted),
            }
            if !self.between_chunks() {
                return Ok(deleted);
            }
        }
    }

    /// Processes by guid; a process goes when its last activity is before the horizon and nothing
    /// refers to it. Deleting one may free its parent, which is then checked again (worklist), so a
    /// dead ancestor chain goes in one run without rescanning the table.
    fn delete_processes(&mut self, horizon: i64) -> Result<u64, MaintenanceError> {
        let limit = self.limit();
        let mut cursor = String::new();
        let mut deleted = 0u64;
        let mut parents: Vec<String> = Vec::new();
        let mut scanning = true;
        while scanning {
            let (n, freed, last, examined) = self.sql(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let rows: Vec<(String, Option<String>, i64)> = {
                    let mut st = tx.prepare_cached(PROCESSES_CHUNK)?;
                    st.query_map(params![cursor, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?
                };
                let mut n = 0u64;
                let mut freed = Vec::new();
                for (guid, parent, activity) in &rows {
                    if *activity < horizon && delete_unreferenced_process(&tx, guid)? {
                        n += 1;
                        if let Some(p) = parent.as_ref().filter(|p| *p != guid) {
                            freed.push(p.clone());
                        }
                    }
                }
                tx.commit()?;
                Ok((n, freed, rows.last().map(|r| r.0.clone()), rows.len()))
            })?;
            deleted += n;
            parents.extend(freed);
            match last {
                Some(g) if examined as i64 == limit => cursor = g,
                _ => scanning = false,
            }
            if !self.between_chunks() {
                return Ok(deleted);
            }
        }
        // Parents of deleted processes, then their parents, … Each pass deletes rows, so this ends.
        while !parents.is_empty() {
            let take = parents.len().min(self.opts.chunk_rows.max(1));
            let batch: Vec<String> = parents.drain(..take).collect();
            let (n, freed) = self.sql(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut n = 0u64;
                let mut freed = Vec::new();
                {
                    let mut st = tx.prepare_cached(PROCESS_BY_GUID)?;
                    for guid in &batch {
                        let row: Option<(Option<String>, i64)> = st
                            .query_row([guid], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?;
                        let Some((parent, activity)) = row else {
                            continue;
                        };
                        if activity < horizon && delete_unreferenced_process(&tx, guid)? {
                            n += 1;
                            if let Some(p) = parent.filter(|p| p != guid) {
                                freed.push(p);
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok((n, freed))
            })?;
            deleted += n;
            parents.extend(freed);
            if !parents.is_empty() && !self.between_chunks() {
                return Ok(deleted);
            }
        }
        Ok(deleted)
    }

    /// Return free pages to the filesystem a step at a time. Returns the mode, pages freed and the
    /// free pages left.
    fn vacuum(&mut self, shrink: bool) -> Result<(AutoVacuum, u64, u64), MaintenanceError> {
        let mode = AutoVacuum::from_pragma(
            self.sql(|c| c.pragma_query_value(None, "auto_vacuum", |r| r.get::<_, i64>(0)))?,
        );
        let free = |run: &mut Self| -> Result<u64, MaintenanceError> {
            run.sql(|c| c.pragma_query_value(None, "freelist_count", |r| r.get::<_, i64>(0)))
                .map(|n| u64::try_from(n).unwrap_or(0))
        };
        let mut left = free(self)?;
        let start = left;
        if shrink && mode == AutoVacuum::Incremental {
            let page_size =
                self.sql(|c| c.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0)))?;
            let step =
                (self.opts.vacuum_bytes / u64::try_from(page_size).unwrap_or(1).max(1)).max(1);
            while left > 0 {
                self.sql(|c| c.execute_batch(&format!("PRAGMA incremental_vacuum({step})")))?;
                let now = free(self)?;
                // No progress means something else holds the pages (cannot happen with one writer);
                // stop rather than spin.
                let progressed = now < left;
                left = now;
                if !progressed || left == 0 || !self.between_chunks() {
                    break;
                }
            }
        }
        Ok((mode, start.saturating_sub(left), left))
    }
}

// The chunk queries. Each is a SEARCH through an index or primary key (a test checks with EXPLAIN
// QUERY PLAN), never a full scan, so one chunk's cost does not grow with the table.

/// Next chunk of events in `event_keys` order (event time, then key), before the horizon, after the
/// cursor: a range of that table's primary key, then each row and segment by its own.
pub(crate) const EVENTS_CHUNK: &str =
    "SELECT k.event_id, k.timestamp_ms, s.received_ms, k.event_key,
     e.segment_id
     FROM event_keys k JOIN event_rows e ON e.id = k.event_id
     JOIN event_segments s ON s.id = e.segment_id
     WHERE k.timestamp_ms < ?1 AND (k.timestamp_ms, k.event_key) > (?2, ?3)
     ORDER BY k.timestamp_ms, k.event_key LIMIT ?4";
/// A segment none of whose rows is left.
pub(crate) const DELETE_EMPTY_SEGMENT: &str = "DELETE FROM event_segments WHERE id = ?1
     AND NOT EXISTS (SELECT 1 FROM event_rows r
                     WHERE r.id BETWEEN event_segments.first_id AND event_segments.last_id
                       AND r.segment_id = event_segments.id)";
/// Loose index scan over the notification types: one seek per distinct type.
pub(crate) const NOTIFICATION_FIRST_TYPE: &str = "SELECT MIN(type) FROM notifications";
pub(crate) const NOTIFICATION_NEXT_TYPE: &str =
    "SELECT MIN(type) FROM notifications WHERE type > ?1";
/// Oldest notifications of one type received before the horizon.
pub(crate) const NOTIFICATIONS_CHUNK: &str =
    "SELECT id FROM notifications INDEXED BY notifications_type
     WHERE type = ?1 AND received_ms < ?2 ORDER BY received_ms LIMIT ?3";
/// Next chunk of quarantine rows by rowid (no time index: the table is small and rarely written).
pub(crate) const QUARANTINE_CHUNK: &str =
    "SELECT id, received_ms FROM quarantine WHERE id > ?1 ORDER BY id LIMIT ?2";
/// Next chunk of processes by guid with their last sign of life: the latest of last event, end,
/// start, and when cbtrail first heard of the process (so a process is kept at least the retention
/// period after it was first seen).
pub(crate) const PROCESSES_CHUNK: &str = "SELECT guid, parent_guid,
     MAX(COALESCE(last_event_ms, 0), COALESCE(end_ms, 0), COALESCE(start_ms, 0), first_seen_ms)
     FROM processes WHERE guid > ?1 ORDER BY guid LIMIT ?2";
/// One process's parent and last sign of life (as in [`PROCESSES_CHUNK`]).
pub(crate) const PROCESS_BY_GUID: &str = "SELECT parent_guid,
     MAX(COALESCE(last_event_ms, 0), COALESCE(end_ms, 0), COALESCE(start_ms, 0), first_seen_ms)
     FROM processes WHERE guid = ?1";
/// What keeps a process: an event of its own, a child process, a notification naming it.
pub(crate) const PROCESS_REFERENCES: [&str; 4] = [
    "SELECT 1 FROM events WHERE process_guid = ?1 LIMIT 1",
    "SELECT 1 FROM processes WHERE parent_guid = ?1 AND guid <> ?1 LIMIT 1",
    "SELECT 1 FROM notifications WHERE process_guid = ?1 LIMIT 1",
    "SELECT 1 FROM notification_targets WHERE process_guid = ?1 LIMIT 1",
];

/// Delete the process `guid` unless an event, a child process or a notification still refers to it.
fn delete_unreferenced_process(conn: &Connection, guid: &str) -> rusqlite::Result<bool> {
    for sql in PROCESS_REFERENCES {
        let mut st = conn.prepare_cached(sql)?;
        if st.exists([guid])? {
            return Ok(false);
        }
    }
    let mut del = conn.prepare_cached("DELETE FROM processes WHERE guid = ?1")?;
    Ok(del.execute([guid])? > 0)
}

/// Open `path` (which must exist) and check it is a cbtrail database this binary understands.
fn open_checked(path: &Path, flags: OpenFlags) -> Result<Connection, MaintenanceError> {
    if !path.exists() {
        return Err(MaintenanceError::Missing(path.to_owned()));
    }
    let sqlite = |source| MaintenanceError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sqlite)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite)?;
    if version == 0 {
        return Err(MaintenanceError::NotCbtrail(path.to_owned()));
    }
    if version > SCHEMA_VERSION {
        return Err(MaintenanceError::TooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

fn file_len(path: &Path) -> Result<u64, MaintenanceError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(MaintenanceError::Missing(path.to_owned()))
        }
        Err(source) => Err(MaintenanceError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn wal_len(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------
// db-info

/// The time column shown for each known table, and what it means.
const TIME_COLUMNS: &[(&str, &str)] = &[
    // Not `event_rows`, which has the same column but no index on it: reading `event_keys` is a
    // scan of a B-tree a tenth of the size.
    ("event_keys", "timestamp_ms"),
    ("processes", "start_ms"),
    ("binaries", "timestamp_ms"),
    ("notifications", "received_ms"),
    ("quarantine", "received_ms"),
    ("sensors", "last_seen_ms"),
];

/// One table of [`DbInfo`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub name: String,
    pub rows: u64,
    /// Bytes of the table's own b-tree, and of all its indexes (from `dbstat`; `None` when the
    /// SQLite in use lacks it).
    pub table_bytes: Option<u64>,
    pub index_bytes: Option<u64>,
    /// Column the time range is taken from, and its min/max (UTC ms; 0 and NULL ignored).
    pub time_column: Option<&'static str>,
    pub min_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// What `cbtrail db-info` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DbInfo {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub wal_bytes: u64,
    pub page_size: u64,
    pub page_count: u64,
    pub free_pages: u64,
    pub auto_vacuum: AutoVacuum,
    pub journal_mode: String,
    pub schema_version: i64,
    pub tables: Vec<TableInfo>,
}

/// Collect [`DbInfo`] over a read-only connection. Counting rows and sizing tables reads the whole
/// file, so on a large database this takes a while (it never blocks the writer: WAL readers don't).
pub fn collect_db_info(path: &Path) -> Result<DbInfo, MaintenanceError> {
    let file_bytes = file_len(path)?;
    let conn = open_checked(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let sqlite = |source| MaintenanceError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let pragma_u64 = |name: &str| -> Result<u64, MaintenanceError> {
        conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0))
            .map(|v| u64::try_from(v).unwrap_or(0))
            .map_err(sqlite)
    };
    let page_size = pragma_u64("page_size")?;
    let page_count = pragma_u64("page_count")?;
    let free_pages = pragma_u64("freelist_count")?;
    let auto_vacuum = AutoVacuum::from_pragma(
        conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .map_err(sqlite)?,
    );
    let journal_mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .map_err(sqlite)?;
    let schema_version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite)?;

    // b-tree name → (table it belongs to, is it the table itself).
    let mut owners: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    {
        let mut st = conn
            .prepare(
                "SELECT type, name, tbl_name FROM sqlite_schema
                 WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_stat%'
                 ORDER BY name",
            )
            .map_err(sqlite)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sqlite)?;
        for row in rows {
            let (kind, name, table) = row.map_err(sqlite)?;
            let is_table = kind == "table";
            if is_table && !name.starts_with("sqlite_") {
                names.push(name.clone());
            }
            owners.insert(name, (table, is_table));
        }
    }

    // Sizes per b-tree from the dbstat virtual table (compiled into the bundled SQLite). Without it
    // the per-table sizes are left out rather than guessed.
    let sizes: Option<BTreeMap<String, u64>> = conn
        .prepare("SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .map(|r| r.map(|(n, s)| (n, u64::try_from(s).unwrap_or(0))))
                .collect::<rusqlite::Result<BTreeMap<_, _>>>()
        })
        .ok();

    let mut tables = Vec::new();
    for name in names {
        let quoted = quote_ident(&name);
        let rows: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {quoted}"), [], |r| r.get(0))
            .map_err(sqlite)?;
        let time_column = TIME_COLUMNS
            .iter()
            .find(|(t, _)| *t == name)
            .map(|(_, c)| *c);
        let (min_ms, max_ms) = match time_column {
            Some(col) => conn
                .query_row(
                    &format!("SELECT MIN({col}), MAX({col}) FROM {quoted} WHERE {col} > 0"),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sqlite)?,
            None => (None, None),
        };
        let (table_bytes, index_bytes) = match &sizes {
            Some(sizes) => {
                let mut own = 0;
                let mut idx = 0;
                for (btree, bytes) in sizes {
                    match owners.get(btree) {
                        Some((t, true)) if *t == name => own += bytes,
                        Some((t, false)) if *t == name => idx += bytes,
                        _ => {}
                    }
                }
                (Some(own), Some(idx))
            }
            None => (None, None),
        };
        tables.push(TableInfo {
            name,
            rows: u64::try_from(rows).unwrap_or(0),
            table_bytes,
            index_bytes,
            time_column,
            min_ms,
            max_ms,
        });
    }
    Ok(DbInfo {
        path: path.to_owned(),
        file_bytes,
        wal_bytes: wal_len(path),
        page_size,
        page_count,
        free_pages,
        auto_vacuum,
        journal_mode,
        schema_version,
        tables,
    })
}

/// `cbtrail db-info`: write what the database at `path` holds to `out` as a table.
pub fn db_info(path: &Path, out: &mut dyn Write) -> Result<(), MaintenanceError> {
    let info = collect_db_info(path)?;
    write_db_info(&info, out).map_err(MaintenanceError::Output)
}

fn write_db_info(info: &DbInfo, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "database     {}", info.path.display())?;
    writeln!(
        out,
        "file         {} ({} bytes), WAL {}",
        human_bytes(info.file_bytes),
        info.file_bytes,
        human_bytes(info.wal_bytes)
    )?;
    writeln!(
        out,
        "pages        {} of {} bytes, {} free ({}), auto_vacuum {}, journal {}",
        info.page_count,
        info.page_size,
        info.free_pages,
        human_bytes(info.free_pages * info.page_size),
        info.auto_vacuum.as_str(),
        info.journal_mode
    )?;
    writeln!(out, "schema       version {}", info.schema_version)?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<22} {:>12} {:>10} {:>10}  {:<13} {:<20} {:<20}",
        "table", "rows", "data", "indexes", "time column", "oldest", "newest"
    )?;
    let size = |b: Option<u64>| b.map(human_bytes).unwrap_or_else(|| "n/a".to_owned());
    let time = |t: Option<i64>| t.map(format_ms).unwrap_or_else(|| "-".to_owned());
    for t in &info.tables {
        writeln!(
            out,
            "{:<22} {:>12} {:>10} {:>10}  {:<13} {:<20} {:<20}",
            t.name,
            t.rows,
            size(t.table_bytes),
            size(t.index_bytes),
            t.time_column.unwrap_or("-"),
            time(t.min_ms),
            time(t.max_ms)
        )?;
    }
    if info.tables.iter().any(|t| t.table_bytes.is_none()) {
        writeln!(
            out,
            "(per-table sizes need SQLite's dbstat table, which this build lacks)"
        )?;
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// UTC milliseconds → `YYYY-MM-DD HH:MM:SSZ` (proleptic Gregorian; days-from-civil inverse after
/// Howard Hinnant's algorithm), without pulling in a date crate.
fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk query must reach its rows through an index or primary key: a full scan would hold
    /// the write lock for as long as the table is big.
    #[test]
    fn chunk_queries_search_indexes() {
        let conn = Connection::open_in_memory().unwrap();
        for m in crate::store::schema::MIGRATIONS {
            conn.execute_batch(m).unwrap();
        }
        let mut queries = vec![
            EVENTS_CHUNK,
            NOTIFICATION_FIRST_TYPE,
            NOTIFICATION_NEXT_TYPE,
            NOTIFICATIONS_CHUNK,
            QUARANTINE_CHUNK,
            PROCESSES_CHUNK,
            PROCESS_BY_GUID,
        ];
        queries.extend(PROCESS_REFERENCES);
        for sql in queries {
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = std::iter::repeat_n(rusqlite::types::Null, st.parameter_count());
            let plan: Vec<String> = st
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN")),
                "{sql}\n{plan:#?}"
            );
            assert!(
                plan.iter().any(|step| step.starts_with("SEARCH")),
                "{sql}\n{plan:#?}"
            );
            // Ordered by the index, no sort of a candidate set.
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{sql}\n{plan:#?}"
            );
        }
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00Z");
        // Fixture time from docs/cb-bus.md: 1447697423 s.
        assert_eq!(format_ms(1_447_697_423_000), "2015-11-16 18:10:23Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(format_ms(4_102_444_799_999), "2099-12-31 23:59:59Z");
        assert_eq!(format_ms(-1), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("events"), "\"events\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
