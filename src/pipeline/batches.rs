//! Decoded deliveries on their way from the decode thread to the writer, gathered into batches.
//!
//! The decode thread forms the batches and the writer takes only whole ones. The writer does
//! nothing with a batch's deliveries until it commits them, so waking it for every burst was pure
//! cost, and on this project's machines (virtual CPUs, where waking an idle CPU is a trip through
//! the hypervisor) the dearest part of the pipeline: draining 200,000 single events, the decode
//! thread spent most of its CPU time in `futex_wake` handing thousands of bursts to the writer.
//! Now the writer is woken when a batch starts (to arm its deadline), when one is full, and when
//! one grows big enough to commit without waiting (`commit_when_idle`); its deadline it keeps with
//! its own timer.

use super::{BatchOptions, Decoded};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The hand-over point between the decode thread and the writer.
pub(super) struct Batches {
    opts: BatchOptions,
    state: Mutex<State>,
    /// The writer waits here for a batch.
    for_writer: Condvar,
    /// The decode thread waits here while a full batch is still waiting for the writer.
    for_decoder: Condvar,
}

#[derive(Default)]
struct State {
    /// The batch being filled, its records, and when its first delivery arrived.
    forming: Vec<Decoded>,
    records: usize,
    started: Option<Instant>,
    /// A full batch the writer has not taken yet.
    full: Option<Vec<Decoded>>,
    /// The input has ended: what is left goes in a last batch.
    closed: bool,
    /// The writer has stopped: nothing will be taken any more.
    writer_gone: bool,
    writer_waiting: bool,
    decoder_waiting: bool,
    /// How often the decode thread had reason to wake the writer (whether or not it was asleep).
    writer_wakes: u64,
}

impl State {
    /// The batch being formed, leaving room for the next.
    fn take_forming(&mut self) -> Vec<Decoded> {
        self.records = 0;
        self.started = None;
        std::mem::take(&mut self.forming)
    }
}

/// What the writer gets from [`Batches::take`].
pub(super) enum Take {
    /// A batch to commit; `closing` when the input has ended (the daemon is shutting down).
    Batch { batch: Vec<Decoded>, closing: bool },
    /// Nothing arrived for the idle time the writer asked to wait.
    Idle,
    /// The input has ended and every batch was taken.
    Closed,
}

/// The writer has stopped; the decode thread stops too.
#[derive(Debug)]
pub(super) struct WriterGone;

impl Batches {
    pub(super) fn new(opts: BatchOptions) -> Batches {
        Batches {
            opts,
            state: Mutex::new(State::default()),
            for_writer: Condvar::new(),
            for_decoder: Condvar::new(),
        }
    }

    pub(super) fn max_latency(&self) -> Duration {
        self.opts.max_latency
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add a decoded burst to the batch being formed. Blocks while the batch is full and the
    /// previous full one has not been taken yet (the writer is behind).
    pub(super) fn push(&self, burst: Vec<Decoded>) -> Result<(), WriterGone> {
        let records: usize = burst.iter().map(|d| d.records.len()).sum();
        let mut s = self.lock();
        if s.writer_gone {
            return Err(WriterGone);
        }
        let starts = s.forming.is_empty();
        if starts {
            s.started = Some(Instant::now());
            s.forming = burst;
        } else {
            s.forming.extend(burst);
        }
        let was_small = s.records < self.opts.commit_when_idle;
        s.records += records;
        if s.forming.len() >= self.opts.max_deliveries || s.records >= self.opts.max_records {
            while s.full.is_some() && !s.writer_gone {
                s.decoder_waiting = true;
                s = self
                    .for_decoder
                    .wait(s)
                    .unwrap_or_else(PoisonError::into_inner);
                s.decoder_waiting = false;
            }
            if s.writer_gone {
                return Err(WriterGone);
            }
            s.full = Some(s.take_forming());
            self.wake_writer(&mut s);
        } else if starts || (was_small && s.records >= self.opts.commit_when_idle) {
            self.wake_writer(&mut s);
        }
        Ok(())
    }

    /// The input has ended: the writer takes what is left and stops.
    pub(super) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        self.wake_writer(&mut s);
    }

    /// The writer has stopped (an error, or nobody takes its batches any more).
    pub(super) fn writer_stopped(&self) {
        let mut s = self.lock();
        s.writer_gone = true;
        self.for_decoder.notify_all();
    }

