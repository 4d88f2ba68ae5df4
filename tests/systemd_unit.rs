//! `systemd/cbtrail.service` lints clean (`systemd-analyze verify`, no warnings about it) and its
//! hardening scores 2.0 or better in `systemd-analyze security --offline=yes`.
//!
//! Both work without systemd running as PID 1. The tool comes with Debian's `systemd` package; when
//! it is missing the test skips, except under `CI=true`, where it must be there.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = include_str!("../systemd/cbtrail.service");
const MAX_EXPOSURE: f64 = 2.0;

fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file())
}

fn tool_or_skip() -> Option<PathBuf> {
    match systemd_analyze() {
        Some(p) => Some(p),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("systemd-analyze not found under CI=true: install Debian's `systemd` package")
        }
        None => {
            eprintln!("SKIPPED: systemd-analyze not found (apt-get install systemd)");
            None
        }
    }
}

/// The unit as shipped, but starting the binary this test run built (verify checks that ExecStart
/// exists and is executable), written to a temporary directory under its real name.
fn unit_under_test(dir: &Path) -> PathBuf {
    assert!(
        UNIT.contains("ExecStart=/usr/bin/cbtrail run --config /etc/cbtrail/cbtrail.toml\n"),
        "ExecStart changed; update this test and the RPM"
    );
    let unit = UNIT.replace(
        "ExecStart=/usr/bin/cbtrail ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_cbtrail")),
    );
    let path = dir.join("cbtrail.service");
    std::fs::write(&path, unit).unwrap();
    path
}

/// `Key=value` settings of the `[Service]` section (the last value wins, as in systemd, except for
/// list settings, which we only test for presence).
fn service_settings() -> Vec<(String, String)> {
    let mut section = "";
    let mut out = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.is_empty()
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

#[test]
fn unit_has_the_required_settings() {
    let settings = service_settings();
    let get = |key: &str| -> Option<&str> {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    for (key, value) in [
        ("Type", "notify"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("StateDirectory", "cbtrail"),
        ("User", "cbtrail"),
        (
            "ExecStart",
            "/usr/bin/cbtrail run --config /etc/cbtrail/cbtrail.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("LoadCredential", "cb.conf:/etc/cb/cb.conf"),
    ] {
        assert_eq!(get(key), Some(value), "{key}");
    }
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "SystemCallFilter" && v == "@system-service")
    );
}

#[test]
fn verify_reports_nothing() {
    let Some(tool) = tool_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let out = Command::new(&tool)
        .arg("verify")
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "verify failed:\n{text}");
    // verify exits 0 on ignored settings ("Unknown key", "Unable to parse"); any line about our
    // unit is a defect.
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("cbtrail")).collect();
    assert!(ours.is_empty(), "verify warnings:\n{}", ours.join("\n"));
}

#[test]
fn security_exposure_is_at_most_two() {
    let Some(tool) = tool_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let out = Command::new(&tool)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    let parse_warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("cbtrail")).collect();
    assert!(
        parse_warnings.is_empty(),
        "settings systemd ignored:\n{}",
        parse_warnings.join("\n")
    );
    // "→ Overall exposure level for cbtrail.service: 1.1 OK 🙂"
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for cbtrail.service:"))
        .unwrap_or_else(|| panic!("no exposure line:\n{stdout}\n{stderr}"));
    let score: f64 = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse exposure from {line:?}"));
    println!("exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{stdout}"
    );
}
