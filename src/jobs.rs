//! Hit-triggered exports: a watchlist, feed or alert hit on a process becomes an export job, and a
//! worker thread turns due jobs into export directories.
//!
//! # Life of a job
//!
//! 1. The store writer inserts a hit notification and, in the same transaction, calls
//!    [`enqueue_for_notification`]: one job per target process GUID, due `settle` later (the hit
//!    usually arrives while the process's events are still streaming in). A hit on a GUID that
//!    already has a job created within `coalesce_window` merges into that job: the later trigger is
//!    recorded (`notification_id`, `triggers`, `export_job_triggers`), and a done or failed job
//!    becomes pending again. Because this happens inside the notification's transaction, a stored
//!    hit always has its job: nothing is lost between the two.
//! 2. The worker claims a due pending job (`running`, `attempts + 1`), exports it (see
//!    [`crate::export`]) and marks it `done`, or, when the job changed during the export (another
//!    trigger), `pending` again.
//! 3. Until `follow_until_ms` (`follow_window` after the latest trigger) the worker watches for new
//!    events of the hit process and of its descendants (to `follow_childprocs` generations); when
//!    some arrive the job becomes pending again, due `settle` later, and the export directory is
//!    replaced by a complete new one.
//! 4. A failed export is retried with a growing delay (30 s, 1 min, 2 min, … capped at 15 min)
//!    until `max_attempts` tries in a row have failed; then the job is `failed`, with the error.
//!
//! Jobs live in the database, so they survive restarts: a job found `running` when the worker
//! starts was interrupted and is retried (its attempt counted, so an export that crashes the
//! process cannot loop forever).
//!
//! The worker never blocks ingest: it is its own thread with its own connection; its writes are
//! single-statement transactions and its reads happen in WAL read transactions, which the writer
//! does not wait for.
//!
//! # Watching for new events
//!
//! Events are numbered (`events.id`) in insertion order. The worker keeps a cursor: every poll it
//! reads the events inserted since the previous poll (a rowid range, so the cost follows the ingest
//! rate, not the size of the database or of the processes) and notes the highest id per process.
//! A job whose process set has an event above its `watermark` (the highest id its last export saw)
//! is re-exported. After a restart the cursor starts at the lowest watermark of the jobs still
//! following, and catches up in pages.
//!
//! Operator documentation (settings, directory layout, file formats): `docs/exports.md`.

use crate::export::{
    self, ExportError, ExportOptions, ExportRequest, Trigger, render_pattern, sanitize_component,
    summary::SummarySpec,
};
use crate::model::Notification;
use crate::store::schema::SCHEMA_VERSION;
use crate::tree::{self, TreeError, parse_guid};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Errors of the job machinery.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("invalid export job settings: {0}")]
    Settings(String),
    #[error("database {0} does not exist")]
    Missing(PathBuf),
    #[error(
        "database {path} has schema version {found}; this cbtrail needs {needed} (export jobs); {hint}"
    )]
    Schema {
        path: PathBuf,
        found: i64,
        needed: i64,
        hint: &'static str,
    },
}

/// States of a job (the `state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<JobState, String> {
        JobState::parse(s).ok_or_else(|| {
            format!("unknown job state {s:?}; expected pending, running, done or failed")
        })
    }
}

