//! Golden export of a real process: the captured bus traffic of the reference forwarder replayed
//! through decode and the store writer into a temporary database, then the watchlist hit on
//! `procexp64.exe` (`json/watchlist.hit.process/0.json`) exported by the job the writer queued and
//! the worker ran.
//!
//! Output made from the captures may not be committed, so the golden files of this test are kept
//! as digests (`tests/golden/fixture/*.digest`): any change to the bytes fails it, and the actual
//! output is left under `target/golden-actual/` to look at.

mod common;
mod treedb;

use cbtrail::jobs::{self, JobSettings, Worker};
use cbtrail::store::Writer;
use serde_json::Value;
use std::fs;

const HIT: &str = "00000007-0000-0fd4-01d1-209aa22a57ee";
const PARENT: &str = "00000007-0000-0fc8-01d1-209aa208f788";

/// Identity of the capture set the golden files were made from: file count and a digest of the
/// relative paths and sizes. Kept in `tests/golden/fixture/SOURCE`.
fn capture_set(files: &[cbtrail::capture::CaptureFile], root: &std::path::Path) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for f in files {
        let rel = f.path.strip_prefix(root).unwrap_or(&f.path);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(&(f.body.len() as u64).to_le_bytes());
    }
    format!("files {} digest {:032x}\n", files.len(), h.digest128())
}

#[test]
fn golden_export_of_a_real_watchlist_hit() {
    let Some(captures) = common::forwarder_captures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cbtrail.db");
    let mut writer = Writer::open(&db).unwrap();
    let files =
        cbtrail::capture::walk(std::slice::from_ref(&captures), &Default::default()).unwrap();
    assert!(files.len() > 1000, "{} capture files", files.len());
    // The golden files hold event ids and rows of this exact capture set; another set (the
    // held-back half added, say) gets the structural checks only, and says so.
    let set = capture_set(&files, &captures);
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fixture/SOURCE");
    let same_set = std::env::var_os("CBTRAIL_BLESS").is_some()
        || fs::read_to_string(&source).is_ok_and(|s| s == set);
    if std::env::var_os("CBTRAIL_BLESS").is_some() {
        fs::create_dir_all(source.parent().unwrap()).unwrap();
        fs::write(&source, &set).unwrap();
    }
    for f in &files {
        let records = cbtrail::decode::decode(&f.meta, &f.body);
        writer.write_batch(&records).unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    drop(writer);

    // The writer queued a job per process hit, in the notifications' transactions; the worker
    // exports them once they are due.
    let settings = JobSettings {
        output_dir: dir.path().join("exports"),
        ..JobSettings::default()
    };
    let mut worker = Worker::open(&db, settings.clone()).unwrap();
    worker.recover(now).unwrap();
    let report = worker
        .tick(now + settings.settle.as_millis() as i64 + 1_000)
        .unwrap();
    let all = jobs::list_jobs(worker.connection(), None).unwrap();
    assert!(all.len() >= 10, "{} jobs", all.len());
    assert_eq!(report.exported.len(), all.len(), "{:?}", report);
    assert!(all.iter().all(|j| j.state == "done"));
    let job = all.iter().find(|j| j.process_guid == HIT).unwrap();
    // watchlist.hit.process and watchlist.storage.hit.process name it: one job, two triggers.
    assert_eq!(job.triggers, 2);
    let out = std::path::PathBuf::from(job.output_path.clone().unwrap());
    let manifest: Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let events = manifest["events_total"].as_u64().unwrap();

    let tree: Value =
        serde_json::from_str(&fs::read_to_string(out.join("tree.json")).unwrap()).unwrap();
    // The hit's lineage as the fixtures hold it: procexp.exe started procexp64.exe.
    let hit_node = find(&tree, HIT).expect("the hit is in the tree");
    assert_eq!(hit_node["name"], "procexp64.exe");
    assert_eq!(hit_node["pid"], 4052);
    assert_eq!(hit_node["hit"], true);
    assert!(events >= 100, "{events} events");

    let trigger: Value =
        serde_json::from_str(&fs::read_to_string(out.join("trigger.json")).unwrap()).unwrap();
    assert_eq!(trigger["watchlist_name"], "Non-System Filemods to system32");
    assert!(
        trigger["docs"][0]["unique_id"]
            .as_str()
            .unwrap()
            .starts_with(HIT)
    );
    let level = hit_node["level"].as_u64().unwrap();
    if !same_set {
        eprintln!(
            "SKIPPED golden comparison: the capture set ({}) is not the one the golden files were made from",
            set.trim_end()
        );
        return;
    }
    golden_file(
        &out.join(format!("{level}_{HIT}.csv")),
        "fixture/procexp64.csv",
    );
    golden_file(&out.join("tree.json"), "fixture/tree.json");
    golden_file(&out.join("tree.txt"), "fixture/tree.txt");
    if level > 0 {
        golden_file(
            &out.join(format!("{}_{PARENT}.csv", level - 1)),
            "fixture/procexp.csv",
        );
    }
}

/// The node with `guid`, searched breadth first without recursion.
fn find<'a>(tree: &'a Value, guid: &str) -> Option<&'a Value> {
    let mut queue = std::collections::VecDeque::from([tree]);
    while let Some(n) = queue.pop_front() {
        if n["guid"] == guid {
            return Some(n);
        }
        queue.extend(n["children"].as_array().into_iter().flatten());
    }
    None
}

