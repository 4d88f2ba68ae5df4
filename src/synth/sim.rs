//! One host over the window: boot, sensor start (with its snapshot of running processes),
//! processes starting and ending, and the deliveries that produces, in time order.
//!
//! Work is a priority queue of timed actions; each live process has at most one pending
//! activity, so memory follows the number of live processes, not the number of events.

use super::SyntheticMessage;
use super::binary::{BinRef, Bins};
use super::bundle::{self, KindCounts, Pending};
use super::catalog::{
    Account, BOOT, Boot, IMAGES, Img, Profile, SPAWNS, auto_children, dll_set, os_bit,
};
use super::clock::{TICKS_PER_MS, TICKS_PER_SEC, unix_ms_from_filetime};
use super::encode::{Encoder, EvKind};
use super::host::Host;
use super::notify::{self, Server};
use super::process::{Counts, ParentRef, Proc, legacy_guid, process_guid};
use super::rng::Rng;
use super::text::{Ctx, filled, truncate_cmdline};
use crate::proto::{CbEnvironmentMsg, CbEventMsg};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;

/// Settings shared by every host of a run.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub seed: u64,
    pub end_ft: i64,
    pub window_secs: u64,
    pub start_ms: i64,
    pub processes: u32,
    /// Mean activity units per process (an activity unit is one to three events).
    pub acts_mean: f64,
    pub bundle_records: u32,
    pub flush_ticks: i64,
    pub hit_rate: f64,
    pub modern_fraction: f64,
    pub server: Server,
}

