//! Synthetic Carbon Black EDR bus traffic for demos, tests and benchmarks.
//!
//! [`Synth`] simulates an estate of Windows endpoints and yields what their CB server would
//! publish: raw sensor events as single `CbEventMsg`s on `api.events` or zip bundles on
//! `api.rawsensordata`, and JSON notifications (watchlist, feed and alert hits on the simulated
//! processes, binary notifications), all encoded with the crate's own prost types and shaped like
//! the real captures (`tests/synth_shapes.rs` checks them against those).
//!
//! Each host boots Windows (System → smss → csrss/wininit → services → svchost …, winlogon →
//! userinit → explorer → user programs), starts its sensor (which reports the processes already
//! running, and with no details the parents that exited before it started), then runs programs
//! spawned by the catalog's rules until the end of the window. Process GUIDs are built from
//! sensor id, pid and FILETIME create time like the server's; pids are reused now and then.
//!
//! Generation is deterministic for a seed and streams: hosts are simulated in waves of
//! [`WAVE_HOSTS`], their deliveries merged by time, and each host keeps only its live processes,
//! so tens of millions of events never sit in memory. Bundles are zipped on worker threads (one
//! per spare CPU); the bytes are the same whichever thread zips. A release build generates well
//! over a million events per second (`cargo run --release --example synth_speed`).
//!
//! ```
//! use cbtrail::synth::{Synth, SynthConfig};
//!
//! let cfg = SynthConfig::parse("hosts=2,processes=60,events=10,mode=bundles,seed=7").unwrap();
//! let mut synth = Synth::new(cfg);
//! for msg in synth.by_ref() {
//!     // publish msg.meta (exchange, routing key, content type, headers) and msg.body
//!     assert!(!msg.body.is_empty());
//! }
//! let summary = synth.summary();
//! assert!(summary.events > 0 && summary.processes > 100);
//! println!("{summary}");
//! ```

mod activity;
mod binary;
mod bundle;
mod catalog;
mod clock;
mod config;
mod encode;
mod host;
mod notify;
mod process;
mod rng;
mod sim;
mod text;

pub use config::{SynthConfig, SynthError, SynthMode};
pub use encode::EvKind;
pub use process::process_guid;

use crate::model::DeliveryMeta;
use clock::{TICKS_PER_SEC, filetime_from_unix_ms};
use sim::{Global, HostSim, Params};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;

/// Hosts simulated at the same time; their deliveries interleave by time. Larger estates run
/// wave after wave (each wave covers the whole window).
pub const WAVE_HOSTS: u32 = 1024;

/// One AMQP message as the CB server would publish it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticMessage {
    /// Exchange, routing key, content type and headers.
    pub meta: DeliveryMeta,
    pub body: Vec<u8>,
    /// Simulated publication time, Unix milliseconds.
    pub at_ms: i64,
}

/// What a generator has sent so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthSummary {
    pub messages: u64,
    pub bytes: u64,
    /// Single `CbEventMsg` messages on `api.events`.
    pub single_messages: u64,
    /// Zip bundles on `api.rawsensordata`.
    pub bundles: u64,
    /// JSON notifications.
    pub notifications: u64,
    /// Raw events, in singles and bundles together.
    pub events: u64,
    /// Raw events by [`EvKind::name`] (module info counts as `module`).
    pub events_by_type: BTreeMap<&'static str, u64>,
    /// Notifications by routing key.
    pub notifications_by_key: BTreeMap<String, u64>,
    /// Hits on processes (a watchlist hit and the alert it raised count once).
    pub hits: u64,
    /// GUIDs of the processes hit, in the order of their first hit notification.
    pub hit_process_guids: Vec<String>,
    /// Hosts started so far.
    pub hosts: u32,
    /// Processes simulated so far that the server learns of (ahead of delivery by at most a
    /// bundle's worth).
    pub processes: u64,
    /// Simulated time of the first and last message, Unix ms.
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