/// Settings of hit-triggered exports (the `[exports]` section; operator documentation in
/// `docs/exports.md`). Durations are given in seconds in configuration files (integers or
/// decimals).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Wait after a trigger (and after new events) before exporting, so the burst of events around
    /// the hit is in the export. Default 60 s.
    #[serde(deserialize_with = "secs", serialize_with = "to_secs")]
    pub settle: Duration,
    /// How long after the latest trigger new events of the process or its descendants cause a
    /// re-export. Default 30 min; 0 disables re-exports.
    #[serde(deserialize_with = "secs", serialize_with = "to_secs")]
    pub follow_window: Duration,
    /// Hits on the same process GUID within this time of the job's creation merge into one job.
    /// Default 5 min.
    #[serde(deserialize_with = "secs", serialize_with = "to_secs")]
    pub coalesce_window: Duration,
    /// How often the worker looks for due jobs and new events. Default 2 s.
    #[serde(deserialize_with = "secs", serialize_with = "to_secs")]
    pub poll_interval: Duration,
    /// Generations of descendants exported below the hit process (the CBC exporter's
    /// `--follow_childprocs`). Default 5.
    pub follow_childprocs: u32,
    /// Ancestors' CSVs hold their events from this long before the hit process started to this
    /// long after the newest event of the hit and its exported descendants (the rest is counted in
    /// the manifest); 0 exports all of their events. Default 1 h.
    #[serde(deserialize_with = "secs", serialize_with = "to_secs")]
    pub ancestor_window: Duration,
    /// Root of all export directories. Default `$STATE_DIRECTORY/exports` under systemd, else
    /// `./exports`.
    pub output_dir: PathBuf,
    /// A job's directory below `output_dir`; placeholders `{job}` (required), `{guid}`, `{host}`,
    /// `{sensor}`, `{pid}`, `{name}`, `{date}` (`YYYY-MM-DD`) and `{time}` (`HHMMSS`) of the first
    /// trigger, UTC. `/` makes subdirectories. Default `{date}/job{job}_{host}_{guid}`.
    pub dir_pattern: String,
    /// Per-process CSV name inside a job directory; placeholders `{guid}` (required), `{level}`,
    /// `{pid}`, `{name}`, `{role}`. Default `{level}_{guid}.csv`.
    pub file_pattern: String,
    /// Summary spec file (see `deploy/summary.json`); `None` uses the built-in copy of it.
    pub summary_spec: Option<PathBuf>,
    /// Failed tries in a row before a job is marked failed. Default 5.
    pub max_attempts: u32,
}

impl Default for JobSettings {
    fn default() -> JobSettings {
        JobSettings {
            settle: Duration::from_secs(60),
            follow_window: Duration::from_secs(30 * 60),
            coalesce_window: Duration::from_secs(5 * 60),
            poll_interval: Duration::from_secs(2),
            follow_childprocs: export::DEFAULT_FOLLOW_CHILDPROCS,
            ancestor_window: export::DEFAULT_ANCESTOR_WINDOW,
            output_dir: std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join("exports"),
            dir_pattern: "{date}/job{job}_{host}_{guid}".to_string(),
            file_pattern: export::DEFAULT_CSV_PATTERN.to_string(),
            summary_spec: None,
            max_attempts: 5,
        }
    }
}

fn to_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..=1e9).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} is not a duration in seconds between 0 and 1e9"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Placeholders of [`JobSettings::dir_pattern`].
pub const DIR_PLACEHOLDERS: [&str; 8] = [
    "job", "guid", "host", "sensor", "pid", "name", "date", "time",
];

impl JobSettings {
    /// Check everything that can be checked before the first job: patterns, intervals, the
    /// summary spec. Returns the loaded spec.
    pub fn validate(&self) -> Result<SummarySpec, JobError> {
        if self.poll_interval.is_zero() {
            return Err(JobError::Settings("poll_interval must be above 0".into()));
        }
        if self.max_attempts == 0 {
            return Err(JobError::Settings("max_attempts must be at least 1".into()));
        }
        export::validate_csv_pattern(&self.file_pattern)?;
        if !self.dir_pattern.contains("{job}") {
            return Err(JobError::Settings(format!(
                "dir_pattern {:?} must contain {{job}} so every job gets its own directory",
                self.dir_pattern
            )));
        }
        let sample: Vec<(&str, String)> =
            DIR_PLACEHOLDERS.iter().map(|k| (*k, "x".into())).collect();
        let rel = render_pattern(&self.dir_pattern, &sample)?;
        check_relative(&rel).map_err(|why| {
            JobError::Settings(format!("dir_pattern {:?} {why}", self.dir_pattern))
        })?;
        Ok(SummarySpec::load_or_default(self.summary_spec.as_deref())?)
    }

