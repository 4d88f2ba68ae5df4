//! Retention and db-info on a real database file: what is older than the horizon goes, what is newer
//! or still referred to stays, the file shrinks, and a concurrent writer is never refused.

use cbtrail::store::retention::{
    self, AutoVacuum, MaintenanceError, RetentionOptions, collect_db_info, db_info,
};
use cbtrail::store::schema::{MIGRATIONS, SCHEMA_VERSION};
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;
/// 2026-11-25 00:00:00Z, a fixed "now" so the test does not depend on the clock.
const NOW: i64 = 1_795_564_800_000;
const KEEP_DAYS: u32 = 30;
const HORIZON: i64 = NOW - KEEP_DAYS as i64 * DAY;

/// A database laid out as the store creates it: incremental auto-vacuum (before any table), WAL,
/// schema v1, user_version set.
fn create_db(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    for m in MIGRATIONS {
        conn.execute_batch(m).unwrap();
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Per-row payload like a decoded event's `details` JSON (a few hundred bytes).
fn details(i: i64) -> String {
    format!(
        r#"{{"path":"c:\\windows\\system32\\svchost-{i}.exe","action":"write","n":{i},"pad":"{}"}}"#,
        "x".repeat(300)
    )
}

fn insert_event(conn: &Connection, key: i64, guid: &str, ts: i64, received: i64) {
    conn.prepare_cached(
        "INSERT INTO events (event_key, process_guid, timestamp_ms, event_type, details, received_ms)
         VALUES (?1, ?2, ?3, 'filemod', ?4, ?5)",
    )
    .unwrap()
    .execute(params![
        key.to_le_bytes().to_vec(),
        guid,
        ts,
        details(key),
        received
    ])
    .unwrap();
}

fn insert_process(conn: &Connection, guid: &str, parent: Option<&str>, activity: i64) {
    conn.prepare_cached(
        "INSERT INTO processes (guid, parent_guid, start_ms, first_seen_ms, last_event_ms)
         VALUES (?1, ?2, ?3, ?3, ?3)",
    )
    .unwrap()
    .execute(params![guid, parent, activity])
    .unwrap();
}

fn insert_notification(conn: &Connection, key: i64, kind: &str, guid: &str, received: i64) {
    conn.prepare_cached(
        "INSERT INTO notifications (notification_key, routing_key, type, process_guid, json, received_ms)
         VALUES (?1, ?2, ?2, ?3, ?4, ?5)",
    )
    .unwrap()
    .execute(params![
        key.to_le_bytes().to_vec(),
        kind,
        guid,
        details(key),
        received
    ])
    .unwrap();
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO notification_targets (notification_id, idx, process_guid) VALUES (?1, 0, ?2)",
    )
    .unwrap()
    .execute(params![id, guid])
    .unwrap();
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn has_process(conn: &Connection, guid: &str) -> bool {
    count(
        conn,
        &format!("SELECT COUNT(*) FROM processes WHERE guid = '{guid}'"),
    ) == 1
}

fn fast(days: u32, chunk: usize) -> RetentionOptions {
    RetentionOptions {
        days,
        chunk_rows: chunk,
        pause: Duration::ZERO,
        vacuum_bytes: 256 * 1024,
        ..RetentionOptions::default()
    }
}

#[test]
fn deletes_old_rows_keeps_new_ones_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cbtrail.db");
    let conn = create_db(&path);
    conn.execute_batch("BEGIN").unwrap();
    let mut key = 0;
    // 12,000 old events in 12,000 old processes with no other references: all go.
    for i in 0..12_000 {
        key += 1;
        let ts = HORIZON - DAY - i * 1000;
        let guid = format!("old-{i:06}");
        insert_event(&conn, key, &guid, ts, ts);
        insert_process(&conn, &guid, None, ts);
    }
    // 2,500 old events sharing one timestamp, across chunk boundaries (keyset on (time, id)).
    for _ in 0..2_500 {
        key += 1;
        insert_event(
            &conn,
            key,
            "old-000000",
            HORIZON - 5 * DAY,
            HORIZON - 5 * DAY,
        );
    }
    // 3,000 recent events of one long-lived process started long ago: events and process stay.
    insert_process(&conn, "longlived", None, HORIZON - 90 * DAY);
    for i in 0..3_000 {
        key += 1;
        insert_event(&conn, key, "longlived", NOW - i * 1000, NOW - i * 1000);
    }
    // Old sensor clock (time 0 or years back) but received today: kept a full period after arrival.
    for i in 0..100 {
        key += 1;
        let ts = if i % 2 == 0 { 0 } else { HORIZON - 400 * DAY };
        insert_event(&conn, key, "clockskew", ts, NOW - DAY);
    }
    insert_process(&conn, "clockskew", None, HORIZON - 400 * DAY);
    // Sensor clock a year ahead: goes by reception time alone (old reception: goes; recent: stays).
    for i in 0..60 {
        key += 1;
        let received = if i < 50 { HORIZON - DAY } else { NOW };
        insert_event(&conn, key, "clockskew", NOW + 365 * DAY, received);
    }
    // Exactly at the horizon: not older than it, kept.
    key += 1;
    insert_event(&conn, key, "edge", HORIZON, HORIZON);
    // Dead ancestor chain a <- b <- c (c the leaf), all old, no events: the whole chain goes.
    insert_process(&conn, "chain-a", None, HORIZON - 50 * DAY);
    insert_process(&conn, "chain-b", Some("chain-a"), HORIZON - 50 * DAY);
    insert_process(&conn, "chain-c", Some("chain-b"), HORIZON - 50 * DAY);
    // Old parent of a live child: kept so the child's ancestry keeps its facts.
    insert_process(&conn, "parent-of-live", None, HORIZON - 50 * DAY);
    insert_process(&conn, "live-child", Some("parent-of-live"), NOW - DAY);
    // Old process named by a recent notification: kept.
    insert_process(&conn, "hit-target", None, HORIZON - 50 * DAY);
    // Self-parent and a two-cycle, all old: no endless loop; the self-parent goes, the cycle's
    // members refer to each other and stay.
    insert_process(&conn, "selfish", Some("selfish"), HORIZON - 50 * DAY);
    insert_process(&conn, "cycle-x", Some("cycle-y"), HORIZON - 50 * DAY);
    insert_process(&conn, "cycle-y", Some("cycle-x"), HORIZON - 50 * DAY);
    // Notifications of three kinds, old and new.
    for (i, kind) in [
        "watchlist.hit.process",
        "feed.ingress.hit.process",
        "binaryinfo.observed",
    ]
    .iter()
    .enumerate()
    {
        for j in 0..700 {
            key += 1;
            insert_notification(&conn, key, kind, "old-000001", HORIZON - DAY - j);
        }
        key += 1;
        insert_notification(&conn, key, kind, "hit-target", NOW - i as i64);
    }
    // Quarantine, old and new.
    for j in 0..1_500i64 {
        let received = if j < 1_000 { HORIZON - DAY } else { NOW };
        conn.execute(
            "INSERT INTO quarantine (quarantine_key, exchange, routing_key, headers, reason, error, body, received_ms)
             VALUES (?1, 'api.rawsensordata', '', '{}', 'bad_zip', 'not a zip', ?2, ?3)",
            params![j.to_le_bytes().to_vec(), vec![0u8; 200], received],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();

    let report = retention::run_once_with(&path, &fast(KEEP_DAYS, 1_000), NOW, &|| false).unwrap();
    println!("{report}");

    assert_eq!(report.horizon_ms, Some(HORIZON));
    assert_eq!(report.events_deleted, 14_500 + 50);
    assert_eq!(report.notifications_deleted, 2_100);
    assert_eq!(report.quarantine_deleted, 1_000);
    // 12,000 old-* + chain-a, chain-b, chain-c + selfish.
    assert_eq!(report.processes_deleted, 12_004);
    assert!(!report.interrupted);

    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM events"),
        3_000 + 100 + 10 + 1
    );
    assert_eq!(
        count(
            &conn,
            &format!("SELECT COUNT(*) FROM events WHERE received_ms < {HORIZON}")
        ),
        0
    );
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM event_segments"),
        count(
            &conn,
            "SELECT COUNT(DISTINCT segment_id) FROM event_rows \
             WHERE segment_id IN (SELECT id FROM event_segments)"
        ),
        "a segment goes with its last row, and no row loses its segment"
    );
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM event_rows"),
        3_000 + 100 + 10 + 1
    );
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM notifications"), 3);
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM notification_targets"),
        3,
        "targets of deleted notifications go with them"
    );
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM quarantine"), 500);
    for kept in [
        "longlived",
        "clockskew",
        "parent-of-live",
        "live-child",
        "hit-target",
        "cycle-x",
        "cycle-y",
    ] {
        assert!(has_process(&conn, kept), "{kept} should stay");
    }
    for gone in ["chain-a", "chain-b", "chain-c", "selfish", "old-000000"] {
        assert!(!has_process(&conn, gone), "{gone} should go");
    }

    // The space went back to the filesystem.
    assert_eq!(report.auto_vacuum, AutoVacuum::Incremental);
    assert!(report.pages_vacuumed > 0);
    assert_eq!(report.free_pages, 0);
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(
        after * 2 < report.file_bytes_before,
        "file {} -> {after}",
        report.file_bytes_before
    );
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");

    // A second run finds nothing more to do.
    let again = retention::run_once_with(&path, &fast(KEEP_DAYS, 1_000), NOW, &|| false).unwrap();
    assert_eq!(
        (
            again.events_deleted,
            again.notifications_deleted,
            again.quarantine_deleted,
            again.processes_deleted,
            again.pages_vacuumed
        ),
        (0, 0, 0, 0, 0)
    );
}

