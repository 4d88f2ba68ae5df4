//! The batch writer: one connection, one thread, one transaction per batch.
//!
//! Every insert is idempotent by the record's content key, so a redelivered delivery adds nothing and
//! is counted as a duplicate. Process facts are merged per GUID in memory for the whole batch and
//! written once per process; a bounded cache of what each stored process row already knows lets the
//! common case (one more event of a process we already have) cost a single `last_event_ms` update
//! per process per batch instead of one upsert per event.

use super::checkpoint::Checkpointer;
use super::durable::WalSync;
use super::fast::{FastStatement, Param};
use super::{BatchStats, DEFAULT_BUSY_TIMEOUT, StoreError, known_schema_version, schema, sql_err};
use crate::model::{
    Binary, Event, EventType, FactRank, Notification, ProcessFacts, Quarantined, Record, RecordKey,
};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{
    CachedStatement, Connection, OptionalExtension, Transaction, TransactionBehavior, params,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `PRAGMA synchronous` of the writer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// A committed batch is on disk before it is acknowledged: a power loss never rolls back an
    /// acknowledged batch. The connection fsyncs the WAL at every commit, or, inside the ingest
    /// pipeline, the pipeline's sync thread does it for the writer (see [`Writer::defer_wal_sync`]).
    #[default]
    Full,
    /// fsync only at checkpoints: faster commits, but the last batches before a power loss (not a
    /// process crash) may roll back after they were acked.
    Normal,
}

impl Synchronous {
    /// The value of `PRAGMA synchronous` for this setting.
    pub fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Tuning of the writer connection.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub synchronous: Synchronous,
    /// How long to wait for a lock held by another connection (a reader checkpointing, a second
    /// writer) before failing the batch.
    pub busy_timeout: Duration,
    /// SQLite page cache of the writer connection, in MiB.
    pub cache_mib: u32,
    /// Page size of a database file this writer creates ([`DEFAULT_PAGE_SIZE`]); an existing file
    /// keeps its own.
    pub page_size: u32,
    /// Processes whose stored merge state is remembered between batches (0 disables the cache).
    pub process_cache_entries: usize,
    /// Checkpoint the WAL from a background thread at this interval (while there are new
    /// commits) instead of inside the commits of the writer thread. `None`: SQLite's automatic
    /// checkpoint on the writer thread every 1000 WAL pages.
    pub checkpoint_interval: Option<Duration>,
    /// Settle, coalesce and follow times of the export jobs a process hit creates, in the same
    /// transaction as the notification (see [`crate::jobs`]).
    pub jobs: crate::jobs::JobSettings,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            synchronous: Synchronous::Full,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            cache_mib: 64,
            page_size: DEFAULT_PAGE_SIZE,
            process_cache_entries: 200_000,
            checkpoint_interval: Some(Duration::from_millis(250)),
            jobs: crate::jobs::JobSettings::default(),
        }
    }
}

/// WAL size at which the writer checkpoints by itself although a checkpoint thread runs.
const BACKSTOP_CHECKPOINT_BYTES: i64 = 200 * 1024 * 1024;

/// Largest WAL file kept on disk once its frames are checkpointed; a larger one is truncated to
/// this size when the log starts over. Room for the WAL that ingest writes between checkpoints
/// (up to the backstop and a batch more): a WAL truncated below that had to grow again after
/// every checkpoint, and appending to a file (the filesystem allocating blocks, and each commit's
/// fsync then writing the file's metadata too) cost more than overwriting it in place. With 64 MiB
/// instead, offline replays of the bench's bundle traffic spent about an eighth longer in commits.
const WAL_KEEP_BYTES: i64 = 256 * 1024 * 1024;

/// Page size of a new database file: 16 KiB instead of SQLite's 4 KiB.
///
/// Ingest is dominated by appending event rows of a few hundred bytes, and every commit writes each
/// dirty page to the WAL as its own frame (two `pwrite`s, a checksum) and the checkpoint copies it
/// again. Larger pages mean fewer frames, B-tree splits and cell moves for the same bytes:
/// replaying a generated stream of one million bundle events cost the writer thread about a fifth
/// less CPU and the checkpoint thread half, against 4 KiB pages. 32 KiB gained nothing more, and
/// each page a commit touches for one small change (a process row) is written whole.
pub const DEFAULT_PAGE_SIZE: u32 = 16 * 1024;

/// The writer's maps are keyed by process GUIDs, tens of thousands of lookups per batch: a fast
/// hash (still randomly seeded per process) instead of SipHash took 2.4% off the writer thread's
/// instructions (callgrind, a replay of 200 generated zip bundles).
type GuidMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The single writer connection.
pub struct Writer {
    conn: Connection,
    path: PathBuf,
    ranks: RankCache,
    checkpointer: Option<Checkpointer>,
    jobs: crate::jobs::JobSettings,
    synchronous: Synchronous,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .field(
                "cached_processes",
                &(self.ranks.young.len() + self.ranks.old.len()),
            )
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Open (creating the file, not its directory, if needed) and migrate the database at `path`, in
    /// WAL mode with `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Writer, StoreError> {
        Writer::open_with(path, WriterOptions::default())
    }

    /// [`Writer::open`] with explicit options.
    pub fn open_with(path: &Path, opts: WriterOptions) -> Result<Writer, StoreError> {
        let err = sql_err(path);
        let mut conn = Connection::open(path).map_err(&err)?;
        conn.busy_timeout(opts.busy_timeout).map_err(&err)?;

        // Refuse a newer database before changing anything in it.
        known_schema_version(&conn, path)?;

        // auto_vacuum can only be chosen before the first table exists (afterwards it takes a full
        // VACUUM); retention relies on incremental_vacuum to give space back.
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(&err)?;
        // The same holds for the page size (and in WAL mode it can never change: an empty file
        // already in WAL mode keeps its page size, which is how a test picks one).
        if tables == 0 {
            conn.pragma_update(None, "page_size", opts.page_size)
                .map_err(&err)?;
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(&err)?;
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                path = %path.display(),
                journal_mode = %mode,
                "database is not in WAL mode: readers may block the writer"
            );
        }
        conn.pragma_update(None, "synchronous", opts.synchronous.pragma_value())
            .map_err(&err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(&err)?;
        conn.pragma_update(None, "cache_size", -(i64::from(opts.cache_mib) * 1024))
            .map_err(&err)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(&err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)
            .map_err(&err)?;
        conn.set_prepared_statement_cache_capacity(32);

        migrate(&mut conn, path)?;

        let checkpointer = match opts.checkpoint_interval {
            None => None,
            Some(interval) => {
                // Backstop only: the writer checkpoints itself if the thread falls this far behind.
                let page_size: i64 = conn
                    .pragma_query_value(None, "page_size", |r| r.get(0))
                    .map_err(&err)?;
                conn.pragma_update(
                    None,
                    "wal_autocheckpoint",
                    BACKSTOP_CHECKPOINT_BYTES / page_size.max(512),
                )
                .map_err(&err)?;
                Some(Checkpointer::start(
                    path,
                    interval,
                    opts.synchronous.pragma_value(),
                )?)
            }
        };

        Ok(Writer {
            conn,
            path: path.to_path_buf(),
            ranks: RankCache::new(opts.process_cache_entries),
            checkpointer,
            jobs: opts.jobs,
            synchronous: opts.synchronous,
        })
    }

    /// Store `records` in one transaction. Returns what was new once the transaction has committed.
    /// On error nothing of the batch is stored.
    pub fn write_batch(&mut self, records: &[Record]) -> Result<BatchStats, StoreError> {
        let err = sql_err(&self.path);
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let (stats, learned) = store_batch(&tx, &self.path, &self.ranks, &self.jobs, records, now)?;
        tx.commit().map_err(&err)?;
        if let Some(c) = &self.checkpointer {
            c.committed();
        }
        // Only committed state may enter the cache: a rolled-back batch must not be remembered.
        for (guid, state) in learned {
            self.ranks.insert(guid, state);
        }
        Ok(stats)
    }

    /// From now on commit without waiting for the disk; the returned [`WalSync`] makes the
    /// commits durable, and nothing may be acknowledged before its `sync` returns (see
    /// [`super::durable`]). `None` when this writer was not asked to sync at every commit
    /// (`synchronous=NORMAL`): then there is nothing to wait for. Also `None` for a database not
    /// in WAL mode, whose commits do not go to a WAL: its connection keeps syncing at commit.
    pub fn defer_wal_sync(&mut self) -> Result<Option<WalSync>, StoreError> {
        if self.synchronous != Synchronous::Full {
            return Ok(None);
        }
        let mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(sql_err(&self.path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        // Open first: if the WAL cannot be opened the connection keeps syncing by itself.
        let wal = WalSync::open(&self.path)?;
        self.conn
            .pragma_update(None, "synchronous", Synchronous::Normal.pragma_value())
            .map_err(sql_err(&self.path))?;
        Ok(Some(wal))
    }

    /// Settle and coalesce times for the export jobs of later batches (SIGHUP reload).
    pub fn set_job_settings(&mut self, jobs: crate::jobs::JobSettings) {
        self.jobs = jobs;
    }

    /// Forget the cached merge state of stored processes. Call after deleting `processes` rows by
    /// other means than this writer (retention), so that a later fact re-creates them.
    pub fn forget_cached_processes(&mut self) {
        self.ranks.clear();
    }

    /// The underlying connection (tests, maintenance).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Apply the missing migrations, one transaction each. The version is re-read inside the write
/// transaction so two processes opening the same new file cannot both apply a migration.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = sql_err(path);
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let version = known_schema_version(&tx, path)?;
        if version == schema::SCHEMA_VERSION {
            return Ok(());
        }
        // `version` is in 0..SCHEMA_VERSION here, a valid index.
        let script = schema::MIGRATIONS[version as usize];
        tracing::info!(path = %path.display(), version = version + 1, "migrating the database");
        let keepalive = Keepalive::start(format!(
            "migrating {} to schema version {}",
            path.display(),
            version + 1
        ));
        tx.execute_batch(script).map_err(&err)?;
        drop(keepalive);
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        tracing::info!(path = %path.display(), version = version + 1, "database migrated");
    }
}

