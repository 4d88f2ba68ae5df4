//! The ingest pipeline: deliveries → decode thread → writer thread → committed batches.
//!
//! ```text
//!  consumer / replay ─[Incoming]─► decode ─[batches]─► writer ──────► sync ────[Committed]─► acker
//!                      (bounded)   thread  (one full    thread        thread      (ack after
//!                                    ▲      waiting)    one tx,       fsync of    commit and
//!                                    └─ spent batches ─┘ commit       the WAL     fsync)
//! ```
//!
//! Each stage owns its data and hands it on through a bounded channel, so a slow stage pushes back
//! on the one before it and, through the prefetch window, on the broker: memory stays bounded however
//! fast messages arrive. The writer commits a batch and only then passes the batch's delivery handles
//! on, and the sync thread passes them on only once the commit is on disk: nothing is ever
//! acknowledged that a crash or power loss could take back. The writer meanwhile stores the next
//! batch instead of waiting for the disk (see [`crate::store::WalSync`]). The same pipeline serves
//! `cbtrail replay` (without acks), so offline replay and the daemon store exactly the same rows.
//!
//! Deliveries travel in bursts (`Vec`s): whatever the consumer finds ready at once goes on as one
//! channel message. A thread hand-off costs a wake-up of the thread on the other side (a futex call
//! and a context switch, several microseconds on a loaded 2-core machine, more on virtual CPUs);
//! paid once per delivery it cost more than decoding a single event, so it is paid once per burst
//! instead. The decode thread gathers the bursts into batches itself and the writer is woken about
//! twice per batch, not per burst (see the `batches` module).

use crate::decode;
use crate::model::{DeliveryMeta, QuarantineReason, Quarantined, Record};
use crate::store::{BatchStats, StoreError, Writer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod batches;
use batches::{Batches, Take};

/// One delivery entering the pipeline.
pub struct Incoming {
    pub meta: DeliveryMeta,
    pub body: Vec<u8>,
    /// How to acknowledge it once stored; `None` for offline replay.
    pub ack: Option<AckHandle>,
}

/// The broker's handle on one delivery.
pub struct AckHandle {
    pub delivery_tag: u64,
    pub acker: lapin::Acker,
}

/// A delivery after decoding.
struct Decoded {
    meta: DeliveryMeta,
    /// Kept until commit so that a delivery the database refuses can still be quarantined whole.
    body: Vec<u8>,
    records: Vec<Record>,
    ack: Option<AckHandle>,
}

/// A committed and durable batch: what it stored and the deliveries it covers, in arrival order.
pub struct Committed {
    pub stats: BatchStats,
    pub deliveries: u64,
    pub bytes: u64,
    pub acks: Vec<AckHandle>,
    /// From the start of the batch's transaction until it was on disk.
    pub commit_latency: Duration,
}

/// Committed batches waiting for their fsync. Small: a writer that runs ahead of a stalled disk
/// soon blocks, stops beating and so trips the watchdog.
const SYNC_QUEUE: usize = 4;

/// What a committed batch held; it is only there to be dropped.
struct Spent {
    _records: Vec<Record>,
    _deliveries: Vec<Decoded>,
}

/// Hands committed batches back to the decode thread, which frees them.
///
/// Not the writer: freeing the tens of thousands of strings a batch holds was a tenth of its work,
/// and the writer is the stage that limits ingest. And not any other thread: the records' memory
/// was allocated by the decode thread, and the allocator frees memory of another thread's heap
/// through a slower path (under callgrind, freeing a replay's batches on a third thread cost 2,100
/// instructions per event, about a twentieth of the whole pipeline's work).
struct Recycler {
    spent: std_mpsc::Sender<Spent>,
    /// Wakes an idle decode thread (an empty burst) so that it frees at once. Weak: it must not
    /// keep the input open after the daemon dropped it.
    wake: mpsc::WeakSender<Vec<Incoming>>,
}

impl Recycler {
    fn give_back(&self, spent: Spent) {
        // The decode thread has ended (shutdown): then it is freed here.
        if self.spent.send(spent).is_ok()
            && let Some(input) = self.wake.upgrade()
        {
            // A full channel means the decode thread is busy and frees before its next burst.
            let _ = input.try_send(Vec::new());
        }
    }
}

/// When a batch is closed and committed.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Deliveries per transaction.
    pub max_deliveries: usize,
    /// Records per transaction (bundles hold many records each).
    pub max_records: usize,
    /// Longest the first delivery of a batch waits for the batch to fill.
    pub max_latency: Duration,
    /// A batch holding this many records is committed as soon as the writer is free, without
    /// waiting out `max_latency` (see [`BatchOptions::new`]).
    pub commit_when_idle: usize,
}

