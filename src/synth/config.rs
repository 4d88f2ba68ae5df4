//! [`SynthConfig`]: what traffic to generate, with defaults and `key=value` parsing for the CLI.

use super::clock;
use std::fmt;
use std::str::FromStr;

/// How raw endpoint events are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthMode {
    /// One `CbEventMsg` (with `env`) per message on `api.events`, routing key `ingress.event.*`
    /// (the server's `DatastoreBroadcastEventTypes` mechanism).
    Singles,
    /// Zip bundles of length-prefixed records on `api.rawsensordata`
    /// (`EnableRawSensorDataBroadcast`).
    Bundles,
    /// Both: even-numbered hosts send bundles, odd-numbered hosts singles.
    Mixed,
}

impl SynthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SynthMode::Singles => "singles",
            SynthMode::Bundles => "bundles",
            SynthMode::Mixed => "mixed",
        }
    }
}

impl FromStr for SynthMode {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<SynthMode, SynthError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "singles" | "single" => Ok(SynthMode::Singles),
            "bundles" | "bundle" | "zip" => Ok(SynthMode::Bundles),
            "mixed" | "mix" => Ok(SynthMode::Mixed),
            _ => Err(SynthError::BadValue {
                key: "mode".into(),
                value: s.into(),
                expected: "singles, bundles or mixed",
            }),
        }
    }
}

/// A `key=value` text the generator could not use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SynthError {
    #[error(
        "unknown synthetic traffic setting {0:?} (known: seed, hosts, processes, events, bundle, mode, hit_rate, start, duration, modern, flush)"
    )]
    UnknownKey(String),
    #[error("synthetic traffic setting {0:?} has no value (write key=value)")]
    MissingValue(String),
    #[error("synthetic traffic setting {key}={value:?}: expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
}

/// What to generate. Every field has a sensible default ([`SynthConfig::default`]); the CLI text
/// form is `key=value` pairs separated by commas or whitespace, e.g.
/// `hosts=20,processes=200,mode=bundles`.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Seed of every random choice: the same config gives byte-identical traffic.
    pub seed: u64,
    /// Number of endpoints (sensors).
    pub hosts: u32,
    /// Processes each host runs over the window (boot tree included).
    pub processes_per_host: u32,
    /// Mean number of raw events per process (exponentially distributed around it).
    pub events_per_process: u32,
    /// Most records in one zip bundle (a bundle is also sent when `flush_secs` have passed).
    pub bundle_records: u32,
    pub mode: SynthMode,
    /// Fraction of processes that get a watchlist or feed hit.
    pub hit_rate: f64,
    /// Start of the simulated window, Unix milliseconds (UTC).
    pub start_ms: i64,
    /// Length of the simulated window, seconds.
    pub duration_secs: u64,
    /// Fraction of hosts running a current sensor (sha256 hashes, `networkv2`, script events);
    /// the others look exactly like the captured 5.x sensors.
    pub modern_fraction: f64,
    /// Longest time (simulated seconds) a sensor holds records before sending a bundle.
    pub flush_secs: u32,
}

impl Default for SynthConfig {
    fn default() -> SynthConfig {
        SynthConfig {
            seed: 1,
            hosts: 10,
            processes_per_host: 100,
            events_per_process: 40,
            bundle_records: 100,
            mode: SynthMode::Mixed,
            hit_rate: 0.02,
            // 2024-03-04T08:00:00Z: a Monday morning.
            start_ms: 1_709_539_200_000,
            duration_secs: 3600,
            modern_fraction: 0.5,
            flush_secs: 30,
        }
    }
}