/// While a migration runs (V4 rewrites every event: minutes on a large file), keep extending
/// systemd's start timeout so the service is not killed and restarted into the same migration.
struct Keepalive {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keepalive {
    const EVERY: Duration = Duration::from_secs(10);

    fn start(status: String) -> Keepalive {
        Keepalive::start_with(Keepalive::EVERY, move || {
            crate::shutdown::notify_extend_timeout(&status, Keepalive::EVERY * 3)
        })
    }

    /// Call `extend` now and then every `every` until dropped.
    fn start_with(every: Duration, extend: impl Fn() + Send + 'static) -> Keepalive {
        extend();
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cbtrail-migrate".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let Ok(mut stopped) = lock.lock() else { return };
                // The flag is checked before every wait: a stop signalled before this thread
                // first waits must not be missed (it made every migration last `every`).
                while !*stopped {
                    match cv.wait_timeout(stopped, every) {
                        Ok((guard, _)) => stopped = guard,
                        Err(_) => return,
                    }
                    if !*stopped {
                        extend();
                    }
                }
            })
            .ok();
        Keepalive { stop, thread }
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The columns of an event row the writer fills, in parameter order.
const EVENT_COLUMNS: &str = "segment_id, event_key, timestamp_ms, event_type, path, md5, sha256, \
     action, target_guid, remote_ip, remote_port, local_ip, local_port, protocol, direction, domain, \
     command_line, username, details";
const EVENT_PARAMS: usize = 19;

/// Events per INSERT statement. Run once per row, a statement spent about a tenth of the writer's
/// instructions on starting and finishing itself (opening a cursor per index, resetting the
/// program) rather than on the row.
const ROWS_PER_INSERT: usize = 16;

/// `INSERT INTO event_rows` of `rows` rows. Each row gets the next id (one more than the
/// largest), the id [`claim_keys`] expects; the writer checks that it did.
///
/// `OR IGNORE`, not a plain `INSERT`: a statement that inserts several rows and may abort half-way
/// (a NOT NULL column bound NULL) keeps a statement journal, a copy of every page it touches, and
/// that cost more than the rows. With `OR IGNORE` nothing can abort it. The writer never binds
/// NULL to a NOT NULL column.
///
/// Without an explicit id: with one, SQLite looked each id up before inserting its row, and the
/// writer's profile showed the statement journal again (`subjournalPage`, 6% of its samples in
/// `malloc`).
fn insert_events_sql(rows: usize) -> String {
    values_sql(
        "INSERT OR IGNORE INTO event_rows",
        EVENT_COLUMNS,
        EVENT_PARAMS,
        rows,
    )
}

/// `INSERT OR IGNORE INTO event_keys` of `rows` keys: a key already there is a duplicate event.
fn insert_keys_sql(rows: usize) -> String {
    values_sql(
        "INSERT OR IGNORE INTO event_keys",
        "timestamp_ms, event_key, event_id",
        3,
        rows,
    )
}

/// `{insert} ({columns}) VALUES (?, …), …` with `rows` rows of `params` parameters.
fn values_sql(insert: &str, columns: &str, params: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; params].join(", "));
    format!(
        "{insert} ({columns}) VALUES {}",
        vec![row.as_str(); rows].join(", ")
    )
}

/// The row a stored key belongs to.
const KEY_OWNER: &str =
    "SELECT event_id FROM event_keys WHERE timestamp_ms = ?1 AND event_key = ?2";

const RENUMBER_KEY: &str =
    "UPDATE event_keys SET event_id = ?1 WHERE timestamp_ms = ?2 AND event_key = ?3";

const MAX_EVENT_ID: &str = "SELECT coalesce(max(id), 0) FROM event_rows";

const INSERT_SEGMENT: &str = "INSERT INTO event_segments (id, first_id, last_id, process_guid, \
     sensor_id, hostname, pid, process_path, process_md5, process_sha256, received_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

const NEXT_SEGMENT: &str = "SELECT coalesce(max(id), 0) + 1 FROM event_segments";

const INSERT_BINARY: &str = "INSERT INTO binaries (md5, sha256, size, sensor_id, hostname, \
     timestamp_ms, file_description, company_name, product_name, file_version, original_filename, \
     digsig_result, digsig_publisher, details, received_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
     ON CONFLICT DO NOTHING";

