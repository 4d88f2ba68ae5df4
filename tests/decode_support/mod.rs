//! Shared helpers for the decode integration tests: locating the captured fixtures.

use std::path::{Path, PathBuf};

/// `$CBTRAIL_FIXTURES/cb-event-forwarder`, else `<crate>/../shared/fixtures/cb-event-forwarder`.
/// Missing fixtures fail the test under `CI=true` and skip it (loudly) otherwise.
pub fn forwarder_fixtures() -> Option<PathBuf> {
    let base = std::env::var_os("CBTRAIL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let dir = base.join("cb-event-forwarder");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("fixtures missing at {} (CI=true)", dir.display());
    }
    eprintln!(
        "SKIPPED: fixtures not found at {} (set CBTRAIL_FIXTURES)",
        dir.display()
    );
    None
}