impl SynthConfig {
    /// Defaults overridden by `text` (`key=value` pairs separated by commas or whitespace).
    pub fn parse(text: &str) -> Result<SynthConfig, SynthError> {
        let mut cfg = SynthConfig::default();
        for item in text
            .split([',', ' ', '\t', '\n'])
            .filter(|s| !s.trim().is_empty())
        {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| SynthError::MissingValue(item.trim().to_string()))?;
            cfg.set(key.trim(), value.trim())?;
        }
        Ok(cfg)
    }

    /// Set one setting by its text name. Aliases: `processes_per_host`, `events_per_process`,
    /// `bundle_records`, `hits`, `modern_fraction`, `flush_secs`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SynthError> {
        fn bad(key: &str, value: &str, expected: &'static str) -> SynthError {
            SynthError::BadValue {
                key: key.into(),
                value: value.into(),
                expected,
            }
        }
        fn count(key: &str, value: &str, max: u32) -> Result<u32, SynthError> {
            let v = parse_count(value).ok_or_else(|| bad(key, value, "a positive integer"))?;
            if v == 0 || v > u64::from(max) {
                return Err(bad(key, value, "a positive integer within range"));
            }
            Ok(v as u32)
        }
        fn fraction(key: &str, value: &str) -> Result<f64, SynthError> {
            let v = value.strip_suffix('%').map_or_else(
                || value.parse::<f64>().ok(),
                |p| p.parse::<f64>().ok().map(|x| x / 100.0),
            );
            match v {
                Some(x) if (0.0..=1.0).contains(&x) => Ok(x),
                _ => Err(bad(
                    key,
                    value,
                    "a fraction between 0 and 1 (or a percentage)",
                )),
            }
        }
        match key.to_ascii_lowercase().as_str() {
            "seed" => {
                self.seed = value
                    .parse()
                    .map_err(|_| bad(key, value, "an unsigned integer"))?
            }
            "hosts" => self.hosts = count(key, value, 1_000_000)?,
            "processes" | "processes_per_host" => {
                self.processes_per_host = count(key, value, 10_000_000)?
            }
            "events" | "events_per_process" => {
                self.events_per_process = count(key, value, 1_000_000)?
            }
            "bundle" | "bundle_records" => self.bundle_records = count(key, value, 1_000_000)?,
            "mode" => self.mode = value.parse()?,
            "hit_rate" | "hits" => self.hit_rate = fraction(key, value)?,
            "modern" | "modern_fraction" => self.modern_fraction = fraction(key, value)?,
            "start" => {
                self.start_ms = clock::parse_start(value).ok_or_else(|| {
                    bad(
                        key,
                        value,
                        "Unix seconds or a UTC time like 2024-03-04T08:00:00Z",
                    )
                })?
            }
            "duration" => {
                self.duration_secs = parse_duration(value)
                    .filter(|&s| s > 0 && s <= 10 * 365 * 86_400)
                    .ok_or_else(|| bad(key, value, "a duration like 3600, 90m, 8h or 2d"))?
            }
            "flush" | "flush_secs" => {
                self.flush_secs = parse_duration(value)
                    .filter(|&s| s > 0 && s <= 86_400)
                    .ok_or_else(|| bad(key, value, "seconds between 1 and 86400"))?
                    as u32
            }
            _ => return Err(SynthError::UnknownKey(key.to_string())),
        }
        Ok(())
    }
}

/// `1000`, `10k`, `2M`, `1_000_000`.
fn parse_count(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1_000),
        'm' | 'M' => (&s[..s.len() - 1], 1_000_000),
        _ => (s.as_str(), 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// `3600`, `45s`, `90m`, `8h`, `2d` → seconds.
fn parse_duration(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        'd' => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl FromStr for SynthConfig {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<SynthConfig, SynthError> {
        SynthConfig::parse(s)
    }
}

/// The canonical text form; `SynthConfig::parse(&cfg.to_string()) == cfg`.
impl fmt::Display for SynthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={},hosts={},processes={},events={},bundle={},mode={},hit_rate={},start={},duration={},modern={},flush={}",
            self.seed,
            self.hosts,
            self.processes_per_host,
            self.events_per_process,
            self.bundle_records,
            self.mode.as_str(),
            self.hit_rate,
            clock::iso_ms(self.start_ms),
            self.duration_secs,
            self.modern_fraction,
            self.flush_secs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_text_over_defaults() {
        let c = SynthConfig::parse("hosts=20,processes=200,mode=bundles").unwrap();
        assert_eq!(c.hosts, 20);
        assert_eq!(c.processes_per_host, 200);
        assert_eq!(c.mode, SynthMode::Bundles);
        assert_eq!(
            c.events_per_process,
            SynthConfig::default().events_per_process
        );
        let c =
            SynthConfig::parse(" seed=9 events=1k hits=5% duration=2h start=2020-01-01T00:00:00Z ")
                .unwrap();
        assert_eq!(
            (c.seed, c.events_per_process, c.duration_secs),
            (9, 1000, 7200)
        );
        assert!((c.hit_rate - 0.05).abs() < 1e-12);
        assert_eq!(c.start_ms, 1_577_836_800_000);
        assert_eq!(SynthConfig::parse("").unwrap(), SynthConfig::default());
    }

    #[test]
    fn display_round_trips() {
        let c = SynthConfig::parse("seed=3,hosts=7,mode=singles,hit_rate=0.25,modern=0,flush=5")
            .unwrap();
        assert_eq!(SynthConfig::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(
            SynthConfig::parse("hostz=3"),
            Err(SynthError::UnknownKey(_))
        ));
        assert!(matches!(
            SynthConfig::parse("hosts"),
            Err(SynthError::MissingValue(_))
        ));
        for bad in [
            "hosts=0",
            "hosts=-1",
            "hosts=many",
            "hit_rate=1.5",
            "mode=carrier-pigeon",
            "start=tomorrow",
            "duration=0",
            "events=99999999999999999999",
        ] {
            assert!(SynthConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