impl fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "messages={} bytes={} singles={} bundles={} notifications={} hosts={} processes={}",
            self.messages,
            self.bytes,
            self.single_messages,
            self.bundles,
            self.notifications,
            self.hosts,
            self.processes
        )?;
        write!(f, "events={}", self.events)?;
        for (k, v) in &self.events_by_type {
            write!(f, " {k}={v}")?;
        }
        writeln!(f)?;
        write!(f, "hits={}", self.hits)?;
        for (k, v) in &self.notifications_by_key {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// The generator: an iterator of [`SyntheticMessage`]s in time order.
pub struct Synth {
    cfg: SynthConfig,
    params: Arc<Params>,
    global: Global,
    next_host: u32,
    sims: Vec<HostSim>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
    /// Deliveries generated ahead of the consumer while their bundles are zipped.
    ahead: VecDeque<Ahead>,
    zipping: usize,
    pool: Option<zipper::Pool>,
    summary: SynthSummary,
    /// Raw events by kind; folded into the summary's map when asked (cheaper per message).
    by_kind: [u64; EvKind::ALL.len()],
}

enum Ahead {
    Ready(sim::Out),
    /// The records moved out of the body, kept to zip here should the worker fail.
    Zipping(sim::Out, zipper::Ticket, Arc<Vec<u8>>),
}

/// Most bundles zipping at once per worker, and most deliveries held ahead in all.
const ZIPS_PER_WORKER: usize = 16;
const MAX_AHEAD: usize = 4096;

/// Raw events a process causes besides its activity units: procstart, procend, the parent's two
/// childproc records, module info and notifications, on average.
const LIFECYCLE_EVENTS: f64 = 3.0;
/// Events per activity unit, on average (file bursts and two-sided cross-process records).
const EVENTS_PER_UNIT: f64 = 1.18;

impl Synth {
    pub fn new(cfg: SynthConfig) -> Synth {
        let start_ft = filetime_from_unix_ms(cfg.start_ms);
        let modern = cfg.modern_fraction > 0.0;
        let params = Params {
            seed: cfg.seed,
            end_ft: start_ft + cfg.duration_secs as i64 * TICKS_PER_SEC,
            window_secs: cfg.duration_secs,
            start_ms: cfg.start_ms,
            processes: cfg.processes_per_host,
            acts_mean: ((f64::from(cfg.events_per_process) - LIFECYCLE_EVENTS) / EVENTS_PER_UNIT)
                .max(0.3),
            bundle_records: cfg.bundle_records,
            flush_ticks: i64::from(cfg.flush_secs) * TICKS_PER_SEC,
            hit_rate: cfg.hit_rate,
            modern_fraction: cfg.modern_fraction,
            server: notify::Server {
                // A server new enough for current sensors uses EDR 6+ segment ids.
                cb_version: if modern {
                    "7.7.1.230418.1536"
                } else {
                    "5.3.0.170717.1512"
                },
                name: "cbresponse",
                long_segments: modern,
            },
        };
        Synth {
            cfg,
            params: Arc::new(params),
            global: Global::default(),
            next_host: 0,
            sims: Vec::new(),
            heap: BinaryHeap::new(),
            ahead: VecDeque::new(),
            zipping: 0,
            pool: zipper::Pool::start(),
            summary: SynthSummary::default(),
            by_kind: [0; EvKind::ALL.len()],
        }
    }

    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// Totals of what has been yielded so far.
    pub fn summary(&self) -> SynthSummary {
        let mut s = self.summary.clone();
        s.processes = self.global.processes;
        for (kind, &n) in EvKind::ALL.iter().zip(self.by_kind.iter()) {
            if n > 0 {
                s.events_by_type.insert(kind.name(), n);
            }
        }
        s
    }

    fn bundles_for(&self, index: u32) -> bool {
        match self.cfg.mode {
            SynthMode::Singles => false,
            SynthMode::Bundles => true,
            SynthMode::Mixed => index.is_multiple_of(2),
        }
    }

    /// Start the next wave of hosts; false when every host has run.
    fn next_wave(&mut self) -> bool {
        if self.next_host >= self.cfg.hosts {
            return false;
        }
        let end = self
            .next_host
            .saturating_add(WAVE_HOSTS)
            .min(self.cfg.hosts);
        self.sims.clear();
        for index in self.next_host..end {
            let bundles = self.bundles_for(index);
            self.sims
                .push(HostSim::new(self.params.clone(), index, bundles));
        }
        self.summary.hosts = end;
        self.next_host = end;
        for (i, sim) in self.sims.iter_mut().enumerate() {
            if let Some(ft) = sim.next_ft(&mut self.global) {
                self.heap.push(Reverse((ft, i as u32)));
            }
        }
        true
    }

    fn record(&mut self, out: &sim::Out) {
        let s = &mut self.summary;
        s.messages += 1;
        s.bytes += out.msg.body.len() as u64;
        s.first_ms.get_or_insert(out.msg.at_ms);
        s.last_ms = Some(out.msg.at_ms);
        if out.notification {
            s.notifications += 1;
            *s.notifications_by_key
                .entry(out.msg.meta.routing_key.clone())
                .or_default() += 1;
        } else if out.msg.meta.exchange == bundle::RAW_EXCHANGE {
            s.bundles += 1;
        } else {
            s.single_messages += 1;
        }
        for (total, &n) in self.by_kind.iter_mut().zip(out.counts.iter()) {
            *total += u64::from(n);
            s.events += u64::from(n);
        }
        if let Some(guid) = &out.hit_guid {
            s.hits += 1;
            s.hit_process_guids.push(guid.clone());
        }
    }
}

impl Synth {
    /// The next delivery in time order across the hosts of the wave (bundles not yet zipped).
    fn pull(&mut self) -> Option<sim::Out> {
        loop {
            let Some(Reverse((_, i))) = self.heap.pop() else {
                if self.next_wave() {
                    continue;
                }
                return None;
            };
            let Some(sim) = self.sims.get_mut(i as usize) else {
                continue;
            };
            let Some(out) = sim.out.pop_front() else {
                continue;
            };
            if let Some(ft) = sim.next_ft(&mut self.global) {
                self.heap.push(Reverse((ft, i)));
            }
            return Some(out);
        }
    }

    /// Generate ahead while zip workers have room, handing bundles to them. Returns a delivery
    /// that can go out at once (nothing is waiting ahead of it).
    fn fill_ahead(&mut self) -> Option<sim::Out> {
        let max_zips = self.pool.as_ref()?.workers() * ZIPS_PER_WORKER;
        while self.zipping < max_zips && self.ahead.len() < MAX_AHEAD {
            let mut out = self.pull()?;
            match (&out.zip_member, &self.pool) {
                (Some(member), Some(pool)) => {
                    let records = Arc::new(std::mem::take(&mut out.msg.body));
                    let ticket = pool.submit(member, records.clone(), out.msg.at_ms);
                    self.zipping += 1;
                    self.ahead.push_back(Ahead::Zipping(out, ticket, records));
                }
                _ if self.ahead.is_empty() => return Some(out),
                _ => self.ahead.push_back(Ahead::Ready(out)),
            }
        }
        None
    }
}

impl Iterator for Synth {
    type Item = SyntheticMessage;

    fn next(&mut self) -> Option<SyntheticMessage> {
        let mut out = match self.fill_ahead() {
            Some(out) => out,
            None => match self.ahead.pop_front() {
                Some(Ahead::Ready(out)) => out,
                Some(Ahead::Zipping(mut out, ticket, records)) => {
                    self.zipping -= 1;
                    match ticket.wait() {
                        Some(zip) => {
                            out.msg.body = zip;
                            out.zip_member = None;
                        }
                        // The worker is gone (it cannot fail otherwise): zip below instead.
                        None => out.msg.body = Arc::unwrap_or_clone(records),
                    }
                    out
                }
                None => self.pull()?,
            },
        };
        if let Some(member) = out.zip_member.take() {
            bundle::zip_body(&mut out.msg, &member);
        }
        self.record(&out);
        Some(out.msg)
    }
}

/// Zipping bundles on worker threads: deflate is the costliest step of bundle generation, and
/// the output is the same bytes whichever thread zips.
mod zipper {
    use std::sync::Arc;
    use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

    struct Job {
        member: String,
        records: Arc<Vec<u8>>,
        ms: i64,
        reply: SyncSender<Option<Vec<u8>>>,
    }

    pub(super) struct Pool {
        senders: Vec<Sender<Job>>,
        next: std::cell::Cell<usize>,
    }

    pub(super) struct Ticket {
        rx: Receiver<Option<Vec<u8>>>,
    }

    impl Ticket {
        /// The zipped body, or `None` if the worker could not deliver it.
        pub(super) fn wait(self) -> Option<Vec<u8>> {
            self.rx.recv().ok().flatten()
        }
    }

    impl Pool {
        /// One worker per spare CPU (at most 7); `None` on a single CPU, where bundles are
        /// zipped inline.
        pub(super) fn start() -> Option<Pool> {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let workers = cpus.saturating_sub(1).min(7);
            let mut senders = Vec::with_capacity(workers);
            for i in 0..workers {
                let (tx, rx) = channel::<Job>();
                let spawned = std::thread::Builder::new()
                    .name(format!("synth-zip-{i}"))
                    .spawn(move || {
                        // Ends when the generator (and with it the sender) is dropped.
                        while let Ok(job) = rx.recv() {
                            let zip = super::bundle::zip_records(&job.member, &job.records, job.ms);
                            let _ = job.reply.send(zip);
                        }
                    });
                if spawned.is_ok() {
                    senders.push(tx);
                }
            }
            (!senders.is_empty()).then(|| Pool {
                senders,
                next: std::cell::Cell::new(0),
            })
        }

        pub(super) fn workers(&self) -> usize {
            self.senders.len()
        }

        pub(super) fn submit(&self, member: &str, records: Arc<Vec<u8>>, ms: i64) -> Ticket {
            let (reply, rx) = sync_channel(1);
            let i = self.next.get();
            self.next.set((i + 1) % self.senders.len());
            let job = Job {
                member: member.to_string(),
                records,
                ms,
                reply,
            };
            // A dead worker drops the reply sender, and the ticket then reports None.
            let _ = self.senders[i].send(job);
            Ticket { rx }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_produces_every_delivery_kind_in_time_order() {
        let cfg =
            SynthConfig::parse("hosts=6,processes=120,events=30,hit_rate=0.2,duration=2h").unwrap();
        let mut synth = Synth::new(cfg);
        let mut last = i64::MIN;
        let mut n = 0;
        for m in synth.by_ref() {
            assert!(
                m.at_ms >= last,
                "deliveries of one wave leave in time order"
            );
            last = m.at_ms;
            n += 1;
        }
        let s = synth.summary();
        assert_eq!(s.messages, n);
        assert!(
            s.bundles > 0 && s.single_messages > 0 && s.notifications > 0,
            "{s}"
        );
        assert!(
            s.hits > 0 && s.hit_process_guids.len() as u64 == s.hits,
            "{s}"
        );
        for kind in [
            "procstart",
            "procend",
            "childproc",
            "modload",
            "filemod",
            "regmod",
            "netconn",
            "crossproc",
            "module",
        ] {
            assert!(
                s.events_by_type.get(kind).copied().unwrap_or(0) > 0,
                "no {kind}: {s}"
            );
        }
        assert_eq!(s.events, s.events_by_type.values().sum::<u64>());
    }

    #[test]
    fn events_and_processes_follow_the_config() {
        for events in [10u32, 60] {
            let cfg =
                SynthConfig::parse(&format!("hosts=8,processes=150,events={events}")).unwrap();
            let mut synth = Synth::new(cfg);
            synth.by_ref().for_each(drop);
            let s = synth.summary();
            // The boot tree and spawns use the budget; a few spawns are blocked instead.
            assert!((8 * 140..=8 * 150).contains(&s.processes), "{s}");
            let per = s.events as f64 / s.processes as f64;
            let want = f64::from(events);
            assert!(
                (want * 0.75..=want * 1.25).contains(&per),
                "{per} events per process, want {want}"
            );
        }
    }

    #[test]
    fn large_estates_run_in_waves() {
        let hosts = WAVE_HOSTS + 6;
        let cfg = SynthConfig::parse(&format!(
            "hosts={hosts},processes=4,events=3,mode=bundles,flush=600"
        ))
        .unwrap();
        let mut synth = Synth::new(cfg);
        let mut sensors = std::collections::HashSet::new();
        let mut rewinds = 0;
        let mut last = i64::MIN;
        for m in synth.by_ref() {
            if m.at_ms < last {
                rewinds += 1;
            }
            last = m.at_ms;
            if let Some(id) = m.meta.headers.get("sensorId").and_then(|v| v.as_i64()) {
                sensors.insert(id);
            }
        }
        assert_eq!(synth.summary().hosts, hosts);
        assert_eq!(sensors.len() as u32, hosts, "every host sent bundles");
        assert_eq!(rewinds, 1, "time restarts once, at the second wave");
    }
}
