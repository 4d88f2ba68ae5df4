//! One endpoint: sensor id, Windows host name and release, sensor generation, the interactive
//! user with its SID, addresses, and when it booted and its sensor started.

use super::catalog::Os;
use super::clock::{TICKS_PER_MS, TICKS_PER_SEC, filetime_from_unix_ms};
use super::rng::Rng;

/// Which sensor build a host runs; decides optional fields exactly as the captures show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SensorGen {
    /// 5.1 (the 2015 single-message captures): no `is_target`, no `bFilteringKnownDlls`.
    V51,
    /// 5.2 (the 2016/2017 bundles): `is_target`, `bFilteringKnownDlls`, sparse optional flags.
    V52,
    /// Current sensors: SHA-256 everywhere, `networkv2` with JA3, AMSI script events.
    Modern,
}

/// The interactive user of a host.
#[derive(Debug, Clone)]
pub(crate) struct User {
    /// `CORP\jsmith` or `WIN-OTEMNUTBS23\Administrator`, as the sensor reports `username`.
    pub display: String,
    /// Profile folder, lower case and as created.
    pub folder: String,
    pub folder_orig: String,
    /// `S-1-5-21-…-1104`.
    pub sid: String,
    pub sid_lower: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub sensor_id: i32,
    pub name: String,
    pub os: Os,
    pub sensor: SensorGen,
    /// Sends zip bundles on `api.rawsensordata` (else single messages on `api.events`).
    pub bundles: bool,
    pub group: &'static str,
    pub user: User,
    /// Interface address, dotted-quad octets.
    pub ip: [u8; 4],
    /// Address the server sees (NAT for remote sites).
    pub comms_ip: [u8; 4],
    /// Power-on, FILETIME: the create time of the idle process.
    pub boot_ft: i64,
    /// When the sensor service starts reporting, FILETIME.
    pub sensor_start_ft: i64,
    /// Whether the host rebooted at the start of the window (else it was up for days and only the
    /// sensor restarted).
    pub fresh_boot: bool,
    /// EMET is installed (Windows 7 only).
    pub emet: bool,
}

const FIRST: &[&str] = &[
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "carlos",
    "karen",
    "wei",
    "priya",
    "ahmed",
    "olga",
    "kenji",
    "fatima",
    "lucas",
    "emma",
];
const LAST: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "wilson",
    "anderson",
    "taylor",
    "thomas",
    "moore",
    "jackson",
    "martin",
    "lee",
    "nguyen",
    "patel",
    "kim",
    "chen",
    "novak",
    "schmidt",
    "rossi",
    "tanaka",
];
const SITES: &[&str] = &["NYC", "LON", "SFO", "CHI", "BER", "SIN", "TOR", "AUS"];
const DEPTS: &[&str] = &["FIN", "HR", "ENG", "SALES", "MKT", "OPS", "LEGAL", "IT"];
const SERVER_ROLES: &[&str] = &["APP", "SQL", "WEB", "FS", "PRINT", "DC", "RDS", "EXCH"];
const ALNUM: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The domain's SID: one per seed, shared by every domain-joined host.
fn domain_sid(seed: u64) -> String {
    let mut r = Rng::derive(seed, 0xD0_4A1E);
    format!(
        "S-1-5-21-{}-{}-{}",
        r.range(1_000_000_000, 4_294_967_295),
        r.range(1_000_000_000, 4_294_967_295),
        r.range(100_000_000, 4_294_967_295)
    )
}

