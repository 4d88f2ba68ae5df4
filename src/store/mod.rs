//! SQLite storage: schema and migrations, the batch writer, read-only access.
//!
//! One [`Writer`] (one connection, one thread) stores batches of records, one transaction per batch.
//! Inserts are keyed by content ([`crate::model::RecordKey`]) so a redelivered message adds no row.
//! Readers (the CLI, analysts) open their own read-only connections with [`open_read_only`]; WAL mode
//! keeps them from ever blocking the writer.

mod checkpoint;
mod durable;
mod fast;
pub mod read;
pub mod retention;
pub mod schema;
mod writer;

pub use durable::WalSync;
pub use read::{TableCounts, counts, fingerprint, time_range};
pub use writer::{DEFAULT_PAGE_SIZE, Synchronous, Writer, WriterOptions};

use crate::model::EventType;
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of the storage layer. Every variant names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {0} does not exist")]
    Missing(PathBuf),
    #[error(
        "database {path} has schema version {found}, newer than this cbtrail supports ({supported}); upgrade cbtrail"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "database {path} has schema version {found}, this cbtrail reads version {supported}; \
         open it once with the daemon (which migrates it) or check that it is a cbtrail database"
    )]
    NotMigrated {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database {path}: cannot start the WAL checkpoint thread: {source}")]
    Thread {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database WAL {path}: cannot make committed batches durable: {source}")]
    Durability {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A statement did something the batch's own bookkeeping rules out; the batch is rolled back.
    #[error("database {path}: {what}")]
    Inconsistent { path: PathBuf, what: String },
    #[error("database {path}: cannot encode {what} as JSON: {source}")]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// Errors that go away by themselves (another connection holds a lock, the disk is full or
    /// briefly failing): the batch is retried as it is rather than split or quarantined.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    DatabaseBusy
                        | DatabaseLocked
                        | DiskFull
                        | SystemIoFailure
                        | CannotOpen
                        | ReadOnly
                        | OutOfMemory
                )
            ),
            StoreError::Thread { .. } => true,
            _ => false,
        }
    }
}

/// Attach the database path to a rusqlite error.
pub(crate) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// The path a connection was opened on, for error messages (`:memory:` when it has none).
pub(crate) fn conn_path(conn: &Connection) -> PathBuf {
    match conn.path() {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(":memory:"),
    }
}

/// What one committed batch added. Duplicates (redeliveries) are counted, not stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStats {
    pub events: u64,
    pub binaries: u64,
    /// Binary records for an md5 already stored that filled some of its empty columns.
    pub binaries_updated: u64,
    pub notifications: u64,
    pub quarantined: u64,
    /// `processes` rows created (observed or inferred).
    pub processes: u64,
    /// Records whose key was already stored (for binaries: an md5 already stored and nothing new
    /// to fill in).
    pub duplicates: u64,
    pub events_by_type: BTreeMap<EventType, u64>,
    pub quarantined_by_reason: BTreeMap<&'static str, u64>,
    /// New notifications by normalised type (`watchlist.hit.process`, …).
    pub notifications_by_kind: BTreeMap<String, u64>,
}

/// How long a connection waits for a lock before giving up with `SQLITE_BUSY`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Open an existing database read-only, refusing one from a newer schema.
///
/// The connection never writes, so it never blocks the writer; each statement (or explicit
/// transaction) sees the last commit made before it started.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    // SQLite would report a bare "unable to open database file"; say what is wrong instead.
    if !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sql_err(path))?;
    conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)
        .map_err(sql_err(path))?;
    let found = known_schema_version(&conn, path)?;
    if found < schema::SCHEMA_VERSION {
        return Err(StoreError::NotMigrated {
            path: path.to_path_buf(),
            found,
            supported: schema::SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

/// The schema version of the database (`PRAGMA user_version`); a version newer than this binary
/// knows is refused, before anything reads or changes the file.
pub(crate) fn known_schema_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql_err(path))?;
    if found > schema::SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: schema::SCHEMA_VERSION,
        });
    }
    Ok(found)
}