    fn export_options(&self, spec: SummarySpec) -> ExportOptions {
        ExportOptions {
            follow_childprocs: self.follow_childprocs,
            ancestor_window: (!self.ancestor_window.is_zero()).then_some(self.ancestor_window),
            csv_pattern: self.file_pattern.clone(),
            spec,
        }
    }
}

fn check_relative(rel: &str) -> Result<(), &'static str> {
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() {
        return Err("must be a relative path");
    }
    for c in p.components() {
        match c {
            Component::Normal(s) if !s.to_string_lossy().starts_with('.') => {}
            _ => return Err("must not contain '..', '.', empty or hidden components"),
        }
    }
    Ok(())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The process GUIDs a notification targets, bare, lower-cased, without repeats, in order.
pub fn target_guids(n: &Notification) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let candidates = n
        .targets
        .iter()
        .filter_map(|t| t.process_guid.as_deref())
        .chain(n.process_guid.as_deref());
    for raw in candidates {
        match parse_guid(raw) {
            Ok(g) if !out.contains(&g.guid) => out.push(g.guid),
            Ok(_) => {}
            Err(e) => tracing::warn!(routing_key = %n.routing_key, "hit target skipped: {e}"),
        }
    }
    out
}

/// Create (or merge into) the export jobs of a newly stored notification, inside the transaction
/// that stored it. Returns how many jobs were created or merged into: 0 for a notification that is
/// not a process hit, or a hit without a process GUID (logged; the notification itself is stored).
pub fn enqueue_for_notification(
    tx: &Transaction<'_>,
    notification_id: i64,
    n: &Notification,
    now_ms: i64,
    settings: &JobSettings,
) -> Result<usize, JobError> {
    Ok(enqueue(tx, notification_id, n, now_ms, settings)?)
}

/// [`enqueue_for_notification`] with the SQLite error as is (the store writer's error type wraps it).
pub(crate) fn enqueue(
    tx: &Connection,
    notification_id: i64,
    n: &Notification,
    now_ms: i64,
    settings: &JobSettings,
) -> rusqlite::Result<usize> {
    if !n.is_process_hit() {
        return Ok(0);
    }
    let guids = target_guids(n);
    if guids.is_empty() {
        tracing::warn!(
            notification_id,
            kind = %n.kind,
            "process hit without a process GUID: no export job"
        );
        return Ok(0);
    }
    let settle = ms(settings.settle);
    let follow_until = now_ms.saturating_add(ms(settings.follow_window));
    let since = now_ms.saturating_sub(ms(settings.coalesce_window));
    for guid in &guids {
        let existing: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM export_jobs WHERE process_guid = ?1 AND created_ms >= ?2 \
                 ORDER BY created_ms DESC, id DESC LIMIT 1",
            )?
            .query_row(params![guid, since], |r| r.get(0))
            .optional()?;
        let job_id = match existing {
            Some(id) => {
                tx.prepare_cached(
                    "UPDATE export_jobs SET
                        notification_id = ?2,
                        triggers = triggers + 1,
                        last_trigger_ms = ?3,
                        generation = generation + 1,
                        follow_until_ms = MAX(follow_until_ms, ?4),
                        due_ms = CASE WHEN state IN ('pending', 'running')
                                      THEN MAX(due_ms, ?3 + ?5) ELSE ?3 + ?5 END,
                        attempts = CASE state WHEN 'failed' THEN 0 ELSE attempts END,
                        state = CASE state WHEN 'running' THEN 'running' ELSE 'pending' END
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    notification_id,
                    now_ms,
                    follow_until,
                    settle
                ])?;
                id
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO export_jobs (notification_id, process_guid, state, created_ms,
                        due_ms, follow_until_ms, last_trigger_ms)
                     VALUES (?1, ?2, 'pending', ?3, ?3 + ?4, ?5, ?3)",
                )?
                .execute(params![
                    notification_id,
                    guid,
                    now_ms,
                    settle,
                    follow_until
                ])?;
                crate::metrics::export_queued();
                tx.last_insert_rowid()
            }
        };
        tx.prepare_cached(
            "INSERT OR IGNORE INTO export_job_triggers (job_id, notification_id, received_ms)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![job_id, notification_id, now_ms])?;
    }
    Ok(guids.len())
}