/// Default [`BatchOptions::max_records`]. Every commit rewrites each page its batch touched, and the
/// `processes` rows and `event_segments_process` entries of a batch's processes lie scattered over
/// their B-trees, so most of those pages are rewritten by every commit whatever the batch size.
/// Draining a million bundled events (`cargo bench --bench throughput -- records=N`), 20,000
/// records per transaction wrote 1,589 bytes per event, 100,000 wrote 1,160.
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 100_000;

impl BatchOptions {
    /// A batch of a fifth of `max_records` or more does not wait for the rest when the writer is
    /// free to take it: it is big enough that its commit costs little per record, so
    /// waiting would only leave the writer idle. That happens where decoding runs behind the
    /// writer, above all when a backlog of zip bundles starts draining: the first batches waited
    /// their whole 100 ms while bundles were still being decoded, and the last one waited for
    /// nothing; that was about a tenth of draining a million bundled events (throughput bench,
    /// batch timings). Batches of single events (one record per delivery, at most `batch_size`)
    /// stay below it and keep filling to their limits, as their commits are what they cost.
    pub fn new(batch_size: usize, max_records: usize, max_latency: Duration) -> BatchOptions {
        let max_records = max_records.max(1);
        BatchOptions {
            max_deliveries: batch_size.max(1),
            max_records,
            max_latency,
            commit_when_idle: (max_records / 5).max(1),
        }
    }
}

/// Writer progress, for the systemd watchdog: the time (ms since the pipeline started) at which the
/// writer last either committed or found nothing to do. A writer stuck in a failing or hanging
/// commit stops advancing it.
#[derive(Debug, Default)]
pub struct Liveness {
    start: Option<Instant>,
    last_ms: AtomicU64,
}

impl Liveness {
    pub fn new() -> Liveness {
        Liveness {
            start: Some(Instant::now()),
            last_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start
            .map(|s| s.elapsed().as_millis() as u64)
            .unwrap_or(0)
    }

    /// The writer made progress.
    pub fn beat(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long ago the writer last made progress.
    pub fn since_last(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        )
    }
}

/// Settings handed to the writer thread while it runs (SIGHUP): taken before the next batch.
#[derive(Debug, Default)]
pub struct WriterControl {
    jobs: std::sync::Mutex<Option<crate::jobs::JobSettings>>,
}

impl WriterControl {
    /// New export job settings for the writer, applied before its next batch.
    pub fn set_job_settings(&self, jobs: crate::jobs::JobSettings) {
        if let Ok(mut g) = self.jobs.lock() {
            *g = Some(jobs);
        }
    }

    fn apply(&self, writer: &mut Writer) {
        if let Some(jobs) = self.jobs.lock().ok().and_then(|mut g| g.take()) {
            writer.set_job_settings(jobs);
        }
    }
}

/// Totals over the life of a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub deliveries: u64,
    pub bytes: u64,
    pub batches: u64,
    pub stats: BatchStats,
}

impl Totals {
    pub fn add(&mut self, c: &Committed) {
        self.deliveries += c.deliveries;
        self.bytes += c.bytes;
        self.batches += 1;
        merge_stats(&mut self.stats, &c.stats);
    }
}