#[test]
fn zero_days_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cbtrail.db");
    let conn = create_db(&path);
    insert_event(&conn, 1, "p", 1, 1);
    insert_process(&conn, "p", None, 1);
    let report = retention::run_once(&path, 0, NOW).unwrap();
    assert_eq!(report.horizon_ms, None);
    assert_eq!(report.events_deleted + report.processes_deleted, 0);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 1);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM processes"), 1);
    assert!(report.to_string().contains("keep forever"));
}

#[test]
fn stop_request_ends_the_run_between_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cbtrail.db");
    let conn = create_db(&path);
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..5_000 {
        insert_event(&conn, i, "p", HORIZON - DAY - i, HORIZON - DAY);
    }
    for i in 0..10 {
        insert_notification(&conn, i, "watchlist.hit.process", "p", HORIZON - DAY);
    }
    conn.execute_batch("COMMIT").unwrap();
    let calls = std::cell::Cell::new(0);
    let stop = || {
        calls.set(calls.get() + 1);
        calls.get() > 1
    };
    let report = retention::run_once_with(&path, &fast(KEEP_DAYS, 1_000), NOW, &stop).unwrap();
    assert!(report.interrupted);
    assert_eq!(report.events_deleted, 1_000, "one chunk, committed");
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 4_000);
    // Later phases (notifications, processes, vacuum) do not start after the stop request.
    assert_eq!(report.notifications_deleted, 0);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM notifications"), 10);
    assert_eq!(report.pages_vacuumed, 0);
}