/// One row of `export_jobs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub notification_id: Option<i64>,
    pub process_guid: String,
    pub state: String,
    pub created_ms: i64,
    pub due_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub attempts: i64,
    pub output_path: Option<String>,
    pub error: Option<String>,
    pub follow_until_ms: i64,
    pub watermark: i64,
    pub triggers: i64,
    pub last_trigger_ms: i64,
    pub exports: i64,
    pub generation: i64,
}

const JOB_COLUMNS: &str = "id, notification_id, process_guid, state, created_ms, due_ms, started_ms, \
     finished_ms, attempts, output_path, error, follow_until_ms, watermark, triggers, \
     last_trigger_ms, exports, generation";

impl JobRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
        Ok(JobRow {
            id: r.get(0)?,
            notification_id: r.get(1)?,
            process_guid: r.get(2)?,
            state: r.get(3)?,
            created_ms: r.get(4)?,
            due_ms: r.get(5)?,
            started_ms: r.get(6)?,
            finished_ms: r.get(7)?,
            attempts: r.get(8)?,
            output_path: r.get(9)?,
            error: r.get(10)?,
            follow_until_ms: r.get(11)?,
            watermark: r.get(12)?,
            triggers: r.get(13)?,
            last_trigger_ms: r.get(14)?,
            exports: r.get(15)?,
            generation: r.get(16)?,
        })
    }
}

/// Jobs, newest first, optionally in one state.
pub fn list_jobs(conn: &Connection, state: Option<JobState>) -> Result<Vec<JobRow>, JobError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM export_jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([state.map(JobState::as_str)], JobRow::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One job by id.
pub fn job(conn: &Connection, id: i64) -> Result<Option<JobRow>, JobError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM export_jobs WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], JobRow::from_row).optional()?)
}