/// Fill the empty columns of a stored binary; changes nothing (0 rows) when there is nothing new.
const FILL_BINARY: &str = "UPDATE binaries SET sha256 = coalesce(sha256, ?2), \
     size = coalesce(size, ?3), sensor_id = coalesce(sensor_id, ?4), \
     hostname = coalesce(hostname, ?5), file_description = coalesce(file_description, ?6), \
     company_name = coalesce(company_name, ?7), product_name = coalesce(product_name, ?8), \
     file_version = coalesce(file_version, ?9), \
     original_filename = coalesce(original_filename, ?10), \
     digsig_result = coalesce(digsig_result, ?11), \
     digsig_publisher = coalesce(digsig_publisher, ?12) \
     WHERE md5 = ?1 AND ((sha256 IS NULL AND ?2 IS NOT NULL) OR (size IS NULL AND ?3 IS NOT NULL) \
     OR (sensor_id IS NULL AND ?4 IS NOT NULL) OR (hostname IS NULL AND ?5 IS NOT NULL) \
     OR (file_description IS NULL AND ?6 IS NOT NULL) OR (company_name IS NULL AND ?7 IS NOT NULL) \
     OR (product_name IS NULL AND ?8 IS NOT NULL) OR (file_version IS NULL AND ?9 IS NOT NULL) \
     OR (original_filename IS NULL AND ?10 IS NOT NULL) \
     OR (digsig_result IS NULL AND ?11 IS NOT NULL) \
     OR (digsig_publisher IS NULL AND ?12 IS NOT NULL))";

const INSERT_NOTIFICATION: &str = "INSERT INTO notifications (notification_key, routing_key, type, \
     watchlist_id, watchlist_name, feed_id, feed_name, timestamp_ms, process_guid, segment, \
     sensor_id, hostname, md5, json, received_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
     ON CONFLICT DO NOTHING";

const INSERT_TARGET: &str = "INSERT INTO notification_targets (notification_id, idx, process_guid, \
     segment, sensor_id, hostname, md5) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const INSERT_QUARANTINE: &str = "INSERT INTO quarantine (quarantine_key, exchange, routing_key, \
     content_type, headers, reason, error, body, received_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING";

const UPSERT_SENSOR: &str = "INSERT INTO sensors (sensor_id, hostname, first_event_ms, \
     last_event_ms, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
     ON CONFLICT (sensor_id) DO UPDATE SET hostname = coalesce(excluded.hostname, hostname), \
     first_event_ms = coalesce(min(first_event_ms, excluded.first_event_ms), first_event_ms, \
     excluded.first_event_ms), \
     last_event_ms = coalesce(max(last_event_ms, excluded.last_event_ms), last_event_ms, \
     excluded.last_event_ms), \
     last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)";

const SELECT_PROCESS: &str = "SELECT parent_guid, sensor_id, hostname, pid, path, cmdline, md5, \
     sha256, username, start_ms, end_ms, fact_rank, column_ranks, last_event_ms \
     FROM processes WHERE guid = ?1";

const INSERT_PROCESS: &str = "INSERT INTO processes (guid, parent_guid, sensor_id, hostname, pid, \
     path, cmdline, md5, sha256, username, start_ms, end_ms, inferred, fact_rank, column_ranks, \
     first_seen_ms, last_event_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

/// Same parameters as [`INSERT_PROCESS`] (see [`write_process`]); `?16`, `first_seen_ms`, stays.
const UPDATE_PROCESS: &str = "UPDATE processes SET parent_guid = ?2, sensor_id = ?3, hostname = ?4, \
     pid = ?5, path = ?6, cmdline = ?7, md5 = ?8, sha256 = ?9, username = ?10, start_ms = ?11, \
     end_ms = ?12, inferred = ?13, fact_rank = ?14, column_ranks = ?15, last_event_ms = ?17 \
     WHERE guid = ?1";

/// [`UPDATE_PROCESS`] for a row whose `parent_guid`, `hostname` and `start_ms` stay as they are
/// (same parameters, those three unused). SQLite rewrites the entries of every index whose
/// columns an UPDATE sets, equal or not: setting them anyway moved each updated process's entries
/// in `processes_parent` and `processes_host` out and back in, for a procend or a late md5.
const UPDATE_PROCESS_KEEPING_KEYS: &str = "UPDATE processes SET sensor_id = ?3, pid = ?5, \
     path = ?6, cmdline = ?7, md5 = ?8, sha256 = ?9, username = ?10, end_ms = ?12, inferred = ?13, \
     fact_rank = ?14, column_ranks = ?15, last_event_ms = ?17 WHERE guid = ?1";

const TOUCH_PROCESS: &str = "UPDATE processes \
     SET last_event_ms = max(coalesce(last_event_ms, ?2), ?2) WHERE guid = ?1";

/// The event_type column value of an event whose type decode could not tell.
const UNKNOWN_EVENT_TYPE: &str = "unknown";

/// Process merge states to remember once the batch has committed.
type Learned<'r> = Vec<(&'r str, RowRanks)>;

/// Everything of one batch, inside its (not yet committed) transaction. Returns the statistics and
/// the process merge states to remember once the transaction commits.
fn store_batch<'r>(
    tx: &Transaction<'_>,
    path: &Path,
    cache: &RankCache,
    jobs: &crate::jobs::JobSettings,
    records: &'r [Record],
    now: i64,
) -> Result<(BatchStats, Learned<'r>), StoreError> {
    let err = sql_err(path);
    let mut stats = BatchStats::default();
    let mut processes: GuidMap<&'r str, Pending<'r>> = GuidMap::default();
    let mut sensors = Sensors::default();
    let mut by_type = [0u64; EventType::ALL.len()];
    let stored = store_events(tx, path, records, now)?;
    let mut stmts = RecordStatements::default();

    // Everything that depends on arrival order (process facts of equal rank: the first wins; a
    // sensor's latest host name) is learned in record order, whatever order the events were
    // stored in.
    for (record, &is_new) in records.iter().zip(&stored.new) {
        match record {
            Record::Event(e) => {
                if is_new {
                    stats.events += 1;
                    if let Some(t) = e.event_type {
                        by_type[t as usize] += 1;
                    }
                    for f in &e.processes {
                        learn_fact(&mut processes, f);
                    }
                    sensors.see(e.sensor_id, e.hostname.as_deref(), e.timestamp_ms);
                } else {
                    stats.duplicates += 1;
                }
            }
            Record::Binary(b) => match store_binary(tx, &mut stmts, b, now, path)? {
                BinaryOutcome::New => {
                    stats.binaries += 1;
                    sensors.see(b.sensor_id, b.hostname.as_deref(), b.timestamp_ms);
                }
                BinaryOutcome::Filled => stats.binaries_updated += 1,
                BinaryOutcome::Duplicate => stats.duplicates += 1,
            },
            Record::Notification(n) => {
                if let Some(id) = store_notification(tx, &mut stmts, n, now, path)? {
                    stats.notifications += 1;
                    *stats
                        .notifications_by_kind
                        .entry(n.kind.clone())
                        .or_default() += 1;
                    // A process hit gets its export job in this same transaction: a stored hit
                    // always has its job.
                    crate::jobs::enqueue(tx, id, n, now, jobs).map_err(&err)?;
                    for f in &n.processes {
                        learn_fact(&mut processes, f);
                    }
                    let ts = n.timestamp_ms.unwrap_or(0);
                    sensors.see(n.sensor_id, n.hostname.as_deref(), ts);
                    for t in &n.targets {
                        sensors.see(t.sensor_id, t.hostname.as_deref(), ts);
                    }
                } else {
                    stats.duplicates += 1;
                }
            }
            Record::Quarantined(q) => {
                if store_quarantined(tx, &mut stmts, q, now, path)? {
                    stats.quarantined += 1;
                    *stats
                        .quarantined_by_reason
                        .entry(q.reason.as_str())
                        .or_default() += 1;
                } else {
                    stats.duplicates += 1;
                }
            }
        }
    }

    for (t, n) in EventType::ALL.into_iter().zip(by_type) {
        if n > 0 {
            stats.events_by_type.insert(t, n);
        }
    }
    // A process's latest event time is a maximum: per segment, in any order.
    for &(guid, ts) in &stored.latest {
        let p = processes.entry(guid).or_default();
        p.last_event_ms = Some(p.last_event_ms.map_or(ts, |t| t.max(ts)));
    }

    let learned = apply_processes(tx, path, cache, processes, now, &mut stats)?;

    let mut upsert_sensor = tx.prepare_cached(UPSERT_SENSOR).map_err(&err)?;
    let mut sensors = sensors.seen;
    sensors.sort_unstable_by_key(|s| s.id);
    for s in sensors {
        upsert_sensor
            .execute(params![s.id, s.hostname, s.first, s.last, now])
            .map_err(&err)?;
    }
    Ok((stats, learned))
}