#[test]
fn refuses_missing_foreign_and_newer_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    assert!(matches!(
        retention::run_once(&missing, 30, NOW),
        Err(MaintenanceError::Missing(_))
    ));
    assert!(!missing.exists(), "must not create a database");
    assert!(matches!(
        db_info(&missing, &mut Vec::new()),
        Err(MaintenanceError::Missing(_))
    ));

    let foreign = dir.path().join("other.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(matches!(
        retention::run_once(&foreign, 30, NOW),
        Err(MaintenanceError::NotCbtrail(_))
    ));

    let newer = dir.path().join("newer.db");
    let conn = create_db(&newer);
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = retention::run_once(&newer, 30, NOW).unwrap_err();
    assert!(matches!(err, MaintenanceError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("upgrade cbtrail"));
}

/// Ingest keeps writing while retention deletes: the writer (with a busy timeout, as the store's
/// writer has) is never refused and never waits long.
#[test]
fn concurrent_writer_is_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cbtrail.db");
    let conn = create_db(&path);
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..30_000 {
        insert_event(&conn, i, "p", HORIZON - DAY - i, HORIZON - DAY);
    }
    conn.execute_batch("COMMIT").unwrap();
    drop(conn);

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let path = path.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let w = Connection::open(&path).unwrap();
            w.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut batches = 0u64;
            let mut worst = Duration::ZERO;
            let mut key = 1_000_000i64;
            while !done.load(Ordering::Relaxed) || batches < 5 {
                let t = Instant::now();
                w.execute_batch("BEGIN IMMEDIATE").unwrap();
                for _ in 0..200 {
                    key += 1;
                    insert_event(&w, key, "live", NOW, NOW);
                }
                w.execute_batch("COMMIT").unwrap();
                worst = worst.max(t.elapsed());
                batches += 1;
            }
            (batches, worst)
        })
    };
    let opts = RetentionOptions {
        days: KEEP_DAYS,
        chunk_rows: 2_000,
        pause: Duration::from_millis(2),
        vacuum_bytes: 1024 * 1024,
        ..RetentionOptions::default()
    };
    let report = retention::run_once_with(&path, &opts, NOW, &|| false).unwrap();
    done.store(true, Ordering::Relaxed);
    let (batches, worst) = writer.join().expect("writer thread never failed");
    println!("{report}; writer committed {batches} batches, slowest {worst:?}");
    assert_eq!(report.events_deleted, 30_000);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM events"),
        batches as i64 * 200
    );
    // Generous bound for a loaded 2-core CI machine; typical is a few tens of milliseconds.
    assert!(worst < Duration::from_secs(5), "writer waited {worst:?}");
}