fn golden_file(path: &std::path::Path, name: &str) {
    treedb::golden_digest(
        name,
        &fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    );
}

/// The same hit end to end: the captures published through the real broker to the daemon, whose
/// export worker writes the job the hit queued. The files equal the golden ones made offline.
#[test]
fn hit_published_through_the_broker_is_exported_by_the_daemon() {
    use common::{Broker, Daemon, wait_until};
    use std::time::Duration;
    let Some(captures) = common::forwarder_captures() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::new("export");
    let db = tmp.path().join("daemon.db");
    let out_dir = tmp.path().join("hits");
    let mut d = Daemon::start(
        &broker,
        tmp.path(),
        &db,
        // Settle briefly; the follow window re-exports once the rest of the events are in.
        &format!(
            "[exports]\noutput_dir = \"{}\"\nsettle = 1\npoll_interval = 0.2\nfollow_window = 120\n",
            out_dir.display()
        ),
    );
    d.wait_consuming();
    common::cbtrail(&[
        "publish",
        "--amqp",
        &broker.url(),
        "--connection-name",
        &common::unique("pub"),
        captures.to_str().unwrap(),
    ]);
    wait_until(
        "every delivery acknowledged",
        Duration::from_secs(120),
        || broker.queue_state(&d.queue) == Some((0, 0, 1)),
    );
    // Every job done, after the last events arrived (a re-export covers late events).
    let stored_at = std::time::Instant::now();
    let job = {
        let mut found = None;
        wait_until("the hit's export", Duration::from_secs(60), || {
            let Ok(conn) = cbtrail::store::open_read_only(&db) else {
                return false;
            };
            let all = jobs::list_jobs(&conn, None).unwrap_or_default();
            let settled = stored_at.elapsed() > Duration::from_secs(3);
            found = all.iter().find(|j| j.process_guid == HIT).cloned();
            settled && !all.is_empty() && all.iter().all(|j| j.state == "done")
        });
        found.expect("a job for the hit process")
    };
    assert!(job.triggers >= 2, "{job:?}");
    let out = std::path::PathBuf::from(job.output_path.clone().unwrap());
    assert!(out.starts_with(&out_dir), "{}", out.display());
    let tree: Value =
        serde_json::from_str(&fs::read_to_string(out.join("tree.json")).unwrap()).unwrap();
    let hit_node = find(&tree, HIT).expect("the hit is in the tree");
    assert_eq!(hit_node["name"], "procexp64.exe");
    assert_eq!(hit_node["hit"], true);
    let trigger: Value =
        serde_json::from_str(&fs::read_to_string(out.join("trigger.json")).unwrap()).unwrap();
    assert!(trigger["docs"].is_array() || trigger["process_id"].is_string());
    let files =
        cbtrail::capture::walk(std::slice::from_ref(&captures), &Default::default()).unwrap();
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fixture/SOURCE");
    if fs::read_to_string(&source).ok() != Some(capture_set(&files, &captures)) {
        eprintln!("SKIPPED golden comparison: another capture set than the golden files'");
        return;
    }
    let level = hit_node["level"].as_u64().unwrap();
    golden_file(
        &out.join(format!("{level}_{HIT}.csv")),
        "fixture/procexp64.csv",
    );
    golden_file(&out.join("tree.json"), "fixture/tree.json");
    golden_file(&out.join("tree.txt"), "fixture/tree.txt");
    let st = d.terminate(Duration::from_secs(15));
    assert!(st.success(), "{}", d.log_text());
}