/// What [`store_events`] stored.
struct StoredEvents<'r> {
    /// Per record: an event that was new (not a duplicate).
    new: Vec<bool>,
    /// Per stored segment with a process GUID: the latest time of its new events (0 = none).
    latest: Vec<(&'r str, i64)>,
}

/// The columns an event shares with the other events of its segment: the acting process as the
/// event's header describes it.
#[derive(PartialEq, Eq)]
struct SegmentKey<'r> {
    process_guid: Option<&'r str>,
    sensor_id: Option<i64>,
    hostname: Option<&'r str>,
    pid: Option<i64>,
    process_path: Option<&'r str>,
    process_md5: Option<&'r str>,
    process_sha256: Option<&'r str>,
}

impl<'r> SegmentKey<'r> {
    fn of(e: &'r Event) -> SegmentKey<'r> {
        SegmentKey {
            process_guid: e.process_guid.as_deref(),
            sensor_id: e.sensor_id,
            hostname: e.hostname.as_deref(),
            pid: e.pid,
            process_path: e.process_path.as_deref(),
            process_md5: e.process_md5.as_deref(),
            process_sha256: e.process_sha256.as_deref(),
        }
    }
}

/// Store the batch's events grouped into segments (see `schema::V4`): the events of one process
/// in arrival order, one process after another in order of first appearance, so each segment's
/// rows get consecutive ids and a process's ids follow arrival order. Within a process a new
/// segment starts wherever the header's description of the process changes.
fn store_events<'r>(
    tx: &Transaction<'_>,
    path: &Path,
    records: &'r [Record],
    now: i64,
) -> Result<StoredEvents<'r>, StoreError> {
    let err = sql_err(path);
    let mut stored = StoredEvents {
        new: vec![false; records.len()],
        latest: Vec::new(),
    };
    let mut by_process: GuidMap<Option<&str>, usize> = GuidMap::default();
    let mut processes: Vec<Vec<(usize, &'r Event)>> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let Record::Event(e) = record else { continue };
        let n = processes.len();
        let p = *by_process.entry(e.process_guid.as_deref()).or_insert(n);
        if p == n {
            processes.push(Vec::new());
        }
        processes[p].push((i, e));
    }
    if processes.is_empty() {
        return Ok(stored);
    }

    // Every segment gets its id up front; one whose events all turn out to be duplicates is not
    // stored, which leaves a gap in the ids and nothing else.
    let first_segment: i64 = tx.query_row(NEXT_SEGMENT, [], |r| r.get(0)).map_err(&err)?;
    let segments: Vec<&[(usize, &'r Event)]> = processes
        .iter()
        .flat_map(|members| {
            members.chunk_by(|(_, a), (_, b)| {
                a.segment_tag.same_columns(b.segment_tag) || SegmentKey::of(a) == SegmentKey::of(b)
            })
        })
        .collect();
    let rows: Vec<(i64, &'r Event)> = segments
        .iter()
        .zip(first_segment..)
        .flat_map(|(members, id)| members.iter().map(move |&(_, e)| (id, e)))
        .collect();

    // Every row gets its id up front, consecutive in `rows` order, so a segment's rows are
    // consecutive; a duplicate gets none.
    let first_id: i64 = tx
        .query_row(MAX_EVENT_ID, [], |r| r.get::<_, i64>(0))
        .map_err(&err)?
        + 1;
    let ids = claim_keys(tx, path, &rows, first_id)?;

    let fresh: Vec<(i64, i64, &Event)> = rows
        .iter()
        .zip(&ids)
        .filter_map(|(&(segment, e), id)| id.map(|id| (id, segment, e)))
        .collect();
    let mut insert = ChunkedInsert::prepare(tx, path, insert_events_sql)?;
    insert.run(
        &fresh,
        |params, (_, segment, e)| push_event_params(params, *segment, e),
        |part, added| {
            let last = part[part.len() - 1].0;
            if added != part.len() || tx.last_insert_rowid() != last {
                return Err(StoreError::Inconsistent {
                    path: path.to_path_buf(),
                    what: format!(
                        "event rows {}..={last} were stored as {added} rows ending at id {}",
                        part[0].0,
                        tx.last_insert_rowid()
                    ),
                });
            }
            Ok(())
        },
    )?;

    // Through `FastStatement` too: single events of a batch belong to nearly as many processes,
    // so there is about one segment per event, and rusqlite's copying binds cost about 1% of the
    // writer's instructions for them.
    let mut ins_segment = FastStatement::prepare(tx, INSERT_SEGMENT).map_err(&err)?;
    let mut next = 0;
    for (members, segment) in segments.iter().zip(first_segment..) {
        let row_ids = &ids[next..next + members.len()];
        next += members.len();
        let mut range: Option<(i64, i64)> = None;
        let mut latest = 0;
        for (&(i, e), id) in members.iter().zip(row_ids) {
            let Some(id) = *id else { continue };
            range = Some(range.map_or((id, id), |(first, last)| (first.min(id), last.max(id))));
            stored.new[i] = true;
            latest = latest.max(e.timestamp_ms);
        }
        let Some((first, last)) = range else { continue };
        let key = SegmentKey::of(members[0].1);
        if let Some(guid) = key.process_guid.filter(|g| !g.is_empty())
            && latest > 0
        {
            stored.latest.push((guid, latest));
        }
        ins_segment
            .execute(&[
                Param::Int(segment),
                Param::Int(first),
                Param::Int(last),
                key.process_guid.into(),
                key.sensor_id.into(),
                key.hostname.into(),
                key.pid.into(),
                key.process_path.into(),
                key.process_md5.into(),
                key.process_sha256.into(),
                Param::Int(now),
            ])
            .map_err(&err)?;
    }
    Ok(stored)
}

/// A multi-row INSERT run over a slice: [`ROWS_PER_INSERT`] items per statement, and the rest one
/// by one, so a batch needs two prepared statements whatever its size.
struct ChunkedInsert<'c> {
    multi: FastStatement<'c>,
    single: FastStatement<'c>,
    path: &'c Path,
}

impl<'c> ChunkedInsert<'c> {
    /// `sql(n)` is the statement for `n` rows.
    fn prepare(
        tx: &'c Transaction<'_>,
        path: &'c Path,
        sql: fn(usize) -> String,
    ) -> Result<ChunkedInsert<'c>, StoreError> {
        let err = sql_err(path);
        Ok(ChunkedInsert {
            multi: FastStatement::prepare(tx, &sql(ROWS_PER_INSERT)).map_err(&err)?,
            single: FastStatement::prepare(tx, &sql(1)).map_err(&err)?,
            path,
        })
    }

    /// Insert `items`: `bind` appends one item's parameters; `done` is told, after each
    /// statement, which items it had and how many rows it added.
    fn run<'a, T>(
        &mut self,
        items: &'a [T],
        bind: impl Fn(&mut Vec<Param<'a>>, &'a T),
        mut done: impl FnMut(&'a [T], usize) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let err = sql_err(self.path);
        let mut params: Vec<Param<'a>> = Vec::new();
        for chunk in items.chunks(ROWS_PER_INSERT) {
            let (stmt, rows_per) = if chunk.len() == ROWS_PER_INSERT {
                (&mut self.multi, ROWS_PER_INSERT)
            } else {
                (&mut self.single, 1)
            };
            for part in chunk.chunks(rows_per) {
                params.clear();
                for item in part {
                    bind(&mut params, item);
                }
                let added = stmt.execute(&params).map_err(&err)?;
                done(part, added)?;
            }
        }
        Ok(())
    }
}