/// State shared across hosts: what the server has already seen.
#[derive(Debug, Default)]
pub(crate) struct Global {
    pub bins: HashSet<[u8; 16]>,
    pub group_bins: HashSet<(&'static str, [u8; 16])>,
    pub alerts: u64,
    pub reports: u64,
    /// Processes the server learnt of: announced by a procstart or (eventless ones) by their
    /// parent's childproc.
    pub processes: u64,
}

/// One delivery of a host, with what it carries.
#[derive(Debug)]
pub(crate) struct Out {
    pub ft: i64,
    pub msg: SyntheticMessage,
    pub counts: KindCounts,
    /// GUID of the process a hit notification is about (first notification of the hit).
    pub hit_guid: Option<String>,
    pub notification: bool,
    /// A bundle still to be zipped into this member name (the body holds the records).
    pub zip_member: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Act {
    Boot(u8),
    SensorStart,
    Spawn,
    Child(u32, u32, Img),
    Activity(u32, u32),
    End(u32, u32),
    Block(u32, u32),
    Module(BinRef),
    Note(Note, BinRef),
    Hit(u32, u32, HitKind),
    Flush(u32),
    Tamper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Note {
    HostObserved,
    Observed,
    GroupObserved,
    StoreAdded,
    StorageHit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum HitKind {
    Watchlist,
    WatchlistWithAlert,
    FeedIngress,
    WatchlistStorage,
    FeedQuery,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Sched {
    ft: i64,
    seq: u64,
    act: Act,
}

/// Windows process ids: multiples of four, reused once freed.
#[derive(Debug)]
struct Pids {
    used: Vec<u64>,
    freed: VecDeque<i32>,
    next_boot: i32,
}

const PID_SLOTS: usize = 16_384;

impl Pids {
    fn new() -> Pids {
        Pids {
            used: vec![0; PID_SLOTS / 64],
            freed: VecDeque::new(),
            next_boot: 260,
        }
    }

    fn is_used(&self, pid: i32) -> bool {
        let i = (pid / 4) as usize;
        i < PID_SLOTS && self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, pid: i32, on: bool) {
        let i = (pid / 4) as usize;
        if i < PID_SLOTS {
            if on {
                self.used[i / 64] |= 1 << (i % 64);
            } else {
                self.used[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    fn boot(&mut self, rng: &mut Rng) -> i32 {
        loop {
            self.next_boot += 4 * rng.range(1, 40) as i32;
            if !self.is_used(self.next_boot) {
                self.set(self.next_boot, true);
                return self.next_boot;
            }
        }
    }

    fn alloc(&mut self, rng: &mut Rng) -> i32 {
        // Now and then Windows hands out a pid that was just freed: same pid, new GUID.
        if rng.chance(0.04) && !self.freed.is_empty() {
            let i = rng.below(self.freed.len() as u64) as usize;
            if let Some(pid) = self.freed.remove(i)
                && !self.is_used(pid)
            {
                self.set(pid, true);
                return pid;
            }
        }
        for _ in 0..64 {
            // Workstations rarely see pids past a few thousand times four.
            let pid = 4 * rng.range(200, 3_500) as i32;
            if !self.is_used(pid) {
                self.set(pid, true);
                return pid;
            }
        }
        let pid = (1..PID_SLOTS as i32)
            .map(|i| i * 4)
            .find(|&p| !self.is_used(p))
            .unwrap_or(4 * (PID_SLOTS as i32 + rng.below(1 << 20) as i32));
        self.set(pid, true);
        pid
    }

    fn release(&mut self, pid: i32) {
        self.set(pid, false);
        self.freed.push_back(pid);
        if self.freed.len() > 32 {
            self.freed.pop_front();
        }
    }
}

pub(crate) struct HostSim {
    pub(crate) host: Host,
    pub(crate) p: Arc<Params>,
    pub(crate) rng: Rng,
    pub(crate) procs: Vec<Proc>,
    free: Vec<u32>,
    pub(crate) by_img: Vec<Vec<u32>>,
    pids: Pids,
    queue: BinaryHeap<Reverse<Sched>>,
    seq: u64,
    pub(crate) out: VecDeque<Out>,
    last_out: i64,
    spawn_left: u32,
    pub(crate) sensor_on: bool,
    pub(crate) bins: Bins,
    seen: HashSet<[u8; 16]>,
    pending: Pending,
    session: u32,
    pub(crate) scan_id: i32,
    pub(crate) emet_id: u64,
    rules: Vec<(usize, u32)>,
    banned: Vec<Img>,
    boot_refs: Vec<Option<ParentRef>>,
    env: CbEnvironmentMsg,
    /// `env` encoded as field 13 of `CbEventMsg`, appended to single messages.
    env_field: Vec<u8>,
    done: bool,
}

impl HostSim {
    pub(crate) fn new(p: Arc<Params>, index: u32, bundles: bool) -> HostSim {
        let host = Host::new(
            p.seed,
            index,
            p.start_ms,
            p.window_secs,
            p.modern_fraction,
            bundles,
        );
        let mut rng = Rng::derive(p.seed, 0x5349_4D00_0000_0000 | u64::from(index));
        let bit = os_bit(host.os);
        let rules = SPAWNS
            .iter()
            .enumerate()
            .filter(|(_, s)| s.os & bit != 0)
            .map(|(i, s)| (i, u32::from(s.weight)))
            .collect();
        let mut banned = Vec::new();
        for (img, p) in [
            (Img::Updater, 0.5),
            (Img::Dropper, 0.2),
            (Img::Putty, 0.25),
            (Img::ProcExp, 0.15),
        ] {
            if rng.chance(p) {
                banned.push(img);
            }
        }
        let session = rng.next_u64() as u32;
        let env = Encoder { host: &host }.env();
        let env_field = bundle::env_field(&env);
        let mut sim = HostSim {
            host,
            p: p.clone(),
            rng,
            procs: Vec::new(),
            free: Vec::new(),
            by_img: vec![Vec::new(); IMAGES.len()],
            pids: Pids::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            out: VecDeque::new(),
            last_out: i64::MIN,
            spawn_left: 0,
            sensor_on: false,
            bins: Bins::default(),
            seen: HashSet::new(),
            pending: Pending::default(),
            session,
            scan_id: 0,
            emet_id: 1000,
            rules,
            banned,
            boot_refs: vec![None; BOOT.len()],
            env,
            env_field,
            done: false,
        };
        sim.scan_id = sim.rng.range(100, 5000) as i32;
        sim.plan_boot();
        sim
    }

    /// Schedule the boot processes (as many as the process budget allows) and the sensor start.
    fn plan_boot(&mut self) {
        let bit = os_bit(self.host.os);
        let logon = !self.host.os.is_server() || self.rng.chance(0.3);
        let mut budget = self.p.processes;
        let mut times = vec![self.host.boot_ft; BOOT.len()];
        for (i, row) in BOOT.iter().enumerate() {
            if row.os & bit == 0 || (row.logon && !logon) {
                continue;
            }
            if budget == 0 {
                break;
            }
            budget -= 1;
            let jitter = if i == 0 {
                0
            } else {
                self.rng.below(300) as i64 * TICKS_PER_MS
            };
            let mut ft = self.host.boot_ft + i64::from(row.at_ms) * TICKS_PER_MS + jitter;
            // A child never starts before its parent, whatever the jitter.
            if let Some(p) = row.parent {
                let after = self.rng.below(TICKS_PER_MS as u64) as i64;
                ft = ft.max(times[p as usize] + TICKS_PER_MS + after);
            }
            times[i] = ft;
            self.at(ft, Act::Boot(i as u8));
        }
        self.spawn_left = budget;
        self.at(self.host.sensor_start_ft, Act::SensorStart);
        // Tamper alerts are rare: about one host in fifty per day of window.
        let p_tamper = (self.p.window_secs as f64 / 86_400.0 * 0.02).min(0.5);
        if self.rng.chance(p_tamper) {
            let t = self.host.sensor_start_ft
                + self
                    .rng
                    .below((self.p.end_ft - self.host.sensor_start_ft).max(1) as u64)
                    as i64;
            self.at(t, Act::Tamper);
        }
    }

    pub(crate) fn at(&mut self, ft: i64, act: Act) {
        self.seq += 1;
        self.queue.push(Reverse(Sched {
            ft,
            seq: self.seq,
            act,
        }));
    }

    /// Time of the next delivery, generating until there is one; `None` when the host is done.
    pub(crate) fn next_ft(&mut self, g: &mut Global) -> Option<i64> {
        while self.out.is_empty() && !self.done {
            self.step(g);
        }
        self.out.front().map(|o| o.ft)
    }

    fn step(&mut self, g: &mut Global) {
        let Some(Reverse(s)) = self.queue.pop() else {
            self.finish();
            return;
        };
        if s.ft > self.p.end_ft {
            self.queue.clear();
            self.finish();
            return;
        }
        let t = s.ft;
        match s.act {
            Act::Boot(row) => self.boot_proc(t, row, g),
            Act::SensorStart => self.sensor_start(t, g),
            Act::Spawn => self.spawn(t, g),
            Act::Child(slot, epoch, img) => {
                if self.valid(slot, epoch) && self.spawn_left > 0 {
                    self.spawn_left -= 1;
                    let parent = self.procs[slot as usize].as_parent(slot);
                    self.create(t, img, Some(parent), None, g);
                }
            }
            Act::Activity(slot, epoch) => self.activity(t, slot, epoch, g),
            Act::End(slot, epoch) => self.end(t, slot, epoch),
            Act::Block(slot, epoch) => self.block_running(t, slot, epoch),
            Act::Module(r) => self.module(t, r),
            Act::Note(kind, r) => self.note(t, kind, r),
            Act::Hit(slot, epoch, kind) => self.hit(t, slot, epoch, kind, g),
            Act::Flush(epoch) => {
                if epoch == self.pending.epoch && !self.pending.is_empty() {
                    self.flush(t);
                }
            }
            Act::Tamper => {
                let kind = 1 + self.rng.below(5) as i32;
                let m = Encoder { host: &self.host }.tamper(t, kind);
                self.event(EvKind::Tamper, t, m);
            }
        }
    }

    fn finish(&mut self) {
        if !self.pending.is_empty() {
            self.flush(self.p.end_ft.max(self.last_out));
        }
        self.done = true;
    }

    pub(crate) fn valid(&self, slot: u32, epoch: u32) -> bool {
        self.procs
            .get(slot as usize)
            .is_some_and(|p| p.epoch == epoch && p.alive)
    }

    // ---- deliveries ----------------------------------------------------------------------

    /// Send a raw event: as a single message, or into the sensor's next bundle.
    pub(crate) fn event(&mut self, kind: EvKind, ts: i64, mut m: CbEventMsg) {
        if self.host.bundles {
            if self.pending.is_empty() {
                let epoch = self.pending.epoch;
                self.at(ts + self.p.flush_ticks, Act::Flush(epoch));
            }
            self.pending.push(kind, &m);
            if self.pending.records >= self.p.bundle_records {
                self.flush(ts);
            }
        } else {
            let mut counts = KindCounts::default();
            counts[kind as usize] = 1;
            let msg = bundle::single(kind, &mut m, &self.env, &self.env_field);
            self.push_out(ts, msg, counts, None, false);
        }
    }

    fn flush(&mut self, ft: i64) {
        let (msg, counts, member) = self.pending.take(&self.host, self.session, ft);
        self.push_out(ft, msg, counts, None, false);
        if let Some(out) = self.out.back_mut() {
            out.zip_member = Some(member);
        }
    }

    fn push_out(
        &mut self,
        ft: i64,
        mut msg: SyntheticMessage,
        counts: KindCounts,
        hit_guid: Option<String>,
        notification: bool,
    ) {
        // A host's deliveries leave in order even when an event is stamped a few ms ahead.
        let ft = ft.max(self.last_out);
        self.last_out = ft;
        msg.at_ms = unix_ms_from_filetime(ft);
        self.out.push_back(Out {
            ft,
            msg,
            counts,
            hit_guid,
            notification,
            zip_member: None,
        });
    }

    fn json(
        &mut self,
        ft: i64,
        (key, body): (String, serde_json::Value),
        hit_guid: Option<String>,
    ) {
        self.push_out(
            ft,
            bundle::json(key, &body),
            KindCounts::default(),
            hit_guid,
            true,
        );
    }

    // ---- processes -----------------------------------------------------------------------

    /// (username, uid) of an account on this host.
    pub(crate) fn account_names(&self, account: Account, session: u32) -> (String, String) {
        match account {
            Account::System => ("SYSTEM".into(), "S-1-5-18".into()),
            Account::LocalService => ("LOCAL SERVICE".into(), "S-1-5-19".into()),
            Account::NetworkService => ("NETWORK SERVICE".into(), "S-1-5-20".into()),
            Account::User => (self.host.user.display.clone(), self.host.user.sid.clone()),
            Account::Dwm => (
                format!("Window Manager\\DWM-{session}"),
                format!("S-1-5-90-0-{session}"),
            ),
            Account::Umfd => (
                format!("Font Driver Host\\UMFD-{session}"),
                format!("S-1-5-96-0-{session}"),
            ),
        }
    }

    fn boot_proc(&mut self, t: i64, row: u8, g: &mut Global) {
        let Some(b) = BOOT.get(row as usize) else {
            return;
        };
        // The parent as it was when it started this child; it may have exited since (the
        // per-session smss instances always have by the time the sensor looks).
        let parent = b
            .parent
            .and_then(|r| self.boot_refs.get(r as usize).cloned().flatten());
        if let Some(slot) = self.create(t, b.img, parent, Some(b), g) {
            let p = &self.procs[slot as usize];
            self.boot_refs[row as usize] = Some(p.as_parent(slot));
        }
    }

    /// Bring a process to life at `t`. Before the sensor runs it is only recorded; after, its
    /// parent's childproc and its own procstart are sent and its activity scheduled.
    pub(crate) fn create(
        &mut self,
        t: i64,
        img: Img,
        parent: Option<ParentRef>,
        row: Option<&'static Boot>,
        g: &mut Global,
    ) -> Option<u32> {
        let image = img.get();
        let pid = match img {
            Img::Idle => 0,
            Img::System => 4,
            _ if row.is_some() => self.pids.boot(&mut self.rng),
            _ => self.pids.alloc(&mut self.rng),
        };
        if pid <= 4 {
            self.pids.set(pid, true);
        }
        let sensor = self.host.sensor_id;
        let bin = self.bins.get(&self.host, BinRef::Image(img));
        let parent_slot = parent
            .as_ref()
            .and_then(|r| r.slot)
            .filter(|&(s, e)| self.valid(s, e))
            .map(|(s, _)| s);
        let parent_account = parent_slot.map(|s| self.procs[s as usize].account);
        let mut account = row.and_then(|r| r.account).unwrap_or(image.account);
        let service_parent = matches!(
            parent_account,
            Some(Account::System | Account::LocalService | Account::NetworkService)
        );
        // Console programs a service starts run as the service's account; a console host
        // always runs as its console program.
        let console = matches!(
            image.profile,
            Profile::Console | Profile::Script | Profile::Tool
        );
        if (img == Img::Conhost || (account == Account::User && console && service_parent))
            && let Some(a) = parent_account
        {
            account = a;
        }
        let session = match account {
            Account::System | Account::LocalService | Account::NetworkService => 0,
            Account::Umfd if row.is_some_and(|r| r.parent == Some(6)) => 0,
            _ if self.host.os.is_server() => 2,
            _ => 1,
        };
        let parent_ref = match (img, parent) {
            // The idle process names System as its parent and System names the idle process;
            // the sensor knows neither's image.
            (Img::Idle, _) => ParentRef {
                pid: 4,
                create_ft: t,
                legacy: legacy_guid(sensor, 4, t),
                info: None,
                slot: None,
            },
            (_, Some(mut r)) => {
                if r.pid == 0 {
                    r.info = None;
                }
                r
            }
            (_, None) => ParentRef {
                pid: -1,
                create_ft: 0,
                legacy: 0,
                info: None,
                slot: None,
            },
        };
        let cmd_tpl = match row.and_then(|r| r.cmd) {
            Some(c) => c,
            None => self.rng.pick(image.cmd).copied().unwrap_or(""),
        };
        let mut cmdline = {
            let ctx = Ctx {
                user: &self.host.user.folder,
                user_orig: &self.host.user.folder_orig,
                sid: &self.host.user.sid_lower,
                exe: image.exe,
            };
            filled(cmd_tpl, &ctx, &mut self.rng)
        };
        truncate_cmdline(&mut cmdline);
        let end_ft = match image.life {
            Some(mean) => {
                let secs = self.rng.exp(f64::from(mean)).max(0.2);
                t + (secs * TICKS_PER_SEC as f64) as i64
            }
            None => i64::MAX,
        };
        let factor = match image.profile {
            Profile::Quiet => 0.15,
            Profile::Tool => 0.35,
            Profile::Console => 0.7,
            Profile::Browser | Profile::Shell | Profile::Mail => 1.5,
            _ => 1.0,
        };
        let units = self.rng.exp(self.p.acts_mean * factor).round() as u32;
        let dll_count: usize = dll_set(image.dlls).iter().map(|l| l.len()).sum();
        let dlls = if dll_count == 0 {
            0
        } else {
            ((units as f64 * 0.45).round() as u32).clamp(1, dll_count as u32 + 1)
        };
        let after_sensor = self.sensor_on;
        let suppressed = after_sensor
            && row.is_none()
            && match img {
                Img::ChromeRenderer => self.rng.chance(0.25),
                Img::Conhost => self.rng.chance(0.3),
                _ => image.profile == Profile::Tool && self.rng.chance(0.2),
            };
        let proc = Proc {
            epoch: 0,
            alive: true,
            holds: 0,
            pid,
            create_ft: t,
            legacy: legacy_guid(sensor, pid, t),
            img,
            bin,
            cmdline: Arc::from(cmdline),
            account,
            session,
            parent: parent_ref,
            end_ft,
            acts_left: units.saturating_sub(dlls),
            dlls_left: dlls as u16,
            dll_pos: 0,
            reported: false,
            suppressed,
            hit: false,
            counts: Counts::default(),
            last_ft: t,
            peer: None,
            children: 0,
        };
        let slot = self.insert(proc);
        let epoch = self.procs[slot as usize].epoch;
        if let Some(ps) = parent_slot
            && let Some(pp) = self.procs.get_mut(ps as usize)
        {
            pp.children += 1;
            if after_sensor {
                pp.counts.childproc += 1;
            }
        }
        if end_ft < i64::MAX {
            self.at(end_ft, Act::End(slot, epoch));
        }
        if after_sensor {
            g.processes += 1;
        }
        if after_sensor && !suppressed {
            self.report_start(t, slot, parent_slot, g);
        }
        if let Some((child, lo, hi)) = auto_children(img) {
            let n = self.rng.range(u64::from(lo), u64::from(hi));
            let mut when = t;
            for _ in 0..n {
                when += self.rng.range(20, 2_500) as i64 * TICKS_PER_MS / 10;
                self.at(when, Act::Child(slot, epoch, child));
            }
        }
        Some(slot)
    }

    fn insert(&mut self, mut proc: Proc) -> u32 {
        let img = proc.img as usize;
        let slot = if let Some(s) = self.free.pop() {
            proc.epoch = self.procs[s as usize].epoch.wrapping_add(1);
            self.procs[s as usize] = proc;
            s
        } else {
            self.procs.push(proc);
            (self.procs.len() - 1) as u32
        };
        self.by_img[img].push(slot);
        slot
    }

    /// procstart of a process created while the sensor runs, preceded by its parent's
    /// childproc.
    fn report_start(&mut self, t: i64, slot: u32, parent: Option<u32>, g: &mut Global) {
        let enc = Encoder { host: &self.host };
        if let Some(ps) = parent {
            let pp = &self.procs[ps as usize];
            if pp.alive && pp.reported {
                let m = enc.childproc(pp, &self.procs[slot as usize], t, true, None);
                self.event(EvKind::Childproc, t, m);
            }
        }
        let ts = t + self.rng.below(30 * TICKS_PER_MS as u64) as i64;
        let (user, uid) = {
            let p = &self.procs[slot as usize];
            self.account_names(p.account, p.session)
        };
        let m = Encoder { host: &self.host }.procstart(
            &self.procs[slot as usize],
            ts,
            true,
            &user,
            &uid,
        );
        self.event(EvKind::Procstart, ts, m);
        self.after_report(ts, slot, g);
    }

    /// Common to a procstart and a snapshot entry: the process is known to the server now.
    fn after_report(&mut self, t: i64, slot: u32, g: &mut Global) {
        let (img, epoch) = {
            let p = &mut self.procs[slot as usize];
            p.reported = true;
            p.last_ft = t;
            (p.img, p.epoch)
        };
        self.saw_binary(t, BinRef::Image(img), g);
        let first = t + self.rng.range(1, 40) as i64 * TICKS_PER_MS / 4;
        self.at(first, Act::Activity(slot, epoch));
        self.decide_hit(t, slot);
        if self.banned.contains(&img) {
            // Banned after it started: the sensor kills it within seconds.
            let when = t + self.rng.range(500, 5_000) as i64 * TICKS_PER_MS;
            self.at(when, Act::Block(slot, epoch));
        }
    }

    fn sensor_start(&mut self, t: i64, g: &mut Global) {
        if !self.host.fresh_boot {
            // The service was restarted (an upgrade): a new cb.exe under services.exe.
            let old = self.by_img[Img::CbSensor as usize].first().copied();
            let services = self.by_img[Img::Services as usize].first().copied();
            if let Some(s) = old {
                let epoch = self.procs[s as usize].epoch;
                self.end(t - 2 * TICKS_PER_SEC, s, epoch);
            }
            if let Some(s) = services {
                let parent = self.procs[s as usize].as_parent(s);
                self.create(t - TICKS_PER_SEC, Img::CbSensor, Some(parent), None, g);
            }
        }
        self.sensor_on = true;
        let mut live: Vec<u32> = (0..self.procs.len() as u32)
            .filter(|&s| self.procs[s as usize].alive)
            .collect();
        live.sort_by_key(|&s| {
            let p = &self.procs[s as usize];
            (p.create_ft, p.pid)
        });
        // Parents that exited before the sensor started: it reports them with only their pid
        // and the boot time as create time (the captures' `parent_pid -1` records).
        let boot = self.host.boot_ft;
        let sensor = self.host.sensor_id;
        let mut ghosts: Vec<ParentRef> = Vec::new();
        for &s in &live {
            let dead_parent = match self.procs[s as usize].parent.slot {
                Some((ps, pe)) => !self.valid(ps, pe),
                None => false,
            };
            if dead_parent {
                let pid = self.procs[s as usize].parent.pid;
                let ghost = ParentRef {
                    pid,
                    create_ft: boot,
                    legacy: legacy_guid(sensor, pid, boot),
                    info: None,
                    slot: None,
                };
                if !ghosts.iter().any(|g| g.pid == pid) {
                    ghosts.push(ghost.clone());
                }
                self.procs[s as usize].parent = ghost;
            }
        }
        for ghost in &ghosts {
            let m = Encoder { host: &self.host }.ghost_procstart(ghost, boot);
            self.event(EvKind::Procstart, t, m);
        }
        let mut ts = t;
        for s in live {
            ts += self.rng.range(2, 1_500) as i64 * TICKS_PER_MS / 100;
            let (user, uid) = {
                let p = &self.procs[s as usize];
                self.account_names(p.account, p.session)
            };
            let m = Encoder { host: &self.host }.procstart(
                &self.procs[s as usize],
                ts,
                false,
                &user,
                &uid,
            );
            self.event(EvKind::Procstart, ts, m);
            g.processes += 1;
            self.after_report(ts, s, g);
        }
        if self.spawn_left > 0 {
            let gap = self.spawn_gap(t);
            self.at(t + gap, Act::Spawn);
        }
    }

    fn spawn_gap(&mut self, t: i64) -> i64 {
        let horizon = (self.p.end_ft - t).max(TICKS_PER_SEC) as f64;
        let mean = horizon / f64::from(self.spawn_left.max(1));
        (self.rng.exp(mean) as i64).max(TICKS_PER_MS)
    }

    /// Something running starts a program, following the catalog's spawn rules.
    fn spawn(&mut self, t: i64, g: &mut Global) {
        if self.spawn_left == 0 {
            return;
        }
        self.spawn_left -= 1;
        let mut chosen = None;
        for _ in 0..8 {
            let Some(i) = self.rng.weighted(self.rules.iter().map(|r| r.1)) else {
                break;
            };
            let rule = &SPAWNS[self.rules[i].0];
            let live = &self.by_img[rule.parent as usize];
            if live.is_empty() {
                continue;
            }
            let slot = live[self.rng.below(live.len() as u64) as usize];
            if self.procs[slot as usize].reported {
                chosen = Some((slot, rule.child));
                break;
            }
        }
        let chosen = chosen.or_else(|| {
            self.by_img[Img::Services as usize]
                .first()
                .map(|&s| (s, Img::Svchost))
        });
        if let Some((parent, child)) = chosen {
            if self.banned.contains(&child) && self.rng.chance(0.6) {
                self.block_create(t, parent, child);
            } else {
                let parent = self.procs[parent as usize].as_parent(parent);
                self.create(t, child, Some(parent), None, g);
            }
        }
        if self.spawn_left > 0 {
            let gap = self.spawn_gap(t);
            self.at(t + gap, Act::Spawn);
        }
    }

    /// The sensor refused to start a banned program: reported by the would-be parent.
    fn block_create(&mut self, t: i64, parent: u32, child: Img) {
        let bin = self.bins.get(&self.host, BinRef::Image(child));
        let tpl = self.rng.pick(child.get().cmd).copied().unwrap_or("");
        let cmd = {
            let ctx = Ctx {
                user: &self.host.user.folder,
                user_orig: &self.host.user.folder_orig,
                sid: &self.host.user.sid_lower,
                exe: child.get().exe,
            };
            filled(tpl, &ctx, &mut self.rng)
        };
        let (user, uid) = self.account_names(Account::User, 1);
        let m = Encoder { host: &self.host }.blocked(
            &self.procs[parent as usize],
            t,
            &bin,
            &cmd,
            None,
            Some((&uid, &user)),
        );
        self.event(EvKind::Blocked, t, m);
    }

    /// A banned program found running: the sensor terminates it and says so.
    fn block_running(&mut self, t: i64, slot: u32, epoch: u32) {
        if !self.valid(slot, epoch) {
            return;
        }
        let p = &self.procs[slot as usize];
        let m = Encoder { host: &self.host }.blocked(
            p,
            t,
            &p.bin,
            &p.cmdline,
            Some((p.pid, p.create_ft)),
            None,
        );
        self.event(EvKind::Blocked, t, m);
        self.end(t + TICKS_PER_MS, slot, epoch);
    }

    /// A process exits: its procend, its parent's childproc end, then the slot is freed.
    pub(crate) fn end(&mut self, t: i64, slot: u32, epoch: u32) {
        if !self.valid(slot, epoch) {
            return;
        }
        if self.sensor_on && t >= self.host.sensor_start_ft {
            let p = &self.procs[slot as usize];
            if p.reported {
                let m = Encoder { host: &self.host }.procend(p, t);
                self.event(EvKind::Procend, t, m);
            }
            let p = &self.procs[slot as usize];
            if let Some((ps, pe)) = p.parent.slot
                && self.valid(ps, pe)
                && self.procs[ps as usize].reported
                && (p.reported || p.suppressed)
            {
                let ts = t + self.rng.below(20 * TICKS_PER_MS as u64) as i64;
                let user = p
                    .suppressed
                    .then(|| self.account_names(p.account, p.session).0);
                let m = Encoder { host: &self.host }.childproc(
                    &self.procs[ps as usize],
                    p,
                    ts,
                    false,
                    user.as_deref(),
                );
                self.event(EvKind::Childproc, ts, m);
            }
        }
        let p = &mut self.procs[slot as usize];
        p.alive = false;
        let (img, pid, holds) = (p.img as usize, p.pid, p.holds);
        if let Some(i) = self.by_img[img].iter().position(|&s| s == slot) {
            self.by_img[img].swap_remove(i);
        }
        self.pids.release(pid);
        if holds == 0 {
            self.free.push(slot);
        }
    }

    // ---- binaries ------------------------------------------------------------------------

    /// First sight of a binary on this host: the sensor sends module info once it has hashed
    /// it, and the server announces binaries new to the host, its group and the whole server.
    pub(crate) fn saw_binary(&mut self, t: i64, r: BinRef, g: &mut Global) {
        let bin = self.bins.get(&self.host, r);
        if !self.seen.insert(bin.md5) {
            return;
        }
        let s = TICKS_PER_SEC;
        let dt = self.rng.range(1, 20) as i64 * s;
        self.at(t + dt, Act::Module(r));
        let dt = self.rng.range(20, 90) as i64 * s;
        self.at(t + dt, Act::Note(Note::HostObserved, r));
        if g.bins.insert(bin.md5) {
            let dt = self.rng.range(15, 60) as i64 * s;
            self.at(t + dt, Act::Note(Note::Observed, r));
            let dt = self.rng.range(60, 300) as i64 * s;
            self.at(t + dt, Act::Note(Note::StoreAdded, r));
            if self.rng.chance(0.1) {
                let dt = self.rng.range(300, 900) as i64 * s;
                self.at(t + dt, Act::Note(Note::StorageHit, r));
            }
        }
        if g.group_bins.insert((self.host.group, bin.md5)) {
            let dt = self.rng.range(20, 60) as i64 * s;
            self.at(t + dt, Act::Note(Note::GroupObserved, r));
        }
    }

    fn module(&mut self, t: i64, r: BinRef) {
        let bin = self.bins.get(&self.host, r);
        let ms = unix_ms_from_filetime(t);
        // Module info is stamped to the 10 ms, as in the captures.
        let ts = t - t % (10 * TICKS_PER_MS);
        let info = super::binary::module_info(&self.host, r, &bin, ms);
        let m = Encoder { host: &self.host }.module(ts, info);
        self.event(EvKind::Module, ts, m);
    }

    fn note(&mut self, t: i64, kind: Note, r: BinRef) {
        let bin = self.bins.get(&self.host, r);
        let ms = unix_ms_from_filetime(t);
        let meta = super::binary::meta(&self.host, r, &bin, ms);
        let doc = notify::BinDoc {
            host: &self.host,
            md5: bin.md5,
            path: &bin.path,
            meta: &meta,
            first_seen_ms: ms - 60_000,
        };
        let body = match kind {
            Note::HostObserved => notify::binaryinfo_host_observed(&doc, ms),
            Note::Observed => notify::binaryinfo_observed(&doc, ms),
            Note::GroupObserved => notify::binaryinfo_group_observed(&doc, ms),
            Note::StoreAdded => notify::binarystore_file_added(&doc, ms),
            Note::StorageHit => notify::watchlist_storage_hit_binary(&doc, &self.p.server, ms),
        };
        self.json(t, body, None);
    }

    // ---- hits ----------------------------------------------------------------------------

    fn decide_hit(&mut self, t: i64, slot: u32) {
        if !self.rng.chance(self.p.hit_rate) {
            return;
        }
        let kind = match self.rng.below(100) {
            0..=24 => HitKind::Watchlist,
            25..=44 => HitKind::WatchlistWithAlert,
            45..=74 => HitKind::FeedIngress,
            75..=87 => HitKind::WatchlistStorage,
            _ => HitKind::FeedQuery,
        };
        let (lo, hi) = match kind {
            HitKind::FeedIngress => (2, 30),
            HitKind::Watchlist | HitKind::WatchlistWithAlert => (60, 600),
            HitKind::FeedQuery => (120, 900),
            HitKind::WatchlistStorage => (300, 1800),
        };
        let when = (t + self.rng.range(lo, hi) as i64 * TICKS_PER_SEC).min(self.p.end_ft - 1);
        if when <= t {
            return;
        }
        let p = &mut self.procs[slot as usize];
        p.hit = true;
        p.holds += 1;
        let epoch = p.epoch;
        self.at(when, Act::Hit(slot, epoch, kind));
    }

    fn hit(&mut self, t: i64, slot: u32, epoch: u32, kind: HitKind, g: &mut Global) {
        let Some(p) = self.procs.get(slot as usize) else {
            return;
        };
        if p.epoch != epoch {
            return;
        }
        // The server hits on what it has ingested: everything the sensor sent so far.
        if self.host.bundles && !self.pending.is_empty() {
            self.flush(t);
        }
        let ms = unix_ms_from_filetime(t);
        let p = &self.procs[slot as usize];
        let sensor = self.host.sensor_id;
        let (username, _) = self.account_names(p.account, p.session);
        let parent_name = p
            .parent
            .info
            .as_ref()
            .map(|b| b.path.rsplit('\\').next().unwrap_or("").to_string())
            .unwrap_or_default();
        let guid = p.guid(sensor);
        let doc = notify::ProcDoc {
            host: &self.host,
            guid: guid.clone(),
            pid: p.pid,
            path: &p.bin.path,
            name: p.img.get().exe,
            cmdline: &p.cmdline,
            username: &username,
            md5: p.bin.md5,
            profile: p.img.get().profile,
            parent_guid: process_guid(sensor, p.parent.pid, p.parent.create_ft),
            parent_pid: p.parent.pid,
            parent_name,
            parent_md5: p.parent.info.as_ref().map(|b| b.md5),
            parent_legacy: p.parent.legacy,
            parent_start_ms: unix_ms_from_filetime(p.parent.create_ft),
            counts: p.counts,
            start_ms: unix_ms_from_filetime(p.create_ft),
            last_ms: unix_ms_from_filetime(p.last_ft),
        };
        let server = &self.p.server;
        // A feed matches an indicator the process actually has: a peer it talked to, or a
        // hash no Windows file has; otherwise the hit comes from a watchlist search.
        let kind = match kind {
            HitKind::FeedIngress
                if p.peer.is_none() && p.img.get().vendor == super::catalog::Vendor::Windows =>
            {
                HitKind::Watchlist
            }
            k => k,
        };
        let mut notes = Vec::with_capacity(2);
        match kind {
            HitKind::Watchlist => notes.push(notify::watchlist_hit(&doc, server, ms)),
            HitKind::WatchlistWithAlert => {
                notes.push(notify::watchlist_hit(&doc, server, ms));
                g.alerts += 1;
                let mut r = Rng::derive(self.p.seed ^ 0xA1E7, g.alerts);
                let mut id = String::with_capacity(36);
                super::text::push_guid(&mut id, &mut r, false);
                notes.push(notify::alert_hit(&doc, server, ms + 1_500, id));
            }
            HitKind::FeedIngress => {
                g.reports += 1;
                let net = p
                    .peer
                    .as_ref()
                    .map(|n| (n.name, n.remote, n.port, n.local_port, n.udp));
                notes.push(notify::feed_ingress_hit(&doc, server, ms, net, g.reports));
            }
            HitKind::WatchlistStorage => {
                notes.push(notify::watchlist_storage_hit(&doc, server, ms))
            }
            HitKind::FeedQuery => notes.push(notify::feed_query_hit(&doc, server, ms)),
        }
        let mut guid = Some(guid);
        for (i, note) in notes.into_iter().enumerate() {
            let ft = t + i as i64 * 15 * TICKS_PER_SEC / 10;
            self.json(ft, note, guid.take());
        }
        let p = &mut self.procs[slot as usize];
        p.holds = p.holds.saturating_sub(1);
        if !p.alive && p.holds == 0 {
            self.free.push(slot);
        }
    }
}