impl Host {
    /// Host number `index` of the estate generated from `seed`. `window_start_ms` and
    /// `window_secs` place the boot; `bundles` is the delivery decided by the mode.
    pub(crate) fn new(
        seed: u64,
        index: u32,
        window_start_ms: i64,
        window_secs: u64,
        modern_fraction: f64,
        bundles: bool,
    ) -> Host {
        let mut r = Rng::derive(seed, 0x4057_0000_0000 + u64::from(index));
        let os = match r.below(100) {
            0..=19 => Os::Win7,
            20..=74 => Os::Win10,
            _ => Os::Server2016,
        };
        let sensor = if r.chance(modern_fraction) {
            SensorGen::Modern
        } else if r.chance(0.5) {
            SensorGen::V51
        } else {
            SensorGen::V52
        };
        let name = host_name(&mut r, os, index);
        let domain_joined = r.chance(0.85);
        let first = r.pick(FIRST).copied().unwrap_or("admin");
        let last = r.pick(LAST).copied().unwrap_or("user");
        let user = if domain_joined {
            let login = format!("{}{}", &first[..1], last);
            let orig = format!("{}{}", first[..1].to_ascii_uppercase(), capitalize(last));
            let sid = format!("{}-{}", domain_sid(seed), 1100 + index);
            User {
                display: format!("CORP\\{login}"),
                folder: login,
                folder_orig: orig,
                sid_lower: sid.to_ascii_lowercase(),
                sid,
            }
        } else {
            let machine_sid = format!(
                "S-1-5-21-{}-{}-{}",
                r.range(1_000_000_000, 4_294_967_295),
                r.range(1_000_000_000, 4_294_967_295),
                r.range(100_000_000, 4_294_967_295)
            );
            let (login, rid) = if r.chance(0.5) {
                ("Administrator".to_string(), 500)
            } else {
                (capitalize(first), 1001)
            };
            // Local accounts show the host name as the sensor read it, sometimes lower case.
            let host_part = if r.chance(0.3) {
                name.to_ascii_lowercase()
            } else {
                name.clone()
            };
            let sid = format!("{machine_sid}-{rid}");
            User {
                display: format!("{host_part}\\{login}"),
                folder: login.to_ascii_lowercase(),
                folder_orig: login,
                sid_lower: sid.to_ascii_lowercase(),
                sid,
            }
        };
        let i = index;
        let ip = [
            10,
            (10 + i / 65_024 % 200) as u8,
            (i / 254 % 256) as u8,
            (i % 254 + 1) as u8,
        ];
        let comms_ip = if r.chance(0.2) {
            [54, 175, (150 + r.below(50)) as u8, (1 + r.below(250)) as u8]
        } else {
            ip
        };
        let group = if os.is_server() {
            "Servers"
        } else {
            *r.pick(&["Default Group", "Workstations", "Finance", "Engineering"])
                .unwrap_or(&"Default Group")
        };
        let start_ft = filetime_from_unix_ms(window_start_ms);
        // Spread arrivals over the first tenth of the window (at most 15 minutes).
        let spread_ticks = (window_secs.min(9_000) as i64 * TICKS_PER_SEC / 10).max(TICKS_PER_SEC);
        let fresh_boot = !os.is_server() && r.chance(0.6);
        let (boot_ft, sensor_start_ft) = if fresh_boot {
            let boot = start_ft + r.below(spread_ticks as u64) as i64;
            // The sensor service starts with the other auto-start services (catalog BOOT row of
            // cb.exe), and needs a moment to open its driver channel.
            (
                boot,
                boot + 11_800 * TICKS_PER_MS + r.range(200, 900) as i64 * TICKS_PER_MS,
            )
        } else {
            let days_up = r.range(1, 20) as i64;
            let boot = start_ft
                - days_up * 86_400 * TICKS_PER_SEC
                - r.below(86_400) as i64 * TICKS_PER_SEC;
            (boot, start_ft + r.below(spread_ticks as u64) as i64)
        };
        // Windows clocks tick in 15.6 ms steps on older releases; keep sub-ms noise anyway.
        let boot_ft = boot_ft + r.below(10_000) as i64;
        Host {
            sensor_id: (index as i32).wrapping_add(1),
            name,
            os,
            sensor,
            bundles,
            group,
            user,
            ip,
            comms_ip,
            boot_ft,
            sensor_start_ft,
            fresh_boot,
            emet: os == Os::Win7 && r.chance(0.3),
        }
    }

    /// `hostId` header of raw bundles (0 on a single-node server, as captured).
    pub(crate) fn host_id(&self) -> i64 {
        0
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn host_name(r: &mut Rng, os: Os, index: u32) -> String {
    let mut rand_chars = |n: usize| -> String {
        (0..n)
            .map(|_| ALNUM[r.below(36) as usize] as char)
            .collect()
    };
    if os.is_server() {
        let role = SERVER_ROLES[(index as usize / 7) % SERVER_ROLES.len()];
        return format!("SRV-{role}-{:03}", index + 1);
    }
    match index % 4 {
        0 => format!("DESKTOP-{}", rand_chars(7)),
        1 => format!(
            "WKS-{}-{:04}",
            SITES[(index as usize / 4) % SITES.len()],
            index / 4 % 10_000
        ),
        2 => format!("WIN-{}", rand_chars(11)),
        _ => format!(
            "{}-LT-{:04}",
            DEPTS[(index as usize / 4) % DEPTS.len()],
            index / 4 % 10_000
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_deterministic_and_plausible() {
        let a = Host::new(7, 3, 1_709_539_200_000, 3600, 0.5, true);
        let b = Host::new(7, 3, 1_709_539_200_000, 3600, 0.5, true);
        assert_eq!(a.name, b.name);
        assert_eq!(a.user.sid, b.user.sid);
        assert_eq!(a.sensor_id, 4);
        assert!(a.user.sid.starts_with("S-1-5-21-"));
        assert!(a.sensor_start_ft > a.boot_ft);
        let start_ft = filetime_from_unix_ms(1_709_539_200_000);
        assert!(a.sensor_start_ft >= start_ft);
        assert!(a.sensor_start_ft < start_ft + 3600 * TICKS_PER_SEC);
        let names: std::collections::HashSet<String> = (0..500)
            .map(|i| Host::new(1, i, 1_709_539_200_000, 3600, 0.5, false).name)
            .collect();
        assert_eq!(names.len(), 500, "host names are unique");
    }
}
