//! Making commits durable off the writer thread.
//!
//! With `synchronous=FULL` SQLite fsyncs the WAL inside every commit, and the writer thread waits
//! for the disk before it can start on the next batch: about a tenth of a bundle drain's wall time
//! on this project's machine. Nothing upstream needs that wait, only the acknowledgements do. So
//! the writer commits with `synchronous=NORMAL`, which writes the same WAL frames but does not
//! sync them, and [`WalSync::sync`] (on the pipeline's sync thread) fsyncs the WAL file before the
//! batch's deliveries are acknowledged, while the writer already stores the next batch. One fsync
//! covers every batch committed before it started, so batches that queue up behind a slow disk
//! share it.
//!
//! Why that is as durable as `FULL` for anything acknowledged: in WAL mode a commit only appends
//! frames to the `-wal` file, and an fsync of a file (through any descriptor of it) writes all of
//! its data that was written before the call. What `NORMAL` leaves out is only the fsync at
//! commit; SQLite still syncs the WAL header when the log starts over, the WAL before a checkpoint
//! copies it and the database file after. A crash between a commit and its fsync can roll the
//! batch back, but its deliveries were never acknowledged, so the broker delivers them again.
//! Committed but not yet durable rows are visible to readers in the meantime.

use super::StoreError;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The writer's WAL file, to be fsynced before committed batches are acknowledged.
#[derive(Debug)]
pub struct WalSync {
    wal: File,
    path: PathBuf,
}

impl WalSync {
    /// Open the WAL of the database at `db`. The writer's connection keeps that file in place
    /// (SQLite removes it only when the last connection closes), so the descriptor stays valid for
    /// the writer's life; truncating and rewriting the log reuses the same file.
    pub(super) fn open(db: &Path) -> Result<WalSync, StoreError> {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        let path = PathBuf::from(path);
        let wal = File::open(&path).map_err(|source| StoreError::Durability {
            path: path.clone(),
            source,
        })?;
        Ok(WalSync { wal, path })
    }

    /// Make every commit that returned before this call durable.
    ///
    /// A failure is final: after a failed fsync the kernel may have dropped the dirty pages and a
    /// second fsync can succeed without having written them, so the caller must not acknowledge
    /// anything committed since the last successful sync.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.wal
            .sync_data()
            .map_err(|source| StoreError::Durability {
                path: self.path.clone(),
                source,
            })
    }
}