#[test]
fn db_info_reports_counts_times_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cbtrail.db");
    let conn = create_db(&path);
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..2_000 {
        // 0 is "no time" and must not be shown as 1970.
        let ts = if i == 0 { 0 } else { HORIZON + i * 1000 };
        insert_event(&conn, i, "p", ts, NOW);
    }
    insert_process(&conn, "p", None, HORIZON);
    insert_notification(&conn, 1, "watchlist.hit.process", "p", NOW);
    conn.execute_batch("COMMIT").unwrap();

    let info = collect_db_info(&path).unwrap();
    assert_eq!(info.schema_version, SCHEMA_VERSION);
    assert_eq!(info.journal_mode, "wal");
    assert_eq!(info.auto_vacuum, AutoVacuum::Incremental);
    assert!(info.wal_bytes > 0, "WAL not checkpointed yet");
    assert_eq!(info.page_size, 4096);
    assert!(info.page_count > 100);
    // The `events` view is shown as the tables it reads: its rows, their segments and keys; the
    // time range comes from the keys.
    let events = info.tables.iter().find(|t| t.name == "event_rows").unwrap();
    assert_eq!(events.rows, 2_000);
    let data = events
        .table_bytes
        .expect("dbstat is compiled into bundled SQLite");
    assert!(data > 2_000 * 300, "events data {data}");
    assert!(events.index_bytes.unwrap() > 0);
    let keys = info.tables.iter().find(|t| t.name == "event_keys").unwrap();
    assert_eq!(keys.rows, 2_000);
    assert_eq!(keys.min_ms, Some(HORIZON + 1000));
    assert_eq!(keys.max_ms, Some(HORIZON + 1_999_000));
    let names: Vec<&str> = info.tables.iter().map(|t| t.name.as_str()).collect();
    for t in [
        "binaries",
        "event_keys",
        "event_rows",
        "event_segments",
        "notification_targets",
        "notifications",
        "processes",
        "quarantine",
        "sensors",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    assert_eq!(
        info.tables
            .iter()
            .find(|t| t.name == "notification_targets")
            .unwrap()
            .rows,
        1
    );

    let mut out = Vec::new();
    db_info(&path, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    assert!(
        text.contains(&format!("schema       version {SCHEMA_VERSION}")),
        "{text}"
    );
    assert!(text.contains("auto_vacuum incremental"));
    let line = text.lines().find(|l| l.starts_with("event_rows ")).unwrap();
    assert!(line.contains(" 2000 "), "{line}");
    let line = text.lines().find(|l| l.starts_with("event_keys ")).unwrap();
    assert!(line.contains(" 2000 "), "{line}");
    assert!(line.contains("2026-10-26 00:00:01Z"), "{line}");
    assert!(!text.contains("1970-01-01"), "{text}");
}