/// Store the keys of `rows` in `event_keys`; returns the id each new row is to get (consecutive
/// from `first_id`, in `rows` order) and `None` for a duplicate. Keys go in key order, so each
/// lands next to the previous one in the B-tree, at its right-hand edge while events arrive in
/// time order; in the rows' own order (by process) they would land all over the batch's time
/// window. Of two equal keys in one batch the earlier row is the one stored.
fn claim_keys(
    tx: &Transaction<'_>,
    path: &Path,
    rows: &[(i64, &Event)],
    first_id: i64,
) -> Result<Vec<Option<i64>>, StoreError> {
    let err = sql_err(path);
    // Sorted as plain tuples: a comparison that followed each row's pointer to its event cost
    // more than inserting the keys.
    let mut sorted: Vec<(i64, RecordKey, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, (_, e))| (e.timestamp_ms, e.key, i))
        .collect();
    sorted.sort_unstable();
    let mut new = vec![true; rows.len()];
    let mut owner = tx.prepare_cached(KEY_OWNER).map_err(&err)?;
    let mut insert = ChunkedInsert::prepare(tx, path, insert_keys_sql)?;
    insert.run(
        &sorted,
        |params, (ts, key, i)| {
            params.extend_from_slice(&[
                Param::Int(*ts),
                Param::Blob(key),
                Param::Int(first_id + *i as i64),
            ])
        },
        |part, added| {
            if added < part.len() {
                // Some keys were there already: a key is this row's if it names this row's id.
                for (ts, key, i) in part {
                    let id: i64 = owner
                        .query_row(params![ts, &key[..]], |r| r.get(0))
                        .map_err(&err)?;
                    new[*i] = id == first_id + *i as i64;
                }
            }
            Ok(())
        },
    )?;
    // Each key went in naming row `i` as `first_id + i`. After a duplicate the new rows' ids
    // close up, and their keys are pointed at them.
    let mut ids = Vec::with_capacity(rows.len());
    let mut next = first_id;
    let mut renumber = tx.prepare_cached(RENUMBER_KEY).map_err(&err)?;
    for (i, &new) in new.iter().enumerate() {
        if !new {
            ids.push(None);
            continue;
        }
        if next != first_id + i as i64 {
            let e = rows[i].1;
            renumber
                .execute(params![next, e.timestamp_ms, &e.key[..]])
                .map_err(&err)?;
        }
        ids.push(Some(next));
        next += 1;
    }
    Ok(ids)
}

/// The parameters of one event row, in [`EVENT_COLUMNS`] order.
fn push_event_params<'a>(params: &mut Vec<Param<'a>>, segment: i64, e: &'a Event) {
    let event_type = e.event_type.map_or(UNKNOWN_EVENT_TYPE, |t| t.as_str());
    params.extend_from_slice(&[
        Param::Int(segment),
        Param::Blob(&e.key),
        Param::Int(e.timestamp_ms),
        Param::Text(event_type),
        e.path.as_deref().into(),
        e.md5.as_deref().into(),
        e.sha256.as_deref().into(),
        e.action.as_deref().into(),
        e.target_guid.as_deref().into(),
        e.remote_ip.as_deref().into(),
        e.remote_port.into(),
        e.local_ip.as_deref().into(),
        e.local_port.into(),
        e.protocol.as_deref().into(),
        e.direction.as_deref().into(),
        e.domain.as_deref().into(),
        e.command_line.as_deref().into(),
        e.username.as_deref().into(),
        Param::Text(details_text(&e.details)),
    ]);
}

/// The stored `details` of a record: its JSON text, `{}` when it has none.
fn details_text(details: &str) -> &str {
    if details.is_empty() { "{}" } else { details }
}

/// The statements a batch runs once per binary, notification or quarantined record, each prepared
/// at its first use in the batch. Fetched from the connection's statement cache per record, they
/// cost a hash and a comparison of their whole SQL text each time, which for a batch with
/// thousands of module messages was more than binding them.
#[derive(Default)]
struct RecordStatements<'t> {
    insert_binary: Option<CachedStatement<'t>>,
    fill_binary: Option<CachedStatement<'t>>,
    insert_notification: Option<CachedStatement<'t>>,
    insert_target: Option<CachedStatement<'t>>,
    insert_quarantine: Option<CachedStatement<'t>>,
}

/// The statement in `slot`, prepared now if the batch has not used it yet.
fn prepared<'s, 't>(
    slot: &'s mut Option<CachedStatement<'t>>,
    tx: &'t Transaction<'_>,
    sql: &str,
) -> rusqlite::Result<&'s mut CachedStatement<'t>> {
    Ok(match slot {
        Some(stmt) => stmt,
        empty @ None => empty.insert(tx.prepare_cached(sql)?),
    })
}

enum BinaryOutcome {
    New,
    Filled,
    Duplicate,
}

fn store_binary<'t>(
    tx: &'t Transaction<'_>,
    stmts: &mut RecordStatements<'t>,
    b: &Binary,
    now: i64,
    path: &Path,
) -> Result<BinaryOutcome, StoreError> {
    let err = sql_err(path);
    let inserted = prepared(&mut stmts.insert_binary, tx, INSERT_BINARY)
        .and_then(|s| {
            s.execute(params![
                b.md5,
                b.sha256,
                b.size,
                b.sensor_id,
                b.hostname,
                b.timestamp_ms,
                b.file_description,
                b.company_name,
                b.product_name,
                b.file_version,
                b.original_filename,
                b.digsig_result,
                b.digsig_publisher,
                details_text(&b.details),
                now,
            ])
        })
        .map_err(&err)?;
    if inserted == 1 {
        return Ok(BinaryOutcome::New);
    }
    let filled = prepared(&mut stmts.fill_binary, tx, FILL_BINARY)
        .and_then(|s| {
            s.execute(params![
                b.md5,
                b.sha256,
                b.size,
                b.sensor_id,
                b.hostname,
                b.file_description,
                b.company_name,
                b.product_name,
                b.file_version,
                b.original_filename,
                b.digsig_result,
                b.digsig_publisher,
            ])
        })
        .map_err(&err)?;
    Ok(if filled == 1 {
        BinaryOutcome::Filled
    } else {
        BinaryOutcome::Duplicate
    })
}

/// Insert a notification and its targets; its row id, or `None` when its key is already stored.
fn store_notification<'t>(
    tx: &'t Transaction<'_>,
    stmts: &mut RecordStatements<'t>,
    n: &Notification,
    now: i64,
    path: &Path,
) -> Result<Option<i64>, StoreError> {
    let err = sql_err(path);
    let inserted = prepared(&mut stmts.insert_notification, tx, INSERT_NOTIFICATION)
        .and_then(|s| {
            s.execute(params![
                n.key,
                n.routing_key,
                n.kind,
                n.watchlist_id,
                n.watchlist_name,
                n.feed_id,
                n.feed_name,
                n.timestamp_ms,
                n.process_guid,
                n.segment,
                n.sensor_id,
                n.hostname,
                n.md5,
                n.json,
                now,
            ])
        })
        .map_err(&err)?;
    if inserted == 0 {
        return Ok(None);
    }
    let id = tx.last_insert_rowid();
    let ins = prepared(&mut stmts.insert_target, tx, INSERT_TARGET).map_err(&err)?;
    for (idx, t) in n.targets.iter().enumerate() {
        ins.execute(params![
            id,
            idx as i64,
            t.process_guid,
            t.segment,
            t.sensor_id,
            t.hostname,
            t.md5,
        ])
        .map_err(&err)?;
    }
    Ok(Some(id))
}