/// Add `b` into `a`.
pub fn merge_stats(a: &mut BatchStats, b: &BatchStats) {
    a.events += b.events;
    a.binaries += b.binaries;
    a.binaries_updated += b.binaries_updated;
    a.processes += b.processes;
    a.notifications += b.notifications;
    a.quarantined += b.quarantined;
    a.duplicates += b.duplicates;
    for (k, v) in &b.events_by_type {
        *a.events_by_type.entry(*k).or_default() += v;
    }
    for (k, v) in &b.quarantined_by_reason {
        *a.quarantined_by_reason.entry(k).or_default() += v;
    }
    for (k, v) in &b.notifications_by_kind {
        *a.notifications_by_kind.entry(k.clone()).or_default() += v;
    }
}

/// A running pipeline.
pub struct Pipeline {
    /// Send deliveries here. Dropping every clone of it drains and stops the pipeline.
    pub input: mpsc::Sender<Vec<Incoming>>,
    /// Committed batches come out here, in order.
    pub committed: mpsc::Receiver<Committed>,
    pub liveness: Arc<Liveness>,
    pub control: Arc<WriterControl>,
    threads: PipelineJoin,
}

/// Errors that stop the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    #[error("the writer could not commit the last batch before shutdown: {0}")]
    Unflushed(StoreError),
    #[error("stopped: committed batches could not be made durable, and were not acknowledged: {0}")]
    NotDurable(StoreError),
}

impl Pipeline {
    /// Start the decode, writer and sync threads around `writer`. `queue` bounds the input channel
    /// (in bursts; for the daemon the prefetch window bounds what is in flight anyway).
    pub fn start(mut writer: Writer, opts: BatchOptions, queue: usize) -> Pipeline {
        let queue = queue.max(1);
        let wal = writer.defer_wal_sync().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "each commit waits for its own fsync instead");
            None
        });
        let (input, mut in_rx) = mpsc::channel::<Vec<Incoming>>(queue);
        let batches = Arc::new(Batches::new(opts));
        let (sync_tx, sync_rx) = std_mpsc::sync_channel::<Written>(SYNC_QUEUE);
        let (com_tx, committed) = mpsc::channel::<Committed>(4);
        let (spent_tx, spent_rx) = std_mpsc::channel::<Spent>();
        let recycler = Recycler {
            spent: spent_tx,
            wake: input.downgrade(),
        };
        let liveness = Arc::new(Liveness::new());
        liveness.beat();
        let to_writer = batches.clone();
        let decode_thread = std::thread::Builder::new()
            .name("cbtrail-decode".into())
            .spawn(move || {
                while let Some(burst) = in_rx.blocking_recv() {
                    while let Ok(spent) = spent_rx.try_recv() {
                        drop(spent);
                    }
                    if burst.is_empty() {
                        continue;
                    }
                    let burst = burst
                        .into_iter()
                        .map(|inc| Decoded {
                            records: decode::decode(&inc.meta, &inc.body),
                            meta: inc.meta,
                            body: inc.body,
                            ack: inc.ack,
                        })
                        .collect();
                    if to_writer.push(burst).is_err() {
                        break;
                    }
                }
                // The input is closed: let the writer take the rest, and go on freeing what it
                // commits until it stops. (Decode runs ahead of the writer, so otherwise the
                // writer would free most of a replay itself.)
                to_writer.close();
                for spent in spent_rx {
                    drop(spent);
                }
            })
            .expect("spawning the decode thread");
        let live = liveness.clone();
        let control = Arc::new(WriterControl::default());
        let ctl = control.clone();
        let writer_thread = std::thread::Builder::new()
            .name("cbtrail-writer".into())
            .spawn(move || writer_loop(writer, &batches, sync_tx, recycler, live, ctl))
            .expect("spawning the writer thread");
        let sync_thread = std::thread::Builder::new()
            .name("cbtrail-sync".into())
            .spawn(move || {
                sync_loop(sync_rx, com_tx, || {
                    wal.as_ref().map_or(Ok(()), crate::store::WalSync::sync)
                })
            })
            .expect("spawning the sync thread");
        Pipeline {
            input,
            committed,
            liveness,
            control,
            threads: PipelineJoin {
                decode_thread,
                writer_thread,
                sync_thread,
            },
        }
    }

    /// Split into the parts the daemon drives separately.
    pub fn into_parts(
        self,
    ) -> (
        mpsc::Sender<Vec<Incoming>>,
        mpsc::Receiver<Committed>,
        PipelineJoin,
    ) {
        (self.input, self.committed, self.threads)
    }
}

