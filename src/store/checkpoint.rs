//! WAL checkpoints on a thread of their own.
//!
//! By default SQLite checkpoints from inside the commit that pushes the WAL past
//! `wal_autocheckpoint` pages: the writer thread then copies the whole WAL into the database file
//! and fsyncs it before the batch counts as done. Here a second connection does that work on a
//! timer while the writer keeps committing; the writer's own automatic checkpoint stays on with a
//! much larger threshold as a backstop in case this thread falls behind.

use super::sql_err;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

/// Writer-side handle; dropping it stops the thread after one last checkpoint.
pub(super) struct Checkpointer {
    dirty: Arc<AtomicBool>,
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start checkpointing `path` every `interval` while there are new commits.
    pub(super) fn start(
        path: &Path,
        interval: Duration,
        synchronous: &'static str,
    ) -> Result<Checkpointer, super::StoreError> {
        let err = sql_err(path);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(&err)?;
        conn.busy_timeout(super::DEFAULT_BUSY_TIMEOUT)
            .map_err(&err)?;
        // The checkpointing connection decides how the copied pages are synced.
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(&err)?;
        let dirty = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("cbtrail-checkpoint".into())
            .spawn({
                let dirty = Arc::clone(&dirty);
                let path = path.to_path_buf();
                move || run(conn, path, dirty, stopped, interval)
            })
            .map_err(|e| super::StoreError::Thread {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Checkpointer {
            dirty,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Note that a batch was committed: the next tick has something to copy.
    pub(super) fn committed(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        drop(self.stop.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("WAL checkpoint thread panicked");
        }
    }
}

fn run(
    conn: Connection,
    path: PathBuf,
    dirty: Arc<AtomicBool>,
    stopped: mpsc::Receiver<()>,
    interval: Duration,
) {
    loop {
        let last = match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => false,
            // Writer gone (or a stray message): copy what is left and end.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        if dirty.swap(false, Ordering::Relaxed) || last {
            // PASSIVE never waits for readers or the writer; what it cannot copy now it copies
            // on a later tick.
            let r: rusqlite::Result<(i64, i64, i64)> =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                });
            match r {
                Ok((_, log, done)) => {
                    tracing::trace!(wal_frames = log, checkpointed = done, "WAL checkpoint")
                }
                Err(e) => {
                    dirty.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "WAL checkpoint failed; will retry"
                    )
                }
            }
        }
        if last {
            return;
        }
    }
}
