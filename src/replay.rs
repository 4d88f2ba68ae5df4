//! `cbtrail replay`: ingest capture files offline through the same decode, pipeline and store code
//! as the daemon, so a replayed database and one filled through RabbitMQ hold the same rows.

use crate::capture::CaptureFile;
use crate::pipeline::{BatchOptions, Incoming, Pipeline, PipelineError, Totals};
use crate::store::{StoreError, Writer};
use std::path::Path;
use std::time::Duration;

/// Errors of a replay run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
}

/// What a replay stored.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    pub files: u64,
    pub totals: Totals,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.totals.stats;
        write!(
            f,
            "files={} messages={} events={} notifications={} binaries={} quarantined={} duplicates={}",
            self.files,
            self.totals.deliveries,
            s.events,
            s.notifications,
            s.binaries,
            s.quarantined,
            s.duplicates
        )
    }
}

/// Files handed to the pipeline at once: few enough that a burst of large zips stays small in
/// memory, enough that thread wake-ups are not paid per file.
const REPLAY_BURST: usize = 32;

/// Store every file of `files` in the database at `db` (created when missing).
pub fn replay(
    db: &Path,
    files: impl IntoIterator<Item = CaptureFile>,
    batch_size: usize,
) -> Result<ReplaySummary, ReplayError> {
    let writer = Writer::open(db)?;
    let pipeline = Pipeline::start(
        writer,
        BatchOptions::new(
            batch_size,
            crate::pipeline::DEFAULT_BATCH_MAX_RECORDS,
            Duration::from_millis(50),
        ),
        (batch_size * 2).div_ceil(REPLAY_BURST),
    );
    let (input, mut committed, threads) = pipeline.into_parts();
    // Draining on its own thread: the writer blocks when nobody takes its committed batches.
    let drain = std::thread::spawn(move || {
        let mut totals = Totals::default();
        while let Some(c) = committed.blocking_recv() {
            totals.add(&c);
        }
        totals
    });
    let mut summary = ReplaySummary::default();
    let mut burst = Vec::with_capacity(REPLAY_BURST);
    for f in files {
        summary.files += 1;
        burst.push(Incoming {
            meta: f.meta,
            body: f.body,
            ack: None,
        });
        if burst.len() >= REPLAY_BURST {
            let full = std::mem::replace(&mut burst, Vec::with_capacity(REPLAY_BURST));
            if input.blocking_send(full).is_err() {
                break;
            }
        }
    }
    // The last, partial burst. A send that fails means the writer stopped; `join` says why.
    if !burst.is_empty() {
        let _ = input.blocking_send(burst);
    }
    drop(input);
    let joined = threads.join();
    summary.totals = drain
        .join()
        .map_err(|_| PipelineError::Panicked("replay drain"))?;
    joined?;
    Ok(summary)
}