/// Insert a quarantined input; false when its key is already stored.
fn store_quarantined<'t>(
    tx: &'t Transaction<'_>,
    stmts: &mut RecordStatements<'t>,
    q: &Quarantined,
    now: i64,
    path: &Path,
) -> Result<bool, StoreError> {
    let headers = serde_json::to_string(&q.headers).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        what: "quarantine headers",
        source,
    })?;
    let inserted = prepared(&mut stmts.insert_quarantine, tx, INSERT_QUARANTINE)
        .and_then(|s| {
            s.execute(params![
                q.key,
                q.exchange,
                q.routing_key,
                q.content_type,
                headers,
                q.reason.as_str(),
                q.error,
                q.body,
                now,
            ])
        })
        .map_err(sql_err(path))?;
    Ok(inserted == 1)
}

/// What the batch saw of one sensor.
struct SensorSeen<'r> {
    id: i64,
    hostname: Option<&'r str>,
    first: Option<i64>,
    last: Option<i64>,
}

/// The sensors a batch saw. A batch holds a few sensors and long runs of records from each, so a
/// list with the last one found first beats hashing the id of every record.
#[derive(Default)]
struct Sensors<'r> {
    seen: Vec<SensorSeen<'r>>,
    last: usize,
}

impl<'r> Sensors<'r> {
    fn see(&mut self, id: Option<i64>, hostname: Option<&'r str>, ts: i64) {
        let Some(id) = id else { return };
        let i = match self.seen.get(self.last) {
            Some(s) if s.id == id => self.last,
            _ => match self.seen.iter().position(|s| s.id == id) {
                Some(i) => i,
                None => {
                    self.seen.push(SensorSeen {
                        id,
                        hostname: None,
                        first: None,
                        last: None,
                    });
                    self.seen.len() - 1
                }
            },
        };
        self.last = i;
        let s = &mut self.seen[i];
        if hostname.is_some() {
            s.hostname = hostname;
        }
        // 0 is "the header had no time", not 1970.
        if ts > 0 {
            s.first = Some(s.first.map_or(ts, |f| f.min(ts)));
            s.last = Some(s.last.map_or(ts, |l| l.max(ts)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process merge

/// The `processes` columns that facts fill, in `column_ranks` bit order.
const PROCESS_COLUMNS: [&str; 11] = [
    "parent_guid",
    "sensor_id",
    "hostname",
    "pid",
    "path",
    "cmdline",
    "md5",
    "sha256",
    "username",
    "start_ms",
    "end_ms",
];
const NCOLS: usize = PROCESS_COLUMNS.len();
/// The [`PROCESS_COLUMNS`] that `processes_parent` and `processes_host` index: `parent_guid`,
/// `hostname`, `start_ms`.
const INDEXED_COLUMNS: [usize; 3] = [0, 2, 9];
/// Bits per column in `column_ranks`: 0 = NULL, `rank + 1` = set by a fact of that rank.
const RANK_BITS: u32 = 3;

fn rank_of(f: &ProcessFacts) -> u8 {
    // A fact that does not say where it comes from is taken as seen in a header: above a mere
    // parent reference, below what childproc/procstart tell.
    f.rank.unwrap_or(FactRank::Observed) as u8
}

/// Merge state of one process: per column, the value and the rank of the fact it came from.
///
/// The rule, per column: a value from a fact of higher rank than the one that set the column
/// replaces it; otherwise it only fills an empty column. Tracking the rank per column (not only per
/// row) makes the result independent of arrival order except between facts of equal rank (first
/// wins): the value is always the one of the highest-ranked fact that had it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Merged<'a> {
    cols: [Option<(ValueRef<'a>, u8)>; NCOLS],
    /// Highest rank of any fact merged (the row's `fact_rank`).
    max_rank: Option<u8>,
}

impl<'a> Merged<'a> {
    fn put(&mut self, i: usize, v: Option<ValueRef<'a>>, rank: u8) {
        let Some(v) = v else { return };
        match self.cols[i] {
            Some((_, r)) if r >= rank => {}
            _ => self.cols[i] = Some((v, rank)),
        }
    }

    fn add_fact(&mut self, f: &'a ProcessFacts) {
        let rank = rank_of(f);
        self.max_rank = Some(self.max_rank.map_or(rank, |m| m.max(rank)));
        let text = |s: &'a Option<String>| s.as_deref().map(|s| ValueRef::Text(s.as_bytes()));
        let int = |i: Option<i64>| i.map(ValueRef::Integer);
        // A process is never its own parent (bad data or a GUID collision); keep the rest.
        let parent = f
            .parent_guid
            .as_deref()
            .filter(|p| !p.is_empty() && *p != f.guid)
            .map(|p| ValueRef::Text(p.as_bytes()));
        if parent.is_none() && f.parent_guid.as_deref().is_some_and(|p| p == f.guid) {
            tracing::debug!(guid = %f.guid, "process names itself as parent; parent_guid left empty");
        }
        self.put(0, parent, rank);
        self.put(1, int(f.sensor_id), rank);
        self.put(2, text(&f.hostname), rank);
        self.put(3, int(f.pid), rank);
        self.put(4, text(&f.path), rank);
        self.put(5, text(&f.cmdline), rank);
        self.put(6, text(&f.md5), rank);
        self.put(7, text(&f.sha256), rank);
        self.put(8, text(&f.username), rank);
        self.put(9, int(f.start_ms), rank);
        self.put(10, int(f.end_ms), rank);
    }

    /// Merge `later` (facts that arrived after those in `self`) into `self`.
    fn absorb(&mut self, later: &Merged<'a>) {
        for (i, c) in later.cols.iter().enumerate() {
            if let Some((v, r)) = *c {
                self.put(i, Some(v), r);
            }
        }
        if let Some(r) = later.max_rank {
            self.max_rank = Some(self.max_rank.map_or(r, |m| m.max(r)));
        }
    }

    fn ranks(&self) -> RowRanks {
        let mut packed = 0i64;
        for (i, c) in self.cols.iter().enumerate() {
            if let Some((_, r)) = c {
                packed |= (i64::from(*r) + 1) << (RANK_BITS * i as u32);
            }
        }
        RowRanks {
            columns: packed,
            max_rank: self.max_rank.unwrap_or(0),
        }
    }

    /// Do `self` and `other` agree on every column an index of `processes` holds?
    fn same_index_keys(&self, other: &Merged<'_>) -> bool {
        INDEXED_COLUMNS
            .iter()
            .all(|&i| self.cols[i].map(|(v, _)| v) == other.cols[i].map(|(v, _)| v))
    }

    /// Would merging `self` into a stored row whose merge state is `stored` change that row?
    fn would_change(&self, stored: RowRanks) -> bool {
        if self.max_rank.is_some_and(|r| r > stored.max_rank) {
            return true;
        }
        self.cols.iter().enumerate().any(|(i, c)| match c {
            None => false,
            Some((_, r)) => {
                let state = (stored.columns >> (RANK_BITS * i as u32)) & 0b111;
                state == 0 || state - 1 < i64::from(*r)
            }
        })
    }

    /// Rebuild the merge state of a stored row from its values and `column_ranks`.
    fn from_stored(values: &'a [Value], fact_rank: i64, column_ranks: i64) -> Merged<'a> {
        let mut m = Merged {
            cols: Default::default(),
            max_rank: Some(fact_rank.clamp(0, 7) as u8),
        };
        for (i, v) in values.iter().take(NCOLS).enumerate() {
            let v = ValueRef::from(v);
            if v == ValueRef::Null {
                continue;
            }
            let state = (column_ranks >> (RANK_BITS * i as u32)) & 0b111;
            // A value without a recorded rank (edited by hand) yields to any fact.
            let rank = if state == 0 { 0 } else { (state - 1) as u8 };
            m.cols[i] = Some((v, rank));
        }
        m
    }

    fn column_values(&self) -> [ToSqlOutput<'a>; NCOLS] {
        std::array::from_fn(|i| match self.cols[i] {
            Some((v, _)) => ToSqlOutput::Borrowed(v),
            None => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// What the batch learned about one GUID.
#[derive(Debug, Default)]
struct Pending<'a> {
    merged: Merged<'a>,
    /// Latest time of an event whose actor is this process.
    last_event_ms: Option<i64>,
}

fn learn_fact<'r>(processes: &mut GuidMap<&'r str, Pending<'r>>, f: &'r ProcessFacts) {
    if f.guid.is_empty() {
        return;
    }
    processes
        .entry(f.guid.as_str())
        .or_default()
        .merged
        .add_fact(f);
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Write the merged facts of the batch, one statement per process in the common case.
fn apply_processes<'r>(
    tx: &Transaction<'_>,
    path: &Path,
    cache: &RankCache,
    processes: GuidMap<&'r str, Pending<'r>>,
    now: i64,
    stats: &mut BatchStats,
) -> Result<Learned<'r>, StoreError> {
    let err = sql_err(path);
    let mut learned = Vec::new();
    if processes.is_empty() {
        return Ok(learned);
    }
    let mut touch = tx.prepare_cached(TOUCH_PROCESS).map_err(&err)?;
    let mut select = tx.prepare_cached(SELECT_PROCESS).map_err(&err)?;
    let mut insert = tx.prepare_cached(INSERT_PROCESS).map_err(&err)?;
    let mut update = tx.prepare_cached(UPDATE_PROCESS).map_err(&err)?;
    let mut update_keeping_keys = tx
        .prepare_cached(UPDATE_PROCESS_KEEPING_KEYS)
        .map_err(&err)?;

    // GUID order keeps the primary-key B-tree writes local.
    let mut processes: Vec<_> = processes.into_iter().collect();
    processes.sort_unstable_by(|a, b| a.0.cmp(b.0));

    for (guid, p) in processes {
        let has_facts = p.merged.max_rank.is_some();
        if !has_facts {
            // Events of a process no fact describes: only extend a row that exists.
            if let Some(t) = p.last_event_ms {
                touch.execute(params![guid, t]).map_err(&err)?;
            }
            continue;
        }
        if let Some(stored) = cache.get(guid)
            && !p.merged.would_change(stored)
        {
            match p.last_event_ms {
                None => continue,
                // 0 rows: the row was deleted behind the cache's back; fall through and re-create.
                Some(t) => {
                    if touch.execute(params![guid, t]).map_err(&err)? == 1 {
                        continue;
                    }
                }
            }
        }

        let stored: Option<(Vec<Value>, i64, i64, Option<i64>)> = select
            .query_row(params![guid], |r| {
                let mut values = Vec::with_capacity(NCOLS);
                for i in 0..NCOLS {
                    values.push(r.get::<_, Value>(i)?);
                }
                Ok((values, r.get(NCOLS)?, r.get(NCOLS + 1)?, r.get(NCOLS + 2)?))
            })
            .optional()
            .map_err(&err)?;

        match stored {
            None => {
                let ranks = write_process(&mut insert, guid, &p.merged, now, p.last_event_ms)
                    .map_err(&err)?;
                stats.processes += 1;
                learned.push((guid, ranks));
            }
            Some((values, fact_rank, column_ranks, last_event_ms)) => {
                let before = Merged::from_stored(&values, fact_rank, column_ranks);
                let mut merged = before.clone();
                merged.absorb(&p.merged);
                let last = max_opt(last_event_ms, p.last_event_ms);
                let ranks = if merged != before || last != last_event_ms {
                    let stmt = if merged.same_index_keys(&before) {
                        &mut update_keeping_keys
                    } else {
                        &mut update
                    };
                    write_process(stmt, guid, &merged, now, last).map_err(&err)?
                } else {
                    merged.ranks()
                };
                learned.push((guid, ranks));
            }
        }
    }
    Ok(learned)
}

/// Run [`INSERT_PROCESS`] or one of the updates (they share its parameters) for `merged`; returns
/// the row's merge state.
fn write_process(
    stmt: &mut CachedStatement<'_>,
    guid: &str,
    merged: &Merged<'_>,
    now: i64,
    last_event_ms: Option<i64>,
) -> rusqlite::Result<RowRanks> {
    let ranks = merged.ranks();
    let v = merged.column_values();
    stmt.execute(params![
        guid,
        v[0],
        v[1],
        v[2],
        v[3],
        v[4],
        v[5],
        v[6],
        v[7],
        v[8],
        v[9],
        v[10],
        ranks.max_rank == FactRank::ParentReference as u8,
        ranks.max_rank,
        ranks.columns,
        now,
        last_event_ms,
    ])?;
    Ok(ranks)
}

/// Merge state of a stored row, enough to tell whether a fact would change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowRanks {
    columns: i64,
    max_rank: u8,
}

/// Bounded GUID → [`RowRanks`] map. Two generations: when the young one is full the old one is
/// dropped, so recently used processes stay and memory stays bounded by `capacity` entries.
struct RankCache {
    young: GuidMap<Box<str>, RowRanks>,
    old: GuidMap<Box<str>, RowRanks>,
    capacity: usize,
}

impl RankCache {
    fn new(capacity: usize) -> RankCache {
        RankCache {
            young: GuidMap::default(),
            old: GuidMap::default(),
            capacity,
        }
    }

    fn get(&self, guid: &str) -> Option<RowRanks> {
        self.young.get(guid).or_else(|| self.old.get(guid)).copied()
    }

    fn insert(&mut self, guid: &str, ranks: RowRanks) {
        if self.capacity == 0 {
            return;
        }
        if let Some(r) = self.young.get_mut(guid) {
            *r = ranks;
            return;
        }
        if self.young.len() >= self.capacity.div_ceil(2) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(guid);
        self.young.insert(guid.into(), ranks);
    }

    fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(rank: FactRank, path: Option<&str>, pid: Option<i64>) -> ProcessFacts {
        ProcessFacts {
            guid: "00000001-0000-0001-01d0-000000000001".into(),
            rank: Some(rank),
            path: path.map(Into::into),
            pid,
            ..Default::default()
        }
    }

    /// `INDEXED_COLUMNS` are exactly the columns the schema indexes on `processes` (besides its
    /// primary key), and `UPDATE_PROCESS_KEEPING_KEYS` sets every other column of
    /// `UPDATE_PROCESS` and none of those: an index added later must be added here too.
    #[test]
    fn the_keeping_keys_update_leaves_out_exactly_the_indexed_columns() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open(&dir.path().join("t.db")).unwrap();
        let conn = w.connection();
        let mut indexed: Vec<String> = conn
            .prepare(
                "SELECT ii.name FROM pragma_index_list('processes') il, \
                 pragma_index_info(il.name) ii WHERE il.origin = 'c'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        indexed.sort();
        let mut ours: Vec<String> = INDEXED_COLUMNS
            .iter()
            .map(|&i| PROCESS_COLUMNS[i].to_owned())
            .collect();
        ours.sort();
        assert_eq!(indexed, ours);

        let set = |sql: &str, column: &str| sql.contains(&format!(" {column} = ?"));
        let update_columns = PROCESS_COLUMNS.iter().chain(&[
            "inferred",
            "fact_rank",
            "column_ranks",
            "last_event_ms",
        ]);
        for column in update_columns {
            assert!(set(UPDATE_PROCESS, column), "{column}");
            assert_eq!(
                set(UPDATE_PROCESS_KEEPING_KEYS, column),
                !ours.iter().any(|c| c == column),
                "{column}"
            );
        }
    }

    /// Regression: partial indexes written with `IN ('a', 'b', 'c')` made SQLite build and drop a
    /// temporary B-tree for every event inserted. No per-row statement may need one.
    #[test]
    fn per_row_statements_build_no_temporary_btree() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open(&dir.path().join("t.db")).unwrap();
        let (one, many) = (insert_events_sql(1), insert_events_sql(ROWS_PER_INSERT));
        for sql in [
            one.as_str(),
            many.as_str(),
            &insert_keys_sql(1),
            &insert_keys_sql(ROWS_PER_INSERT),
            KEY_OWNER,
            RENUMBER_KEY,
            MAX_EVENT_ID,
            INSERT_SEGMENT,
            NEXT_SEGMENT,
            INSERT_BINARY,
            FILL_BINARY,
            INSERT_NOTIFICATION,
            INSERT_TARGET,
            INSERT_QUARANTINE,
            UPSERT_SENSOR,
            SELECT_PROCESS,
            INSERT_PROCESS,
            UPDATE_PROCESS,
            TOUCH_PROCESS,
        ] {
            let mut st = w.connection().prepare(&format!("EXPLAIN {sql}")).unwrap();
            let nulls = std::iter::repeat_n(rusqlite::types::Null, st.parameter_count());
            let ops: Vec<String> = st
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(1))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                ops.iter().any(|o| o == "Halt"),
                "not an opcode listing: {ops:?}"
            );
            assert!(
                !ops.iter()
                    .any(|o| o == "OpenEphemeral" || o == "OpenAutoindex"),
                "{sql}\nbuilds a temporary B-tree per execution: {ops:?}"
            );
        }
    }

    /// Regression: a stop signalled before the keepalive thread first waited was missed, so every
    /// migration (four for a new file) waited out the full interval: 10 s each.
    #[test]
    fn a_keepalive_stops_at_once_however_early_it_is_dropped() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let counted = calls.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                let c = counted.clone();
                drop(Keepalive::start_with(
                    Duration::from_secs(3600),
                    move || {
                        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    },
                ));
            }
            let _ = done_tx.send(());
        });
        // With the bug one of the 200 blocks for an hour; without it all take microseconds.
        assert!(
            done_rx.recv_timeout(Duration::from_secs(60)).is_ok(),
            "dropping a keepalive waited for its interval"
        );
        // Each announced itself once, when it started.
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 200);
    }

    #[test]
    fn highest_rank_per_column_wins_in_any_order() {
        // The case a per-row rank gets wrong: a procstart without a path arrives between a
        // header-observed path and the parent's childproc path.
        let facts = [
            fact(FactRank::Procstart, None, Some(4)),
            fact(FactRank::Childproc, Some("c.exe"), None),
            fact(FactRank::Observed, Some("o.exe"), Some(9)),
            fact(FactRank::ParentReference, Some("p.exe"), Some(8)),
        ];
        let orders = [
            [0, 1, 2, 3],
            [2, 0, 1, 3],
            [3, 2, 0, 1],
            [1, 3, 2, 0],
            [2, 3, 1, 0],
        ];
        let mut results = Vec::new();
        for order in orders {
            let mut m = Merged::default();
            for i in order {
                m.add_fact(&facts[i]);
            }
            results.push(m);
        }
        for m in &results {
            assert_eq!(m, &results[0]);
        }
        assert_eq!(
            results[0].cols[4],
            Some((ValueRef::Text(b"c.exe"), FactRank::Childproc as u8))
        );
        assert_eq!(
            results[0].cols[3],
            Some((ValueRef::Integer(4), FactRank::Procstart as u8))
        );
        assert_eq!(results[0].max_rank, Some(FactRank::Procstart as u8));
    }

    #[test]
    fn equal_rank_fills_only_empty_columns() {
        let a = fact(FactRank::Observed, Some("a.exe"), None);
        let b = fact(FactRank::Observed, Some("b.exe"), Some(7));
        let mut m = Merged::default();
        m.add_fact(&a);
        m.add_fact(&b);
        assert_eq!(m.cols[4], Some((ValueRef::Text(b"a.exe"), 1)));
        assert_eq!(m.cols[3], Some((ValueRef::Integer(7), 1)));
    }

    #[test]
    fn self_parent_is_dropped_but_rest_kept() {
        let mut f = fact(FactRank::Procstart, Some("x.exe"), Some(1));
        f.parent_guid = Some(f.guid.clone());
        let mut m = Merged::default();
        m.add_fact(&f);
        assert_eq!(m.cols[0], None);
        assert!(m.cols[4].is_some());
    }

    #[test]
    fn ranks_round_trip_through_stored_row() {
        let f = fact(FactRank::Childproc, Some("c.exe"), Some(3));
        let mut m = Merged::default();
        m.add_fact(&f);
        let r = m.ranks();
        let values: Vec<Value> = m
            .cols
            .iter()
            .map(|c| c.map_or(Value::Null, |(v, _)| Value::try_from(v).unwrap()))
            .collect();
        let back = Merged::from_stored(&values, i64::from(r.max_rank), r.columns);
        assert_eq!(back, m);
        assert!(!back.would_change(r));
        assert!(!m.would_change(r));
    }

    #[test]
    fn would_change_matches_absorb() {
        let stored_fact = fact(FactRank::Childproc, Some("c.exe"), None);
        let mut stored = Merged::default();
        stored.add_fact(&stored_fact);
        let candidates = [
            fact(FactRank::Observed, Some("o.exe"), None),
            fact(FactRank::Observed, None, Some(5)),
            fact(FactRank::Procstart, Some("s.exe"), None),
            fact(FactRank::Childproc, Some("z.exe"), None),
            fact(FactRank::ParentReference, None, None),
        ];
        for c in &candidates {
            let mut incoming = Merged::default();
            incoming.add_fact(c);
            let mut after = stored.clone();
            after.absorb(&incoming);
            assert_eq!(
                incoming.would_change(stored.ranks()),
                after != stored,
                "{c:?}"
            );
        }
    }

    #[test]
    fn rank_cache_stays_bounded_and_keeps_recent() {
        let mut c = RankCache::new(4);
        let r = RowRanks {
            columns: 1,
            max_rank: 1,
        };
        for i in 0..100 {
            c.insert(&format!("g{i}"), r);
            assert!(c.young.len() + c.old.len() <= 4);
            assert_eq!(c.get(&format!("g{i}")), Some(r));
        }
        let mut off = RankCache::new(0);
        off.insert("g", r);
        assert_eq!(off.get("g"), None);
    }
}