/// Retention for jobs: delete done and failed jobs that finished before `horizon_ms` and are no
/// longer followed, with their trigger rows, `chunk` jobs per short transaction (so the writer gets
/// the lock between chunks). Export directories on disk are left alone: they belong to the analysts.
/// Returns the number of jobs deleted.
pub fn purge_jobs(conn: &Connection, horizon_ms: i64, chunk: usize) -> Result<u64, JobError> {
    let mut total = 0u64;
    loop {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let ids: Vec<i64> = tx
            .prepare_cached(
                "SELECT id FROM export_jobs
                 WHERE state IN ('done', 'failed') AND finished_ms < ?1 AND follow_until_ms < ?1
                 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![horizon_ms, chunk.max(1) as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in &ids {
            tx.execute("DELETE FROM export_job_triggers WHERE job_id = ?1", [id])?;
            tx.execute("DELETE FROM export_jobs WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        total += ids.len() as u64;
        if ids.len() < chunk.max(1) {
            return Ok(total);
        }
    }
}

/// Open the database for the worker: read-write, existing, migrated to this binary's schema.
pub fn open_worker_db(path: &Path) -> Result<Connection, JobError> {
    if !path.exists() {
        return Err(JobError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(JobError::Schema {
            path: path.to_path_buf(),
            found: version,
            needed: SCHEMA_VERSION,
            hint: if version < SCHEMA_VERSION {
                "open it with the store writer first, which migrates it"
            } else {
                "upgrade cbtrail"
            },
        });
    }
    Ok(conn)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Retry delay after the `attempt`-th failure in a row.
fn backoff_ms(attempt: i64) -> i64 {
    let exp = attempt.clamp(1, 16) - 1;
    (30_000i64 << exp).min(15 * 60_000)
}

/// Event ids read per statement when looking for new events of followed jobs.
const SCAN_PAGE: i64 = 100_000;
/// Statements per round (the rest is read next round).
const SCAN_PAGES_PER_ROUND: u32 = 20;

/// What one [`Worker::tick`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Jobs exported successfully.
    pub exported: Vec<i64>,
    /// Jobs whose export failed (retried later or marked failed).
    pub failed: Vec<i64>,
    /// Done jobs sent back to pending because new events arrived.
    pub refollowed: Vec<i64>,
}

/// The job worker: its own connection, a cursor over new events, the loaded settings.
pub struct Worker {
    conn: Connection,
    settings: JobSettings,
    options: ExportOptions,
    /// Highest `events.id` already examined for followed jobs.
    cursor: i64,
}

impl Worker {
    /// Open the database and validate the settings.
    pub fn open(db: &Path, settings: JobSettings) -> Result<Worker, JobError> {
        let spec = settings.validate()?;
        let conn = open_worker_db(db)?;
        let options = settings.export_options(spec);
        Ok(Worker {
            conn,
            settings,
            options,
            cursor: 0,
        })
    }

    /// The worker's connection (tests, maintenance).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Start-up: jobs left `running` by a previous process were interrupted; make them due again.
    /// Position the new-event cursor at the lowest watermark still followed.
    pub fn recover(&mut self, now_ms: i64) -> Result<usize, JobError> {
        let n = self.conn.execute(
            "UPDATE export_jobs SET state = 'pending', due_ms = ?1,
                 error = 'interrupted: the worker stopped during this export'
             WHERE state = 'running'",
            [now_ms],
        )?;
        if n > 0 {
            tracing::warn!(jobs = n, "export jobs interrupted by a restart are retried");
        }
        // Pending jobs export a fresh snapshot anyway; only done jobs need the events after
        // their watermark examined.
        self.cursor = self.conn.query_row(
            "SELECT MIN(COALESCE((SELECT MAX(id) FROM event_rows), 0),
                        COALESCE((SELECT MIN(watermark) FROM export_jobs
                                  WHERE state = 'done' AND follow_until_ms > ?1), 1 << 62))",
            [now_ms],
            |r| r.get(0),
        )?;
        Ok(n)
    }

    /// One round: send followed jobs with new events back to pending, then export every due job.
    pub fn tick(&mut self, now_ms: i64) -> Result<TickReport, JobError> {
        let mut report = TickReport {
            refollowed: self.follow(now_ms)?,
            ..TickReport::default()
        };
        while let Some(claimed) = self.claim(now_ms)? {
            let started = std::time::Instant::now();
            match self.run(&claimed, now_ms) {
                Ok(()) => {
                    crate::metrics::export_finished(true, started.elapsed());
                    report.exported.push(claimed.id);
                }
                Err(e) => {
                    if self.fail(&claimed, now_ms, &e)? {
                        crate::metrics::export_finished(false, started.elapsed());
                    }
                    report.failed.push(claimed.id);
                }
            }
        }
        Ok(report)
    }

    /// Process sets of done jobs still in their follow window that have events newer than their
    /// watermark go back to pending.
    fn follow(&mut self, now_ms: i64) -> Result<Vec<i64>, JobError> {
        let following: Vec<(i64, String, i64)> = self
            .conn
            .prepare_cached(
                "SELECT id, process_guid, watermark FROM export_jobs
                 WHERE state = 'done' AND follow_until_ms > ?1",
            )?
            .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let max_id: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM event_rows", [], |r| {
                    r.get(0)
                })?;
        if following.is_empty() {
            self.cursor = max_id;
            return Ok(Vec::new());
        }
        let mut newest: HashMap<String, i64> = HashMap::new();
        let mut pages = 0;
        // Pages keep each statement short; a few per round catch up after a restart quickly.
        while self.cursor < max_id && pages < SCAN_PAGES_PER_ROUND {
            let upto = max_id.min(self.cursor.saturating_add(SCAN_PAGE));
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, process_guid FROM events
                 WHERE id > ?1 AND id <= ?2 AND process_guid IS NOT NULL",
            )?;
            let mut rows = stmt.query(params![self.cursor, upto])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let g: String = r.get(1)?;
                let e = newest.entry(g).or_insert(id);
                *e = (*e).max(id);
            }
            self.cursor = upto;
            pages += 1;
        }
        let mut changed = Vec::new();
        if newest.is_empty() {
            return Ok(changed);
        }
        for (id, guid, watermark) in following {
            let set = self.process_set(&guid)?;
            let fresh = set
                .iter()
                .any(|g| newest.get(g).is_some_and(|&n| n > watermark));
            if fresh {
                let n = self.conn.execute(
                    "UPDATE export_jobs SET state = 'pending', due_ms = ?2,
                         generation = generation + 1
                     WHERE id = ?1 AND state = 'done'",
                    params![id, now_ms.saturating_add(ms(self.settings.settle))],
                )?;
                if n > 0 {
                    changed.push(id);
                }
            }
        }
        Ok(changed)
    }

    /// The hit process and its descendants to `follow_childprocs` generations.
    fn process_set(&self, guid: &str) -> Result<HashSet<String>, JobError> {
        let mut set = HashSet::from([guid.to_string()]);
        match tree::descendants(&self.conn, guid, Some(self.settings.follow_childprocs)) {
            Ok(ds) => set.extend(ds.into_iter().map(|d| d.process.guid)),
            Err(TreeError::UnknownProcess(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(set)
    }

    /// Take the next due pending job, or give up one that has failed too often.
    fn claim(&self, now_ms: i64) -> Result<Option<JobRow>, JobError> {
        loop {
            // IMMEDIATE: take the write lock (waiting up to the busy timeout) before reading, so
            // the read-then-update cannot fail on a snapshot the store writer has moved past.
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let candidate: Option<JobRow> = tx
                .query_row(
                    &format!(
                        "SELECT {JOB_COLUMNS} FROM export_jobs
                         WHERE state = 'pending' AND due_ms <= ?1
                         ORDER BY due_ms, id LIMIT 1"
                    ),
                    [now_ms],
                    JobRow::from_row,
                )
                .optional()?;
            let Some(job) = candidate else {
                return Ok(None);
            };
            if job.attempts >= i64::from(self.settings.max_attempts) {
                tx.execute(
                    "UPDATE export_jobs SET state = 'failed', finished_ms = ?2,
                         error = 'gave up after ' || attempts || ' attempts: ' || COALESCE(error, '')
                     WHERE id = ?1 AND state = 'pending'",
                    params![job.id, now_ms],
                )?;
                tx.commit()?;
                tracing::error!(job = job.id, guid = %job.process_guid, "export job failed for good");
                crate::metrics::export_finished(false, Duration::ZERO);
                continue;
            }
            let n = tx.execute(
                "UPDATE export_jobs SET state = 'running', started_ms = ?2, attempts = attempts + 1
                 WHERE id = ?1 AND state = 'pending'",
                params![job.id, now_ms],
            )?;
            tx.commit()?;
            if n == 1 {
                return Ok(Some(JobRow {
                    state: "running".into(),
                    started_ms: Some(now_ms),
                    attempts: job.attempts + 1,
                    ..job
                }));
            }
        }
    }

    fn triggers(&self, job_id: i64) -> Result<Vec<Trigger>, JobError> {
        let ids: Vec<i64> = self
            .conn
            .prepare_cached(
                "SELECT notification_id FROM export_job_triggers WHERE job_id = ?1
                 ORDER BY received_ms, notification_id",
            )?
            .query_map([job_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for id in ids {
            // A notification removed by retention is simply no longer listed.
            out.extend(export::load_trigger(&self.conn, id)?);
        }
        Ok(out)
    }

    /// The directory of a job, fixed at its first export so re-exports replace it in place.
    fn destination(&self, job: &JobRow) -> Result<PathBuf, JobError> {
        if let Some(p) = &job.output_path {
            return Ok(PathBuf::from(p));
        }
        let p = tree::process(&self.conn, &job.process_guid)?
            .unwrap_or_else(|| tree::Process::placeholder(&job.process_guid));
        let iso = export::iso8601_ms(job.created_ms);
        let host = match (&p.hostname, p.sensor_id) {
            (Some(h), _) if !h.is_empty() => h.clone(),
            (_, Some(s)) => format!("sensor{s}"),
            _ => "unknown".into(),
        };
        let vars = [
            ("job", job.id.to_string()),
            ("guid", sanitize_component(&job.process_guid)),
            ("host", sanitize_component(&host)),
            (
                "sensor",
                p.sensor_id.map_or("unknown".into(), |s| s.to_string()),
            ),
            ("pid", p.pid.map_or("unknown".into(), |v| v.to_string())),
            ("name", sanitize_component(p.name())),
            ("date", iso[..10].to_string()),
            ("time", iso[11..19].replace(':', "")),
        ];
        let rel = render_pattern(&self.settings.dir_pattern, &vars)?;
        Ok(self.settings.output_dir.join(rel))
    }

    fn run(&self, job: &JobRow, now_ms: i64) -> Result<(), JobError> {
        let dest = self.destination(job)?;
        let req = ExportRequest {
            guid: job.process_guid.clone(),
            job_id: Some(job.id),
            triggers: self.triggers(job.id)?,
            allow_unknown: true,
        };
        let report = export::export_process(&self.conn, &req, &dest, &self.options)?;
        // A trigger or new events during the export bumped the generation: export again.
        self.conn.execute(
            "UPDATE export_jobs SET
                 state = CASE WHEN generation = ?2 THEN 'done' ELSE 'pending' END,
                 due_ms = CASE WHEN generation = ?2 THEN due_ms ELSE MAX(due_ms, ?3) END,
                 finished_ms = ?3, output_path = ?4, error = NULL, watermark = ?5,
                 exports = exports + 1, attempts = 0
             WHERE id = ?1",
            params![
                job.id,
                job.generation,
                now_ms,
                report.dir.to_string_lossy(),
                report.watermark
            ],
        )?;
        // No cursor rewind is needed: the cursor never passes the newest event id seen before
        // this round's exports started, and every export's watermark is at least that id.
        tracing::info!(
            job = job.id,
            guid = %job.process_guid,
            dir = %report.dir.display(),
            processes = report.processes,
            events = report.events,
            "export written"
        );
        Ok(())
    }

    /// Record a failed try; true when the job has now failed for good.
    fn fail(&self, job: &JobRow, now_ms: i64, e: &JobError) -> Result<bool, JobError> {
        tracing::warn!(job = job.id, guid = %job.process_guid, attempt = job.attempts, "export failed: {e}");
        self.conn.execute(
            "UPDATE export_jobs SET
                 state = CASE WHEN attempts >= ?4 THEN 'failed' ELSE 'pending' END,
                 due_ms = ?2, finished_ms = ?5, error = ?3
             WHERE id = ?1",
            params![
                job.id,
                now_ms.saturating_add(backoff_ms(job.attempts)),
                e.to_string(),
                i64::from(self.settings.max_attempts),
                now_ms
            ],
        )?;
        Ok(job.attempts >= i64::from(self.settings.max_attempts))
    }
}

/// Run the export worker until `stop` receives a message or its sender is dropped. Opens its own
/// connection to `db` (already created and migrated by the store writer). Errors inside a round
/// (a busy database, a full disk) are logged and retried next round; only start-up errors (missing
/// or unmigrated database, invalid settings) end the worker.
pub fn run_worker(db: PathBuf, settings: JobSettings, stop: Receiver<()>) -> Result<(), JobError> {
    let poll = settings.poll_interval;
    let mut worker = Worker::open(&db, settings)?;
    worker.recover(now_ms())?;
    tracing::info!(db = %db.display(), "export worker started");
    loop {
        if let Err(e) = worker.tick(now_ms()) {
            tracing::warn!("export worker round failed, retrying: {e}");
        }
        match stop.recv_timeout(poll) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    tracing::info!("export worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NotificationTarget, record_key};
    use crate::store::schema::MIGRATIONS;

    fn hit(guid: &str, tag: &[u8]) -> Notification {
        Notification {
            key: record_key(&[tag]),
            routing_key: "watchlist.1.hit.process".into(),
            kind: "watchlist.hit.process".into(),
            targets: vec![NotificationTarget {
                process_guid: Some(guid.into()),
                ..NotificationTarget::default()
            }],
            json: "{}".into(),
            ..Notification::default()
        }
    }

    fn store_hit(conn: &mut Connection, n: &Notification, now: i64, s: &JobSettings) {
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO notifications (notification_key, routing_key, type, json, received_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![n.key.as_slice(), n.routing_key, n.kind, n.json, now],
        )
        .unwrap();
        let id = tx.last_insert_rowid();
        enqueue_for_notification(&tx, id, n, now, s).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_trigger_during_an_export_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let mut conn = Connection::open(&db).unwrap();
        for (i, m) in MIGRATIONS.iter().enumerate() {
            conn.execute_batch(m).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        let s = JobSettings {
            output_dir: dir.path().join("out"),
            ..JobSettings::default()
        };
        let settle = ms(s.settle);
        let g = "00000001-0000-0001-01d1-209a100bc217";
        store_hit(&mut conn, &hit(g, b"1"), 1_000, &s);
        let mut w = Worker::open(&db, s.clone()).unwrap();
        w.recover(1_000).unwrap();
        let claimed = w.claim(1_000 + settle).unwrap().unwrap();
        assert_eq!(claimed.generation, 0);

        // A second hit arrives while the export runs: the job stays running.
        store_hit(&mut conn, &hit(g, b"2"), 2_000 + settle, &s);
        let j = job(&conn, claimed.id).unwrap().unwrap();
        assert_eq!(
            (j.state.as_str(), j.generation, j.triggers),
            ("running", 1, 2)
        );

        w.run(&claimed, 3_000 + settle).unwrap();
        let j = job(&conn, claimed.id).unwrap().unwrap();
        assert_eq!(j.state, "pending", "exported once more for the new trigger");
        assert_eq!(
            j.due_ms,
            2_000 + 2 * settle,
            "after the settle time of the new trigger"
        );
        assert_eq!(j.exports, 1);
        assert!(w.claim(2_000 + 2 * settle - 1).unwrap().is_none());
        let again = w.claim(2_000 + 2 * settle).unwrap().unwrap();
        w.run(&again, 2_000 + 2 * settle).unwrap();
        let j = job(&conn, claimed.id).unwrap().unwrap();
        assert_eq!((j.state.as_str(), j.exports), ("done", 2));
        let manifest = std::fs::read_to_string(
            Path::new(j.output_path.as_deref().unwrap()).join("manifest.json"),
        )
        .unwrap();
        let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(m["triggers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1), 30_000);
        assert_eq!(backoff_ms(2), 60_000);
        assert_eq!(backoff_ms(5), 480_000);
        assert_eq!(backoff_ms(6), 900_000);
        assert_eq!(backoff_ms(1_000), 900_000);
    }
}