/// The threads of a pipeline whose channels were handed out with [`Pipeline::into_parts`].
pub struct PipelineJoin {
    decode_thread: JoinHandle<()>,
    writer_thread: JoinHandle<Result<(), StoreError>>,
    sync_thread: JoinHandle<Result<(), StoreError>>,
}

impl PipelineJoin {
    /// Wait for the threads (after the input sender was dropped).
    pub fn join(self) -> Result<(), PipelineError> {
        self.decode_thread
            .join()
            .map_err(|_| PipelineError::Panicked("decode"))?;
        let written = self
            .writer_thread
            .join()
            .map_err(|_| PipelineError::Panicked("writer"))?
            .map_err(PipelineError::Unflushed);
        // A sync failure is what stopped the writer, if both failed.
        self.sync_thread
            .join()
            .map_err(|_| PipelineError::Panicked("sync"))?
            .map_err(PipelineError::NotDurable)?;
        written
    }
}

/// How long the writer keeps retrying a failing commit after its input closed (shutdown) before it
/// gives up; the deliveries are then left unacknowledged and the broker redelivers them.
const SHUTDOWN_RETRY: Duration = Duration::from_secs(10);
/// Attempts of a whole batch before its deliveries are tried one by one.
const ATTEMPTS_BEFORE_SPLIT: u32 = 3;

/// A committed batch on its way to the sync thread, and when it left the writer.
type Written = (Committed, Instant);

fn writer_loop(
    mut writer: Writer,
    batches: &Batches,
    tx: std_mpsc::SyncSender<Written>,
    recycler: Recycler,
    live: Arc<Liveness>,
    control: Arc<WriterControl>,
) -> Result<(), StoreError> {
    // However the writer ends (an error, a panic, nobody taking acknowledgements), the decode
    // thread must not wait for it.
    struct Stopped<'a>(&'a Batches);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.writer_stopped();
        }
    }
    let _stopped = Stopped(batches);
    let idle_tick = batches.max_latency().max(Duration::from_millis(200));
    loop {
        let (batch, closing) = match batches.take(idle_tick) {
            Take::Batch { batch, closing } => (batch, closing),
            Take::Idle => {
                live.beat();
                continue;
            }
            Take::Closed => break,
        };
        control.apply(&mut writer);
        let (committed, spent) = commit_batch(&mut writer, batch, closing)?;
        live.beat();
        let sent = tx.send((committed, Instant::now()));
        recycler.give_back(spent);
        if sent.is_err() {
            // Nobody takes acknowledgements any more: the daemon is gone, or the WAL could not be
            // synced. What was committed stays committed; its deliveries are redelivered and
            // recognised as duplicates.
            break;
        }
    }
    Ok(())
}

