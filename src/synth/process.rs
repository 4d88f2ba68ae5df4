//! A simulated process: identity exactly as the sensor and server derive it (GUID from sensor id,
//! pid and FILETIME create time), what it runs, who its parent is, and what it has done so far.

use super::catalog::{Account, Img};
use std::sync::Arc;
use xxhash_rust::xxh3::{xxh3_64_with_seed, xxh3_128_with_seed};

/// The server's process GUID: `%08x-%04x-%04x-%04x-%04x%08x` of sensor id, pid halves and the
/// raw FILETIME create time (docs/cb-bus.md §4, `MakeGUID`).
pub fn process_guid(sensor_id: i32, pid: i32, create_ft: i64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:04x}{:08x}",
        sensor_id as u32,
        (pid >> 16) as u16,
        (pid & 0xffff) as u16,
        (create_ft >> 48) as u16,
        ((create_ft >> 32) & 0xffff) as u16,
        (create_ft & 0xffff_ffff) as u32
    )
}

/// The sensor's deprecated 64-bit process id (`header.process_guid`, `parent_guid`,
/// `child_guid`): opaque, stable for a process, unrelated to the text GUID.
pub(crate) fn legacy_guid(sensor_id: i32, pid: i32, create_ft: i64) -> i64 {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&sensor_id.to_le_bytes());
    b[4..8].copy_from_slice(&pid.to_le_bytes());
    b[8..].copy_from_slice(&create_ft.to_le_bytes());
    xxh3_64_with_seed(&b, 0x6C65_6761_6379) as i64
}

/// `strings[].guid` / `filepath_string_guid` of a path: one id per distinct path, as in the
/// captures where a path always carries the same id.
pub(crate) fn string_guid(path: &str) -> i64 {
    xxh3_64_with_seed(path.as_bytes(), 0x5354_5249_4E47) as i64
}

/// MD5 and SHA-256 of a binary. `scope` separates builds (the same Windows path is a different
/// file on each release); third-party binaries use scope 0 and hash the same everywhere.
pub(crate) fn binary_hashes(scope: u64, path: &str) -> ([u8; 16], [u8; 32]) {
    let md5 = xxh3_128_with_seed(
        path.as_bytes(),
        scope.wrapping_mul(0x9E37_79B9) ^ 0x004D_4435,
    );
    let s1 = xxh3_128_with_seed(
        path.as_bytes(),
        scope.wrapping_mul(0x85EB_CA6B) ^ 0x0053_4841,
    );
    let s2 = xxh3_128_with_seed(
        path.as_bytes(),
        scope.wrapping_mul(0xC2B2_AE35) ^ 0x0032_3536,
    );
    let mut sha = [0u8; 32];
    sha[..16].copy_from_slice(&s1.to_le_bytes());
    sha[16..].copy_from_slice(&s2.to_le_bytes());
    (md5.to_le_bytes(), sha)
}

/// What is known about a binary image once hashed.
#[derive(Debug, Clone)]
pub(crate) struct Bin {
    pub path: Arc<str>,
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
}

/// The parent as a child knows it. `info` is `None` when the parent exited before the sensor
/// started: the sensor then knows only its pid, and reports the boot time as its create time.
#[derive(Debug, Clone)]
pub(crate) struct ParentRef {
    pub pid: i32,
    pub create_ft: i64,
    pub legacy: i64,
    pub info: Option<Bin>,
    /// Slot of the parent while it lives (for childproc events and the tree of a hit).
    pub slot: Option<(u32, u32)>,
}

/// Per-type counts of what a process did, for hit notifications (`modload_count` …).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub modload: u32,
    pub filemod: u32,
    pub regmod: u32,
    pub netconn: u32,
    pub childproc: u32,
    pub crossproc: u32,
}

/// A network peer a process talked to, kept for feed hits on DNS or IP indicators.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub name: &'static str,
    pub remote: [u8; 4],
    pub port: u16,
    pub local_port: u16,
    pub udp: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Proc {
    /// Incremented when the slot is reused, so stale scheduled work can be recognised.
    pub epoch: u32,
    pub alive: bool,
    /// Scheduled work still referring to this slot after death (pending hits).
    pub holds: u32,
    pub pid: i32,
    pub create_ft: i64,
    pub legacy: i64,
    pub img: Img,
    pub bin: Bin,
    pub cmdline: Arc<str>,
    pub account: Account,
    /// Session of the process (0 for services).
    pub session: u32,
    pub parent: ParentRef,
    /// Planned exit, FILETIME (`i64::MAX`: outlives the window).
    pub end_ft: i64,
    /// Activity units left (each is one to three events).
    pub acts_left: u32,
    /// DLLs left to load in the start-up burst.
    pub dlls_left: u16,
    /// Position in the image's DLL list.
    pub dll_pos: u16,
    /// Reported to the server (procstart or snapshot sent).
    pub reported: bool,
    /// An eventless child: reported only by its parent's childproc end event.
    pub suppressed: bool,
    pub hit: bool,
    pub counts: Counts,
    pub last_ft: i64,
    pub peer: Option<Peer>,
    pub children: u32,
}

impl Proc {
    pub(crate) fn guid(&self, sensor_id: i32) -> String {
        process_guid(sensor_id, self.pid, self.create_ft)
    }

    pub(crate) fn as_parent(&self, slot: u32) -> ParentRef {
        ParentRef {
            pid: self.pid,
            create_ft: self.create_ft,
            legacy: self.legacy,
            info: Some(self.bin.clone()),
            slot: Some((slot, self.epoch)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_matches_the_documented_example() {
        // docs/cb-bus.md §4: sensor 1, pid 1972, create 130921710236713495.
        assert_eq!(
            process_guid(1, 1972, 130_921_710_236_713_495),
            "00000001-0000-07b4-01d1-209a100bc217"
        );
        assert_eq!(
            process_guid(7, 0x10fd4, 0x01d1_209a_a22a_57ee),
            "00000007-0001-0fd4-01d1-209aa22a57ee"
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(string_guid(r"c:\a.dll"), string_guid(r"c:\a.dll"));
        assert_ne!(string_guid(r"c:\a.dll"), string_guid(r"c:\b.dll"));
        assert_ne!(legacy_guid(1, 4, 10), legacy_guid(1, 4, 11));
        let (m1, s1) = binary_hashes(1, "x");
        let (m2, s2) = binary_hashes(2, "x");
        assert_ne!(m1, m2);
        assert_ne!(s1, s2);
    }
}