    /// The next batch: a full one at once; the one being formed at its deadline, or as soon as it
    /// holds `commit_when_idle` records (the writer has nothing else to do, and the batch is big
    /// enough that its commit costs little per record), or when the input has ended. Waits at
    /// most `idle` for a batch to start.
    pub(super) fn take(&self, idle: Duration) -> Take {
        let idle_until = Instant::now() + idle;
        let mut s = self.lock();
        loop {
            if let Some(batch) = s.full.take() {
                if s.decoder_waiting {
                    self.for_decoder.notify_one();
                }
                return Take::Batch {
                    batch,
                    closing: s.closed,
                };
            }
            let now = Instant::now();
            let until = match s.started {
                Some(started) => {
                    let due = started + self.opts.max_latency;
                    if s.closed || due <= now || s.records >= self.opts.commit_when_idle {
                        return Take::Batch {
                            batch: s.take_forming(),
                            closing: s.closed,
                        };
                    }
                    due
                }
                None if s.closed => return Take::Closed,
                None if idle_until <= now => return Take::Idle,
                None => idle_until,
            };
            s.writer_waiting = true;
            s = self
                .for_writer
                .wait_timeout(s, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            s.writer_waiting = false;
        }
    }

    fn wake_writer(&self, s: &mut State) {
        s.writer_wakes += 1;
        if s.writer_waiting {
            self.for_writer.notify_one();
        }
    }

    #[cfg(test)]
    fn writer_wakes(&self) -> u64 {
        self.lock().writer_wakes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeliveryMeta, QuarantineReason, Quarantined, Record};
    use std::sync::Arc;

    fn delivery(records: usize) -> Decoded {
        let meta = DeliveryMeta::default();
        let record = || {
            Record::Quarantined(Box::new(Quarantined::new(
                &meta,
                QuarantineReason::BadJson,
                String::new(),
                Vec::new(),
            )))
        };
        Decoded {
            records: (0..records).map(|_| record()).collect(),
            meta: meta.clone(),
            body: Vec::new(),
            ack: None,
        }
    }

    /// Batches of up to `max_deliveries`, shared with another thread.
    fn shared(max_deliveries: usize) -> Arc<Batches> {
        let opts = BatchOptions::new(max_deliveries, 100_000, Duration::from_secs(30));
        Arc::new(Batches::new(opts))
    }

    fn sizes(take: Take) -> (usize, bool) {
        match take {
            Take::Batch { batch, closing } => (batch.len(), closing),
            Take::Idle => panic!("idle"),
            Take::Closed => panic!("closed"),
        }
    }

    #[test]
    fn the_writer_is_woken_per_batch_not_per_burst() {
        let b = Batches::new(BatchOptions::new(1000, 100_000, Duration::from_secs(30)));
        for _ in 0..100 {
            b.push(vec![delivery(1)]).unwrap();
        }
        assert_eq!(b.writer_wakes(), 1, "only the batch's start");
        for _ in 0..900 {
            b.push(vec![delivery(1)]).unwrap();
        }
        assert_eq!(b.writer_wakes(), 2, "and its end when full");
        assert_eq!(sizes(b.take(Duration::ZERO)), (1000, false));
        assert!(matches!(b.take(Duration::ZERO), Take::Idle));
    }

    #[test]
    fn a_batch_is_taken_at_its_deadline() {
        let latency = Duration::from_millis(50);
        let b = Batches::new(BatchOptions::new(1000, 100_000, latency));
        let started = Instant::now();
        b.push(vec![delivery(1), delivery(1)]).unwrap();
        assert_eq!(sizes(b.take(Duration::from_secs(30))), (2, false));
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    }

    #[test]
    fn a_big_enough_batch_is_taken_without_waiting_for_more() {
        // Up to 100 records or 30 s per batch; 20 records are enough to commit at once.
        let b = Arc::new(Batches::new(BatchOptions::new(
            1000,
            100,
            Duration::from_secs(30),
        )));
        b.push(vec![delivery(19)]).unwrap();
        let started = Instant::now();
        let writer = {
            let b = b.clone();
            std::thread::spawn(move || sizes(b.take(Duration::from_secs(30))))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!writer.is_finished(), "19 records wait for more");
        b.push(vec![delivery(1)]).unwrap();
        assert_eq!(writer.join().unwrap(), (2, false));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(b.writer_wakes(), 2, "its start and reaching 20 records");
        // Once it is that big, the writer takes it as soon as it looks, with everything decoded
        // while it was busy (here, committing the previous batch).
        b.push(vec![delivery(15)]).unwrap();
        b.push(vec![delivery(15)]).unwrap();
        assert_eq!(sizes(b.take(Duration::ZERO)), (2, false));
    }

    #[test]
    fn a_full_batch_holds_the_decoder_back_until_the_writer_takes_it() {
        let b = shared(2);
        b.push(vec![delivery(1), delivery(1)]).unwrap();
        let decoder = {
            let b = b.clone();
            std::thread::spawn(move || b.push(vec![delivery(1), delivery(1), delivery(1)]))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!decoder.is_finished(), "a second full batch waits");
        assert_eq!(sizes(b.take(Duration::ZERO)), (2, false));
        decoder.join().unwrap().unwrap();
        // A batch takes whole bursts, so it may run over by one.
        assert_eq!(sizes(b.take(Duration::ZERO)), (3, false));
    }

    #[test]
    fn a_stopped_writer_releases_the_decoder() {
        let b = shared(1);
        b.push(vec![delivery(1)]).unwrap();
        let decoder = {
            let b = b.clone();
            std::thread::spawn(move || b.push(vec![delivery(1)]))
        };
        std::thread::sleep(Duration::from_millis(50));
        b.writer_stopped();
        assert!(decoder.join().unwrap().is_err());
        assert!(b.push(vec![delivery(1)]).is_err());
    }

    #[test]
    fn the_input_ending_hands_over_the_rest_then_closes() {
        let b = Batches::new(BatchOptions::new(1000, 100_000, Duration::from_secs(30)));
        b.push(vec![delivery(3)]).unwrap();
        b.close();
        assert_eq!(sizes(b.take(Duration::from_secs(30))), (1, true));
        assert!(matches!(b.take(Duration::from_secs(30)), Take::Closed));
    }
}