/// Pass committed batches on once `sync` made them durable: one sync for all the batches that
/// are waiting when it starts. (Without a WAL to sync, with `synchronous=NORMAL` or a connection
/// that syncs at commit itself, `sync` does nothing.)
fn sync_loop(
    rx: std_mpsc::Receiver<Written>,
    tx: mpsc::Sender<Committed>,
    mut sync: impl FnMut() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    while let Ok(first) = rx.recv() {
        let mut ready = vec![first];
        ready.extend(rx.try_iter());
        if let Err(e) = sync() {
            // Never retried (see `WalSync::sync`): stop, leaving these deliveries and everything
            // after them unacknowledged for the broker to deliver again.
            tracing::error!(error = %e, "fsync of the WAL failed; stopping ingest");
            return Err(e);
        }
        for (mut c, written) in ready {
            c.commit_latency += written.elapsed();
            if tx.blocking_send(c).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Commit `batch`, retrying transient failures with back-off. A batch that fails for another
/// reason is split, and a delivery the database refuses on its own is quarantined whole (with the
/// database's error) so that one bad record can never wedge ingest.
fn commit_batch(
    writer: &mut Writer,
    mut batch: Vec<Decoded>,
    shutting_down: bool,
) -> Result<(Committed, Spent), StoreError> {
    let started = Instant::now();
    let deliveries = batch.len() as u64;
    let bytes = batch.iter().map(|d| d.body.len() as u64).sum();
    // Move (not clone) every record into one slice for the transaction; remember each delivery's
    // range for the fallback below.
    let mut records: Vec<Record> = Vec::with_capacity(batch.iter().map(|d| d.records.len()).sum());
    let mut ranges = Vec::with_capacity(batch.len());
    for d in &mut batch {
        let start = records.len();
        records.append(&mut d.records);
        ranges.push(start..records.len());
    }
    let stats = match write_with_retry(writer, &records, shutting_down, true) {
        Ok(stats) => stats,
        Err(e) => {
            tracing::warn!(error = %e, deliveries, "batch refused by the database; storing its deliveries one by one");
            let mut total = BatchStats::default();
            for (d, range) in batch.iter().zip(ranges) {
                let s = match write_with_retry(writer, &records[range], shutting_down, true) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, routing_key = %d.meta.routing_key, "delivery refused by the database; quarantining it");
                        let q = Record::Quarantined(Box::new(Quarantined::new(
                            &d.meta,
                            QuarantineReason::StoreRejected,
                            format!("the database refused this delivery's records: {e}"),
                            d.body.clone(),
                        )));
                        write_with_retry(writer, std::slice::from_ref(&q), shutting_down, false)?
                    }
                };
                merge_stats(&mut total, &s);
            }
            total
        }
    };
    let acks = batch.iter_mut().filter_map(|d| d.ack.take()).collect();
    Ok((
        Committed {
            stats,
            deliveries,
            bytes,
            acks,
            commit_latency: started.elapsed(),
        },
        Spent {
            _records: records,
            _deliveries: batch,
        },
    ))
}

/// Write `records`, retrying transient errors (busy, locked, full disk, I/O) forever while running,
/// for [`SHUTDOWN_RETRY`] when shutting down. Other errors are retried
/// [`ATTEMPTS_BEFORE_SPLIT`] times when `give_up_on_permanent`, then returned.
fn write_with_retry(
    writer: &mut Writer,
    records: &[Record],
    shutting_down: bool,
    give_up_on_permanent: bool,
) -> Result<BatchStats, StoreError> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        match writer.write_batch(records) {
            Ok(s) => return Ok(s),
            Err(e) => {
                attempt += 1;
                let transient = e.is_transient();
                if !transient && give_up_on_permanent && attempt >= ATTEMPTS_BEFORE_SPLIT {
                    return Err(e);
                }
                if shutting_down && started.elapsed() > SHUTDOWN_RETRY {
                    return Err(e);
                }
                let wait = Duration::from_millis(100u64 << attempt.min(6));
                tracing::warn!(error = %e, attempt, retry_in_ms = wait.as_millis() as u64, "commit failed");
                std::thread::sleep(wait);
            }
        }
    }
}

/// Acknowledge a committed batch: one `multiple` ack per run of deliveries from one channel
/// generation. A new generation starts where the delivery tag stops growing (a recovered channel
/// counts from 1 again) or where the ackers' poisoned state changes (the old channel is gone). Returns (acked, failed) delivery counts.
/// A failed ack (`Ok(false)`: the channel it came from is gone) is harmless: the broker redelivers
/// and the store recognises the duplicates.
pub async fn acknowledge(acks: Vec<AckHandle>) -> (u64, u64) {
    let mut ok = 0;
    let mut failed = 0;
    let mut run = 0u64;
    let n = acks.len();
    for i in 0..n {
        run += 1;
        let last_of_run = i + 1 == n
            || acks[i + 1].delivery_tag <= acks[i].delivery_tag
            || acks[i + 1].acker.poisoned() != acks[i].acker.poisoned();
        if !last_of_run {
            continue;
        }
        let r = acks[i]
            .acker
            .ack(lapin::options::BasicAckOptions { multiple: true })
            .await;
        match r {
            Ok(true) => ok += run,
            Ok(false) => failed += run,
            Err(e) => {
                tracing::debug!(error = %e, "ack failed; the broker will redeliver");
                failed += run;
            }
        }
        run = 0;
    }
    (ok, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(n: usize) -> Incoming {
        Incoming {
            meta: DeliveryMeta {
                exchange: crate::decode::EVENTS_EXCHANGE.into(),
                routing_key: "watchlist.hit.process".into(),
                content_type: Some("application/json".into()),
                headers: Default::default(),
            },
            body: format!(r#"{{"type":"watchlist.hit.process","watchlist_id":{n}}}"#).into_bytes(),
            ack: None,
        }
    }

    #[test]
    fn a_batch_closes_at_its_record_limit() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::open(&dir.path().join("t.db")).unwrap();
        // Room for 1000 deliveries but 2 records: five one-record deliveries make 2 + 2 + 1.
        let opts = BatchOptions {
            commit_when_idle: usize::MAX,
            ..BatchOptions::new(1000, 2, Duration::from_secs(30))
        };
        let (input, mut committed, threads) = Pipeline::start(writer, opts, 8).into_parts();
        for n in 0..5 {
            input.blocking_send(vec![notification(n)]).unwrap();
        }
        drop(input);
        let mut sizes = Vec::new();
        while let Some(c) = committed.blocking_recv() {
            sizes.push((c.deliveries, c.stats.notifications));
        }
        threads.join().unwrap();
        assert_eq!(sizes, [(2, 2), (2, 2), (1, 1)]);
    }

    #[test]
    fn a_big_enough_batch_does_not_wait_for_more() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::open(&dir.path().join("t.db")).unwrap();
        // Up to 10 records or 30 s per batch; 2 records are enough to commit when idle.
        let opts = BatchOptions::new(1000, 10, Duration::from_secs(30));
        assert_eq!(opts.commit_when_idle, 2);
        let (input, mut committed, threads) = Pipeline::start(writer, opts, 8).into_parts();
        input
            .blocking_send(vec![notification(1), notification(2)])
            .unwrap();
        // Without the rule the batch would be committed after 30 s.
        let started = Instant::now();
        let first = loop {
            match committed.try_recv() {
                Ok(c) => break c,
                Err(_) if started.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("no commit while the input was idle: {e}"),
            }
        };
        assert_eq!((first.deliveries, first.stats.notifications), (2, 2));
        drop(input);
        while committed.blocking_recv().is_some() {}
        threads.join().unwrap();
    }

    fn written(deliveries: u64) -> Written {
        let c = Committed {
            stats: BatchStats::default(),
            deliveries,
            bytes: 0,
            acks: Vec::new(),
            commit_latency: Duration::ZERO,
        };
        (c, Instant::now())
    }

    #[test]
    fn batches_go_on_only_after_their_sync_and_share_it() {
        let (tx, rx) = std_mpsc::sync_channel(SYNC_QUEUE);
        let (com_tx, mut committed) = mpsc::channel(8);
        // Each sync says it started, waits for the test's go-ahead and reports itself: the test
        // knows where the thread is without sleeping.
        let (go, gate) = std_mpsc::channel::<()>();
        let (started_tx, started) = std_mpsc::channel::<()>();
        let (synced_tx, synced) = std_mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            sync_loop(rx, com_tx, || {
                started_tx.send(()).unwrap();
                gate.recv().unwrap();
                synced_tx.send(()).unwrap();
                Ok(())
            })
        });
        tx.send(written(1)).unwrap();
        // The first sync is under way (blocked at the gate); two more batches queue behind it.
        started.recv().unwrap();
        tx.send(written(2)).unwrap();
        tx.send(written(3)).unwrap();
        assert!(committed.try_recv().is_err(), "handed on before its sync");
        go.send(()).unwrap();
        synced.recv().unwrap();
        assert_eq!(committed.blocking_recv().map(|c| c.deliveries), Some(1));
        started.recv().unwrap();
        assert!(
            committed.try_recv().is_err(),
            "the queued batches need a sync of their own"
        );
        go.send(()).unwrap();
        synced.recv().unwrap();
        assert_eq!(committed.blocking_recv().map(|c| c.deliveries), Some(2));
        assert_eq!(committed.blocking_recv().map(|c| c.deliveries), Some(3));
        drop(tx);
        thread.join().unwrap().unwrap();
        assert!(committed.blocking_recv().is_none());
        assert!(
            synced.try_recv().is_err(),
            "one sync for both queued batches"
        );
    }

    #[test]
    fn a_failed_sync_hands_nothing_on_and_stops() {
        let (tx, rx) = std_mpsc::sync_channel(SYNC_QUEUE);
        let (com_tx, mut committed) = mpsc::channel(8);
        tx.send(written(1)).unwrap();
        tx.send(written(2)).unwrap();
        let mut syncs = 0;
        let r = sync_loop(rx, com_tx, || {
            syncs += 1;
            Err(StoreError::Durability {
                path: "t.db-wal".into(),
                source: std::io::Error::other("EIO"),
            })
        });
        assert!(matches!(r, Err(StoreError::Durability { .. })), "{r:?}");
        assert_eq!(syncs, 1, "a failed sync is never retried");
        assert!(
            committed.blocking_recv().is_none(),
            "nothing to acknowledge"
        );
        // The writer finds the sync thread gone and stops too.
        assert!(tx.send(written(3)).is_err());
    }

    fn spent() -> Spent {
        Spent {
            _records: Vec::new(),
            _deliveries: Vec::new(),
        }
    }

    #[test]
    fn a_spent_batch_goes_back_to_the_decode_thread_and_wakes_it() {
        let (input, mut in_rx) = mpsc::channel::<Vec<Incoming>>(1);
        let (spent_tx, spent_rx) = std_mpsc::channel();
        let recycler = Recycler {
            spent: spent_tx,
            wake: input.downgrade(),
        };
        recycler.give_back(spent());
        assert!(spent_rx.try_recv().is_ok(), "handed back");
        assert_eq!(
            in_rx.try_recv().map(|b| b.len()).ok(),
            Some(0),
            "an empty burst wakes it"
        );
        // The wake-up channel is full (the decode thread is busy): the batch still goes back.
        input.try_send(vec![notification(1)]).unwrap();
        recycler.give_back(spent());
        assert!(spent_rx.try_recv().is_ok());
        // The input closed: no wake-up, and the weak handle does not keep the input open.
        drop(input);
        assert_eq!(in_rx.blocking_recv().map(|b| b.len()), Some(1));
        recycler.give_back(spent());
        assert!(spent_rx.try_recv().is_ok());
        assert!(in_rx.blocking_recv().is_none(), "input closed");
        // The decode thread is gone: the writer frees it itself, without an error.
        drop(spent_rx);
        recycler.give_back(spent());
    }
}
