//! The SQLite store against real database files in temp dirs: migrations, idempotency, the process
//! merge rules, round trips, and readers next to the writer.

use cbtrail::model::{
    Binary, DeliveryMeta, Event, EventType, FactRank, Headers, Notification, NotificationTarget,
    ProcessFacts, QuarantineReason, Quarantined, Record, record_key,
};
use cbtrail::store::{
    BatchStats, StoreError, Synchronous, TableCounts, Writer, WriterOptions, counts, fingerprint,
    open_read_only, schema, time_range,
};
use rusqlite::{Connection, params};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const G1: &str = "00000007-0000-0b1c-01d9-1a2b3c4d5e6f";
const G2: &str = "00000007-0000-0c2d-01d9-2a2b3c4d5e6f";
const G3: &str = "00000007-0000-0d3e-01d9-3a2b3c4d5e6f";
const PARENT: &str = "00000007-0000-0004-01d9-000000000001";

fn db(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn facts(guid: &str, rank: FactRank) -> ProcessFacts {
    ProcessFacts {
        guid: guid.into(),
        rank: Some(rank),
        ..Default::default()
    }
}

/// A raw event whose key is derived from `seed` (same seed = same record = redelivery).
fn event(seed: &str, guid: &str, ts: i64, processes: Vec<ProcessFacts>) -> Record {
    Record::Event(Box::new(Event {
        key: record_key(&[b"test-event", seed.as_bytes()]),
        event_type: Some(EventType::Filemod),
        timestamp_ms: ts,
        sensor_id: Some(7),
        hostname: Some("WKS-7".into()),
        process_guid: Some(guid.into()),
        pid: Some(4242),
        process_path: Some("c:\\windows\\explorer.exe".into()),
        path: Some(format!("c:\\temp\\{seed}.txt")),
        action: Some("write".into()),
        details: json!({"seed": seed, "path": format!("c:\\temp\\{seed}.txt"), "n": 1}).to_string(),
        processes,
        ..Default::default()
    }))
}

fn observed(seed: &str, guid: &str, ts: i64) -> Record {
    let mut f = facts(guid, FactRank::Observed);
    f.sensor_id = Some(7);
    f.hostname = Some("WKS-7".into());
    f.pid = Some(4242);
    f.path = Some("c:\\windows\\explorer.exe".into());
    event(seed, guid, ts, vec![f])
}

fn binary(md5: &str, seed: &str) -> Binary {
    Binary {
        key: record_key(&[b"test-binary", md5.as_bytes(), seed.as_bytes()]),
        md5: md5.into(),
        timestamp_ms: 1_700_000_000_000,
        details: json!({"md5": md5, "seed": seed}).to_string(),
        ..Default::default()
    }
}

fn notification(seed: &str, targets: &[&str]) -> Notification {
    let targets: Vec<NotificationTarget> = targets
        .iter()
        .enumerate()
        .map(|(i, g)| NotificationTarget {
            process_guid: Some((*g).into()),
            segment: Some(format!("{:08x}", i + 1)),
            sensor_id: Some(7 + i as i64),
            hostname: Some(format!("WKS-{}", 7 + i)),
            md5: Some(format!("{:032X}", i)),
        })
        .collect();
    let first = targets.first().cloned().unwrap_or_default();
    Notification {
        key: record_key(&[b"test-notification", seed.as_bytes()]),
        routing_key: "watchlist.hit.process".into(),
        kind: "watchlist.hit.process".into(),
        watchlist_id: Some(12),
        watchlist_name: Some("Suspicious PowerShell".into()),
        feed_id: None,
        feed_name: None,
        timestamp_ms: Some(1_700_000_500_000),
        process_guid: first.process_guid.clone(),
        segment: first.segment.clone(),
        sensor_id: first.sensor_id,
        hostname: first.hostname.clone(),
        md5: first.md5.clone(),
        json: format!(r#"{{"type":"watchlist.12.hit.process","seed":"{seed}"}}"#),
        processes: targets
            .iter()
            .filter_map(|t| t.process_guid.as_deref())
            .map(|g| facts(g, FactRank::Observed))
            .collect(),
        targets,
    }
}

fn quarantined(body: Vec<u8>) -> Quarantined {
    let mut headers = Headers::new();
    headers.insert("sensorId".into(), json!(7));
    headers.insert("sensorHostName".into(), json!("WKS-7"));
    headers.insert("nested".into(), json!({"a": [1, 2, {"b": null}], "c": "ü"}));
    let meta = DeliveryMeta {
        exchange: "api.rawsensordata".into(),
        routing_key: String::new(),
        content_type: Some("application/zip".into()),
        headers,
    };
    Quarantined::new(
        &meta,
        QuarantineReason::BadZip,
        "member 0: invalid central directory".into(),
        body,
    )
}

/// A batch touching every table.
fn mixed_batch() -> Vec<Record> {
    vec![
        observed("a", G1, 1_700_000_000_100),
        observed("b", G1, 1_700_000_000_200),
        observed("c", G2, 1_700_000_000_300),
        Record::Binary(Box::new(binary("0123456789ABCDEF0123456789ABCDEF", "x"))),
        Record::Notification(Box::new(notification("n1", &[G1, G2, G3]))),
        Record::Quarantined(Box::new(quarantined(vec![0xff, 0x00, 0x01]))),
    ]
}

fn process_row(conn: &Connection, guid: &str) -> rusqlite::Result<ProcessRow> {
    conn.query_row(
        "SELECT parent_guid, pid, path, cmdline, username, start_ms, end_ms, inferred, fact_rank, \
         last_event_ms FROM processes WHERE guid = ?1",
        [guid],
        |r| {
            Ok(ProcessRow {
                parent_guid: r.get(0)?,
                pid: r.get(1)?,
                path: r.get(2)?,
                cmdline: r.get(3)?,
                username: r.get(4)?,
                start_ms: r.get(5)?,
                end_ms: r.get(6)?,
                inferred: r.get(7)?,
                fact_rank: r.get(8)?,
                last_event_ms: r.get(9)?,
            })
        },
    )
}

#[derive(Debug, PartialEq)]
struct ProcessRow {
    parent_guid: Option<String>,
    pid: Option<i64>,
    path: Option<String>,
    cmdline: Option<String>,
    username: Option<String>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    inferred: bool,
    fact_rank: i64,
    last_event_ms: Option<i64>,
}

fn pragma_i64(conn: &Connection, name: &str) -> i64 {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

/// The first column of every row of `sql`.
fn strings(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
    conn.prepare(sql)
        .unwrap()
        .query_map(params, |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn schema_sql(conn: &Connection) -> Vec<String> {
    strings(
        conn,
        "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name",
        [],
    )
}

// ---------------------------------------------------------------------------------------------
// Opening and migrations

#[test]
fn migrates_an_empty_file_with_the_required_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "new.db");
    let w = Writer::open(&path).unwrap();
    let c = w.connection();
    assert_eq!(pragma_i64(c, "user_version"), schema::SCHEMA_VERSION);
    for t in schema::TABLES {
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?1",
                [t],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "table {t}");
    }
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(pragma_i64(c, "auto_vacuum"), 2, "INCREMENTAL");
    assert_eq!(
        pragma_i64(c, "page_size"),
        i64::from(cbtrail::store::DEFAULT_PAGE_SIZE)
    );
    assert_eq!(pragma_i64(c, "synchronous"), 2, "FULL by default");
    assert_eq!(pragma_i64(c, "foreign_keys"), 1);
    assert!(pragma_i64(c, "busy_timeout") > 0);
    // Retention will call this; it must be a valid no-op on a fresh file.
    c.execute_batch("PRAGMA incremental_vacuum").unwrap();
    drop(w);

    let mut w = Writer::open_with(
        &path,
        WriterOptions {
            synchronous: Synchronous::Normal,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(pragma_i64(w.connection(), "synchronous"), 1, "NORMAL");
    assert!(
        w.defer_wal_sync().unwrap().is_none(),
        "NORMAL never waits for the disk"
    );
}

/// Inside the pipeline a FULL writer commits without the fsync and hands it to the WAL's
/// `WalSync`, which syncs the file the commits went to.
#[test]
fn a_deferred_sync_takes_over_the_commit_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "deferred.db");
    let mut w = Writer::open(&path).unwrap();
    let wal = w
        .defer_wal_sync()
        .unwrap()
        .expect("FULL hands its fsync over");
    assert_eq!(
        pragma_i64(w.connection(), "synchronous"),
        1,
        "commits no longer sync"
    );
    let before = std::fs::metadata(path.with_file_name("deferred.db-wal"))
        .unwrap()
        .len();
    w.write_batch(&mixed_batch()).unwrap();
    let after = std::fs::metadata(path.with_file_name("deferred.db-wal"))
        .unwrap()
        .len();
    assert!(
        after > before,
        "the commit went to the WAL the handle syncs"
    );
    wal.sync().unwrap();

    // Without a WAL (an in-memory database cannot have one) the connection keeps syncing itself.
    let mut w = Writer::open(std::path::Path::new(":memory:")).unwrap();
    assert!(w.defer_wal_sync().unwrap().is_none());
    assert_eq!(pragma_i64(w.connection(), "synchronous"), 2, "still FULL");
}

/// The page size is chosen when the file is created: a database created with other pages (an older
/// cbtrail's 4 KiB, or a file prepared by hand) keeps them, and the writer's WAL backstop and
/// retention's vacuum steps, which are sized in bytes, work on it.
#[test]
fn an_existing_file_keeps_its_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "small-pages.db");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "page_size", 4096).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
    }
    let mut w = Writer::open(&path).unwrap();
    assert_eq!(pragma_i64(w.connection(), "page_size"), 4096);
    assert_eq!(
        pragma_i64(w.connection(), "wal_autocheckpoint"),
        200 * 1024 * 1024 / 4096,
        "the backstop is in bytes, whatever the page size"
    );
    assert!(
        pragma_i64(w.connection(), "journal_size_limit") > 200 * 1024 * 1024,
        "the WAL kept on disk after a checkpoint has room for what is written up to the backstop"
    );
    w.write_batch(&mixed_batch()).unwrap();
    drop(w);
    let w = Writer::open(&path).unwrap();
    assert_eq!(pragma_i64(w.connection(), "page_size"), 4096);
    assert_eq!(counts(w.connection()).unwrap().events, 3);
}

#[test]
fn reopening_a_migrated_database_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "reopen.db");
    let mut w = Writer::open(&path).unwrap();
    w.write_batch(&mixed_batch()).unwrap();
    let before_schema = schema_sql(w.connection());
    let before = fingerprint(w.connection()).unwrap();
    drop(w);

    let w = Writer::open(&path).unwrap();
    assert_eq!(
        pragma_i64(w.connection(), "user_version"),
        schema::SCHEMA_VERSION
    );
    assert_eq!(schema_sql(w.connection()), before_schema);
    assert_eq!(fingerprint(w.connection()).unwrap(), before);
}

#[test]
fn a_database_from_a_newer_cbtrail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "newer.db");
    drop(Writer::open(&path).unwrap());
    let newer = schema::SCHEMA_VERSION + 1;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();

    let err = Writer::open(&path).expect_err("writer must refuse");
    match &err {
        StoreError::TooNew {
            path: p,
            found,
            supported,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*found, newer);
            assert_eq!(*supported, schema::SCHEMA_VERSION);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("newer"), "{msg}");

    assert!(matches!(
        open_read_only(&path),
        Err(StoreError::TooNew { .. })
    ));
    // Refusing must not have touched the file.
    let c = Connection::open(&path).unwrap();
    assert_eq!(pragma_i64(&c, "user_version"), newer);
}

#[test]
fn read_only_open_of_a_missing_database_is_missing_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "absent.db");
    match open_read_only(&path) {
        Err(StoreError::Missing(p)) => assert_eq!(p, path),
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(!path.exists());
}

#[test]
fn read_only_open_of_a_non_cbtrail_database_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    match open_read_only(&path) {
        Err(e @ StoreError::NotMigrated { found: 0, .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()));
        }
        other => panic!("expected NotMigrated, got {other:?}"),
    }
}

#[test]
fn open_errors_name_the_path_and_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let in_missing_dir = dir.path().join("no-such-dir").join("x.db");
    let err = Writer::open(&in_missing_dir).expect_err("no parent dir");
    assert!(matches!(err, StoreError::Sqlite { .. }));
    assert!(
        err.to_string()
            .contains(&in_missing_dir.display().to_string())
    );
    assert!(!in_missing_dir.parent().unwrap().exists());

    let garbage = db(&dir, "garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let err = Writer::open(&garbage).expect_err("not a database");
    assert!(err.to_string().contains(&garbage.display().to_string()));
    let err = open_read_only(&garbage).expect_err("not a database");
    assert!(err.to_string().contains(&garbage.display().to_string()));
}

// ---------------------------------------------------------------------------------------------
// Idempotency

#[test]
fn writing_the_same_batch_twice_changes_nothing_and_counts_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "twice.db")).unwrap();
    let batch = mixed_batch();
    let first = w.write_batch(&batch).unwrap();
    assert_eq!(first.events, 3);
    assert_eq!(first.binaries, 1);
    assert_eq!(first.notifications, 1);
    assert_eq!(first.quarantined, 1);
    assert_eq!(first.duplicates, 0);
    assert_eq!(first.events_by_type.get(&EventType::Filemod), Some(&3));
    assert_eq!(first.quarantined_by_reason.get("bad_zip"), Some(&1));
    // G1, G2 from events; G3 only from the notification.
    assert_eq!(first.processes, 3);
    let fp = fingerprint(w.connection()).unwrap();
    let n = counts(w.connection()).unwrap();

    let again = w.write_batch(&batch).unwrap();
    assert_eq!(
        again,
        BatchStats {
            duplicates: batch.len() as u64,
            ..Default::default()
        }
    );
    assert_eq!(fingerprint(w.connection()).unwrap(), fp);
    assert_eq!(counts(w.connection()).unwrap(), n);
}

#[test]
fn an_overlapping_batch_stores_only_the_new_part() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = (0..15)
        .map(|i| {
            observed(
                &format!("e{i}"),
                [G1, G2, G3][i % 3],
                1_700_000_000_000 + i as i64,
            )
        })
        .collect();

    let mut split = Writer::open(&db(&dir, "split.db")).unwrap();
    assert_eq!(split.write_batch(&records[0..10]).unwrap().events, 10);
    let second = split.write_batch(&records[5..15]).unwrap();
    assert_eq!((second.events, second.duplicates), (5, 5));

    let mut whole = Writer::open(&db(&dir, "whole.db")).unwrap();
    whole.write_batch(&records).unwrap();
    assert_eq!(
        fingerprint(split.connection()).unwrap(),
        fingerprint(whole.connection()).unwrap()
    );
}

#[test]
fn a_record_repeated_inside_one_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "inbatch.db")).unwrap();
    let e = observed("same", G1, 1_700_000_000_000);
    let q = Record::Quarantined(Box::new(quarantined(b"x".to_vec())));
    let n = Record::Notification(Box::new(notification("same", &[G1])));
    let stats = w
        .write_batch(&[e.clone(), e, q.clone(), q, n.clone(), n])
        .unwrap();
    assert_eq!(
        (
            stats.events,
            stats.quarantined,
            stats.notifications,
            stats.duplicates
        ),
        (1, 1, 1, 3)
    );
    let c = counts(w.connection()).unwrap();
    assert_eq!((c.events, c.quarantine, c.notification_targets), (1, 1, 1));
}

#[test]
fn process_facts_of_a_duplicate_record_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "dupfacts.db")).unwrap();
    let mut f = facts(G1, FactRank::Observed);
    f.path = Some("first.exe".into());
    w.write_batch(&[event("k", G1, 100, vec![f])]).unwrap();

    // Same key and time (a redelivery), but claiming better facts: none of it may land.
    let mut g = facts(G1, FactRank::Procstart);
    g.path = Some("second.exe".into());
    g.cmdline = Some("second.exe /x".into());
    let stats = w.write_batch(&[event("k", G1, 100, vec![g])]).unwrap();
    assert_eq!((stats.events, stats.duplicates), (0, 1));
    let row = process_row(w.connection(), G1).unwrap();
    assert_eq!(row.path.as_deref(), Some("first.exe"));
    assert_eq!(row.cmdline, None);
    assert_eq!(row.fact_rank, FactRank::Observed as i64);
    assert_eq!(row.last_event_ms, Some(100));
}

// ---------------------------------------------------------------------------------------------
// Process merge rules

#[test]
fn a_parent_known_only_by_reference_is_inferred_until_seen() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "inferred.db")).unwrap();
    let mut child = facts(G1, FactRank::Procstart);
    child.parent_guid = Some(PARENT.into());
    child.path = Some("child.exe".into());
    let mut parent_ref = facts(PARENT, FactRank::ParentReference);
    parent_ref.pid = Some(4);
    parent_ref.path = Some("guessed.exe".into());
    let stats = w
        .write_batch(&[event("p1", G1, 1000, vec![child, parent_ref])])
        .unwrap();
    assert_eq!(stats.processes, 2);

    let p = process_row(w.connection(), PARENT).unwrap();
    assert!(p.inferred);
    assert_eq!(p.fact_rank, FactRank::ParentReference as i64);
    assert_eq!(p.path.as_deref(), Some("guessed.exe"));
    assert_eq!(
        process_row(w.connection(), G1)
            .unwrap()
            .parent_guid
            .as_deref(),
        Some(PARENT)
    );

    // A second reference keeps it inferred.
    let mut again = facts(PARENT, FactRank::ParentReference);
    again.username = Some("SYSTEM".into());
    w.write_batch(&[event("p2", G2, 1001, vec![again])])
        .unwrap();
    let p = process_row(w.connection(), PARENT).unwrap();
    assert!(p.inferred);
    assert_eq!(p.username.as_deref(), Some("SYSTEM"));

    // Seeing it for real clears the flag and replaces what was only guessed.
    let mut seen = facts(PARENT, FactRank::Observed);
    seen.path = Some("c:\\windows\\system32\\services.exe".into());
    w.write_batch(&[event("p3", PARENT, 1002, vec![seen])])
        .unwrap();
    let p = process_row(w.connection(), PARENT).unwrap();
    assert!(!p.inferred);
    assert_eq!(p.fact_rank, FactRank::Observed as i64);
    assert_eq!(
        p.path.as_deref(),
        Some("c:\\windows\\system32\\services.exe")
    );
    assert_eq!(p.pid, Some(4), "kept: nothing better known");
    assert_eq!(p.last_event_ms, Some(1002));
}

/// The processes a lookup through `index` finds for `value`.
fn processes_by_index(conn: &Connection, index: &str, column: &str, value: &str) -> Vec<String> {
    let sql =
        format!("SELECT guid FROM processes INDEXED BY {index} WHERE {column} = ?1 ORDER BY guid");
    strings(conn, &sql, [value])
}

/// An update that keeps a row's `parent_guid`, `hostname` and `start_ms` leaves their index entries
/// alone (a cheaper statement); one that changes them must move the entries.
#[test]
fn process_index_entries_follow_every_update() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "index-entries.db")).unwrap();
    let mut reference = facts(G1, FactRank::ParentReference);
    reference.pid = Some(4);
    w.write_batch(&[event("i1", G2, 1, vec![reference])])
        .unwrap();
    assert!(processes_by_index(w.connection(), "processes_host", "hostname", "WKS-7").is_empty());

    // A header brings the keys: the entries move in.
    let mut seen = facts(G1, FactRank::Observed);
    seen.parent_guid = Some(PARENT.into());
    seen.hostname = Some("WKS-7".into());
    seen.start_ms = Some(500);
    w.write_batch(&[event("i2", G1, 2, vec![seen])]).unwrap();
    let by_parent =
        |w: &Writer| processes_by_index(w.connection(), "processes_parent", "parent_guid", PARENT);
    let by_host =
        |w: &Writer, h: &str| processes_by_index(w.connection(), "processes_host", "hostname", h);
    assert_eq!(by_parent(&w), [G1]);
    assert_eq!(by_host(&w, "WKS-7"), [G1]);

    // Other columns only.
    let mut more = facts(G1, FactRank::Observed);
    more.end_ms = Some(900);
    more.username = Some("CORP\\bob".into());
    w.write_batch(&[event("i3", G1, 3, vec![more])]).unwrap();
    let r = process_row(w.connection(), G1).unwrap();
    assert_eq!(
        (r.end_ms, r.username.as_deref()),
        (Some(900), Some("CORP\\bob"))
    );
    assert_eq!(by_parent(&w), [G1]);
    assert_eq!(by_host(&w, "WKS-7"), [G1]);

    // A better-ranked host name replaces the observed one: the entry moves again.
    let mut start = facts(G1, FactRank::Procstart);
    start.hostname = Some("WKS-8".into());
    w.write_batch(&[event("i4", G1, 4, vec![start])]).unwrap();
    assert!(by_host(&w, "WKS-7").is_empty());
    assert_eq!(by_host(&w, "WKS-8"), [G1]);
    assert_eq!(by_parent(&w), [G1]);
    let integrity: String = w
        .connection()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn higher_rank_overwrites_lower_rank_only_fills() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "ranks.db")).unwrap();
    let mut obs = facts(G1, FactRank::Observed);
    obs.path = Some("observed.exe".into());
    obs.pid = Some(10);
    w.write_batch(&[event("r1", G1, 1, vec![obs])]).unwrap();

    let mut start = facts(G1, FactRank::Procstart);
    start.path = Some("procstart.exe".into());
    start.cmdline = Some("procstart.exe -x".into());
    start.start_ms = Some(500);
    w.write_batch(&[event("r2", G1, 2, vec![start])]).unwrap();
    let r = process_row(w.connection(), G1).unwrap();
    assert_eq!(r.path.as_deref(), Some("procstart.exe"));
    assert_eq!(r.pid, Some(10), "procstart did not carry a pid");
    assert_eq!(r.fact_rank, FactRank::Procstart as i64);

    // Lower and equal ranks only fill what is empty.
    let mut late = facts(G1, FactRank::Childproc);
    late.path = Some("childproc.exe".into());
    late.username = Some("CORP\\alice".into());
    late.end_ms = Some(900);
    let mut same = facts(G1, FactRank::Procstart);
    same.cmdline = Some("other -y".into());
    w.write_batch(&[
        event("r3", G1, 3, vec![late]),
        event("r4", G1, 4, vec![same]),
    ])
    .unwrap();
    let r = process_row(w.connection(), G1).unwrap();
    assert_eq!(
        r,
        ProcessRow {
            parent_guid: None,
            pid: Some(10),
            path: Some("procstart.exe".into()),
            cmdline: Some("procstart.exe -x".into()),
            username: Some("CORP\\alice".into()),
            start_ms: Some(500),
            end_ms: Some(900),
            inferred: false,
            fact_rank: FactRank::Procstart as i64,
            last_event_ms: Some(4),
        }
    );
}

#[test]
fn a_process_is_never_its_own_parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "selfparent.db")).unwrap();
    let mut f = facts(G1, FactRank::Procstart);
    f.parent_guid = Some(G1.into());
    f.path = Some("loop.exe".into());
    let stats = w
        .write_batch(&[event("s1", G1, 10, vec![f]), observed("s2", G2, 11)])
        .unwrap();
    assert_eq!(stats.events, 2);
    let r = process_row(w.connection(), G1).unwrap();
    assert_eq!(r.parent_guid, None);
    assert_eq!(r.path.as_deref(), Some("loop.exe"));

    // A real parent learned later still lands.
    let mut g = facts(G1, FactRank::Childproc);
    g.parent_guid = Some(PARENT.into());
    w.write_batch(&[event("s3", PARENT, 12, vec![g])]).unwrap();
    assert_eq!(
        process_row(w.connection(), G1)
            .unwrap()
            .parent_guid
            .as_deref(),
        Some(PARENT)
    );
}

/// Facts of different ranks about one process, including the case where a per-row rank would
/// depend on order (procstart without a path between an observed and a childproc path).
fn rank_facts() -> Vec<ProcessFacts> {
    let mut a = facts(G1, FactRank::Procstart);
    a.pid = Some(4242);
    a.start_ms = Some(1000);
    a.parent_guid = Some(PARENT.into());
    let mut b = facts(G1, FactRank::Childproc);
    b.path = Some("childproc.exe".into());
    b.cmdline = Some("childproc.exe /c".into());
    b.end_ms = Some(5000);
    let mut c = facts(G1, FactRank::Observed);
    c.path = Some("observed.exe".into());
    c.pid = Some(1);
    c.username = Some("bob".into());
    let mut d = facts(G1, FactRank::ParentReference);
    d.path = Some("reference.exe".into());
    d.md5 = Some("00112233445566778899AABBCCDDEEFF".into());
    d.parent_guid = Some(G3.into());
    vec![a, b, c, d]
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn the_merged_process_does_not_depend_on_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let all = rank_facts();
    let mut reference = None;
    for (n, order) in permutations(all.len()).into_iter().enumerate() {
        for one_batch in [false, true] {
            let mut w = Writer::open(&db(&dir, &format!("order{n}-{one_batch}.db"))).unwrap();
            // Same event keys in every order, so only the process merge can differ.
            let records: Vec<Record> = order
                .iter()
                .map(|&i| event(&format!("f{i}"), G1, 100 + i as i64, vec![all[i].clone()]))
                .collect();
            if one_batch {
                w.write_batch(&records).unwrap();
            } else {
                for r in &records {
                    w.write_batch(std::slice::from_ref(r)).unwrap();
                }
            }
            let fp = fingerprint(w.connection()).unwrap();
            let row = process_row(w.connection(), G1).unwrap();
            match &reference {
                None => {
                    assert_eq!(
                        row,
                        ProcessRow {
                            parent_guid: Some(PARENT.into()),
                            pid: Some(4242),
                            path: Some("childproc.exe".into()),
                            cmdline: Some("childproc.exe /c".into()),
                            username: Some("bob".into()),
                            start_ms: Some(1000),
                            end_ms: Some(5000),
                            inferred: false,
                            fact_rank: FactRank::Procstart as i64,
                            last_event_ms: Some(103),
                        }
                    );
                    reference = Some(fp);
                }
                Some(r) => assert_eq!(&fp, r, "order {order:?}, one batch: {one_batch}"),
            }
        }
    }
}

#[test]
fn the_rank_cache_never_hides_a_fact_that_fills_a_column() {
    // Same stream with and without the cache: a process first stored at Procstart rank without a
    // username, then many Observed events, one of which brings the username.
    let dir = tempfile::tempdir().unwrap();
    let mut batches: Vec<Vec<Record>> = Vec::new();
    let mut start = facts(G1, FactRank::Procstart);
    start.path = Some("app.exe".into());
    batches.push(vec![event("c0", G1, 10, vec![start])]);
    for b in 1..6 {
        let mut batch = Vec::new();
        for i in 0..20 {
            let mut f = facts(G1, FactRank::Observed);
            f.path = Some("header.exe".into());
            if b == 4 && i == 7 {
                f.username = Some("CORP\\carol".into());
            }
            batch.push(event(&format!("c{b}-{i}"), G1, 10 + b * 100 + i, vec![f]));
            batch.push(observed(&format!("d{b}-{i}"), G2, 10 + b * 100 + i));
        }
        batches.push(batch);
    }
    let mut fps = Vec::new();
    for entries in [0, 1, 200_000] {
        let mut w = Writer::open_with(
            &db(&dir, &format!("cache{entries}.db")),
            WriterOptions {
                process_cache_entries: entries,
                ..Default::default()
            },
        )
        .unwrap();
        for b in &batches {
            w.write_batch(b).unwrap();
        }
        let r = process_row(w.connection(), G1).unwrap();
        assert_eq!(r.username.as_deref(), Some("CORP\\carol"));
        assert_eq!(r.path.as_deref(), Some("app.exe"));
        assert_eq!(r.last_event_ms, Some(10 + 5 * 100 + 19));
        fps.push(fingerprint(w.connection()).unwrap());
    }
    assert_eq!(fps[0], fps[1]);
    assert_eq!(fps[0], fps[2]);
}

#[test]
fn a_cached_process_deleted_behind_the_writer_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "deleted.db")).unwrap();
    w.write_batch(&[observed("x1", G1, 1)]).unwrap();
    w.connection()
        .execute("DELETE FROM processes WHERE guid = ?1", [G1])
        .unwrap();
    w.write_batch(&[observed("x2", G1, 2)]).unwrap();
    let r = process_row(w.connection(), G1).unwrap();
    assert_eq!(r.last_event_ms, Some(2));
}

#[test]
fn last_event_ms_is_the_latest_event_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "last.db")).unwrap();
    w.write_batch(&[observed("l1", G1, 300), observed("l2", G1, 100)])
        .unwrap();
    w.write_batch(&[observed("l3", G1, 200), observed("l0", G1, 0)])
        .unwrap();
    assert_eq!(
        process_row(w.connection(), G1).unwrap().last_event_ms,
        Some(300)
    );
    // A process known only as a parent has no events of its own.
    let mut c = facts(G2, FactRank::Procstart);
    c.parent_guid = Some(PARENT.into());
    w.write_batch(&[event(
        "l4",
        G2,
        400,
        vec![c, facts(PARENT, FactRank::ParentReference)],
    )])
    .unwrap();
    assert_eq!(
        process_row(w.connection(), PARENT).unwrap().last_event_ms,
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Binaries, notifications, quarantine, sensors

#[test]
fn a_later_binary_record_only_fills_empty_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "bin.db")).unwrap();
    let md5 = "0123456789ABCDEF0123456789ABCDEF";
    let mut first = binary(md5, "1");
    first.company_name = Some("Contoso".into());
    first.size = Some(1234);
    let s = w
        .write_batch(&[Record::Binary(Box::new(first.clone()))])
        .unwrap();
    assert_eq!(s.binaries, 1);

    let mut second = binary(md5, "2");
    second.company_name = Some("Evil Corp".into());
    second.sha256 = Some("AB".repeat(32));
    second.size = Some(9999);
    second.timestamp_ms = 1;
    let s = w
        .write_batch(&[Record::Binary(Box::new(second.clone()))])
        .unwrap();
    assert_eq!((s.binaries, s.binaries_updated, s.duplicates), (0, 1, 0));
    let (company, sha256, size, ts, details): (String, String, i64, i64, String) = w
        .connection()
        .query_row(
            "SELECT company_name, sha256, size, timestamp_ms, details FROM binaries WHERE md5 = ?1",
            [md5],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(company, "Contoso");
    assert_eq!(sha256, "AB".repeat(32));
    assert_eq!(size, 1234);
    assert_eq!(ts, first.timestamp_ms);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&details).unwrap(),
        first.details_value()
    );

    // Nothing left to fill: a duplicate, whatever its key.
    let s = w
        .write_batch(&[
            Record::Binary(Box::new(second)),
            Record::Binary(Box::new(first)),
        ])
        .unwrap();
    assert_eq!((s.binaries, s.binaries_updated, s.duplicates), (0, 0, 2));
}

#[test]
fn a_notification_keeps_every_target_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "notif.db")).unwrap();
    let n = notification("multi", &[G1, G2, G3]);
    w.write_batch(&[Record::Notification(Box::new(n.clone()))])
        .unwrap();
    let c = w.connection();
    let (id, kind, json, guid, wl): (i64, String, String, String, i64) = c
        .query_row(
            "SELECT id, type, json, process_guid, watchlist_id FROM notifications",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), json.as_str(), guid.as_str(), wl),
        (n.kind.as_str(), n.json.as_str(), G1, 12)
    );
    let targets: Vec<(i64, String, String, i64, String, String)> = c
        .prepare(
            "SELECT idx, process_guid, segment, sensor_id, hostname, md5 \
             FROM notification_targets WHERE notification_id = ?1 ORDER BY idx",
        )
        .unwrap()
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<_> = n
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                i as i64,
                t.process_guid.clone().unwrap(),
                t.segment.clone().unwrap(),
                t.sensor_id.unwrap(),
                t.hostname.clone().unwrap(),
                t.md5.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(targets, expected);
    // Each target process exists (observed through the notification).
    for g in [G1, G2, G3] {
        assert!(!process_row(c, g).unwrap().inferred);
    }
    let s = w.write_batch(&[Record::Notification(Box::new(n))]).unwrap();
    assert_eq!((s.notifications, s.duplicates), (0, 1));
    assert_eq!(counts(w.connection()).unwrap().notification_targets, 3);
}

#[test]
fn quarantine_keeps_headers_and_body_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "quarantine.db");
    let mut w = Writer::open(&path).unwrap();
    // Every byte value, NULs and invalid UTF-8 included.
    let body: Vec<u8> = (0..=255u8).chain([0, 0, 0xc3, 0x28, 0xff]).collect();
    let q = quarantined(body.clone());
    let s = w
        .write_batch(&[Record::Quarantined(Box::new(q.clone()))])
        .unwrap();
    assert_eq!(s.quarantined_by_reason.get("bad_zip"), Some(&1));
    drop(w);

    let r = open_read_only(&path).unwrap();
    let (exchange, ct, headers, reason, error, stored): (
        String,
        Option<String>,
        String,
        String,
        String,
        Vec<u8>,
    ) = r
        .query_row(
            "SELECT exchange, content_type, headers, reason, error, body FROM quarantine",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(stored, body);
    assert_eq!(
        serde_json::from_str::<Headers>(&headers).unwrap(),
        q.headers
    );
    assert_eq!(exchange, "api.rawsensordata");
    assert_eq!(ct.as_deref(), Some("application/zip"));
    assert_eq!(reason, "bad_zip");
    assert_eq!(error, q.error);
    let typ: String = r
        .query_row("SELECT typeof(body) FROM quarantine", [], |r| r.get(0))
        .unwrap();
    assert_eq!(typ, "blob");
}

#[test]
fn sensors_track_event_time_span_and_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "sensors.db")).unwrap();
    w.write_batch(&[observed("s1", G1, 5000), observed("s2", G1, 3000)])
        .unwrap();
    w.write_batch(&[observed("s3", G1, 9000), observed("s4", G1, 0)])
        .unwrap();
    let (host, first, last, seen1, seen2): (String, i64, i64, i64, i64) = w
        .connection()
        .query_row(
            "SELECT hostname, first_event_ms, last_event_ms, first_seen_ms, last_seen_ms \
             FROM sensors WHERE sensor_id = 7",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!((host.as_str(), first, last), ("WKS-7", 3000, 9000));
    assert!(seen1 > 0 && seen2 >= seen1);
    // Duplicates are not activity.
    let before: i64 = w
        .connection()
        .query_row("SELECT last_event_ms FROM sensors", [], |r| r.get(0))
        .unwrap();
    w.write_batch(&[observed("s3", G1, 9000)]).unwrap();
    let after: i64 = w
        .connection()
        .query_row("SELECT last_event_ms FROM sensors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn events_keep_typed_columns_and_details() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&db(&dir, "event.db")).unwrap();
    let e = Event {
        key: record_key(&[b"net"]),
        event_type: Some(EventType::Netconn),
        timestamp_ms: 1_700_000_000_123,
        sensor_id: Some(9),
        hostname: Some("SRV-1".into()),
        process_guid: Some(G2.into()),
        remote_ip: Some("203.0.113.9".into()),
        remote_port: Some(443),
        local_ip: Some("10.0.0.5".into()),
        local_port: Some(50123),
        protocol: Some("tcp".into()),
        direction: Some("outbound".into()),
        domain: Some("example.org".into()),
        details: json!({"remote_ip": "203.0.113.9", "port": 443, "nested": {"x": [1, "ü"]}})
            .to_string(),
        ..Default::default()
    };
    let untyped = Event {
        key: record_key(&[b"untyped"]),
        event_type: None,
        ..Default::default()
    };
    let s = w
        .write_batch(&[
            Record::Event(Box::new(e.clone())),
            Record::Event(Box::new(untyped)),
        ])
        .unwrap();
    assert_eq!(s.events, 2);
    assert_eq!(s.events_by_type.get(&EventType::Netconn), Some(&1));
    let (ty, ip, port, dom, details, key): (String, String, i64, String, String, Vec<u8>) = w
        .connection()
        .query_row(
            "SELECT event_type, remote_ip, remote_port, domain, details, event_key FROM events \
             WHERE process_guid = ?1",
            [G2],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        (ty.as_str(), ip.as_str(), port, dom.as_str()),
        ("netconn", "203.0.113.9", 443, "example.org")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&details).unwrap(),
        e.details_value()
    );
    assert_eq!(key, e.key.to_vec());
    let (ty, details): (String, String) = w
        .connection()
        .query_row(
            "SELECT event_type, details FROM events WHERE process_guid IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ty.as_str(), details.as_str()), ("unknown", "{}"));
}

// ---------------------------------------------------------------------------------------------
// Read side

#[test]
fn fingerprint_ignores_reception_times_and_row_ids_but_not_content() {
    let dir = tempfile::tempdir().unwrap();
    let batch = mixed_batch();
    let mut a = Writer::open(&db(&dir, "fa.db")).unwrap();
    a.write_batch(&batch).unwrap();
    let mut b = Writer::open(&db(&dir, "fb.db")).unwrap();
    // Different row ids: b stores the records in another order, across two batches.
    let mut rev = batch.clone();
    rev.reverse();
    b.write_batch(&rev[..3]).unwrap();
    b.write_batch(&rev[3..]).unwrap();
    // Different reception times.
    for sql in [
        "UPDATE event_segments SET received_ms = received_ms + 86400000",
        "UPDATE binaries SET received_ms = 1",
        "UPDATE notifications SET received_ms = 2",
        "UPDATE quarantine SET received_ms = 3",
        "UPDATE processes SET first_seen_ms = 4",
        "UPDATE sensors SET first_seen_ms = 5, last_seen_ms = 6",
    ] {
        b.connection().execute_batch(sql).unwrap();
    }
    let fa = fingerprint(a.connection()).unwrap();
    assert_eq!(fa, fingerprint(b.connection()).unwrap());
    assert_eq!(fa.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut t = schema::TABLES.to_vec();
        t.sort();
        t
    });
    assert_eq!(fa["events"].0, 3);
    assert_eq!(fa["notification_targets"].0, 3);

    // Any content change shows, in the table it happened in.
    for (table, sql) in [
        (
            "events",
            "UPDATE events SET path = 'x' WHERE id = (SELECT min(id) FROM events)",
        ),
        (
            "processes",
            "UPDATE processes SET pid = 1 WHERE guid = '00000007-0000-0b1c-01d9-1a2b3c4d5e6f'",
        ),
        (
            "notification_targets",
            "UPDATE notification_targets SET segment = 'ffffffff' WHERE idx = 2",
        ),
        ("quarantine", "UPDATE quarantine SET body = x'00'"),
    ] {
        let before = fingerprint(b.connection()).unwrap();
        b.connection().execute_batch(sql).unwrap();
        let after = fingerprint(b.connection()).unwrap();
        assert_ne!(before[table], after[table], "{sql}");
        for t in schema::TABLES.iter().filter(|t| **t != table) {
            assert_eq!(before[*t], after[*t], "{t} after {sql}");
        }
    }
}

#[test]
fn counts_and_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "counts.db");
    let mut w = Writer::open(&path).unwrap();
    assert_eq!(time_range(w.connection()).unwrap(), None);
    assert_eq!(counts(w.connection()).unwrap(), TableCounts::default());
    w.write_batch(&mixed_batch()).unwrap();
    w.write_batch(&[observed("zero", G1, 0)]).unwrap();
    let r = open_read_only(&path).unwrap();
    assert_eq!(
        counts(&r).unwrap(),
        TableCounts {
            events: 4,
            processes: 3,
            binaries: 1,
            notifications: 1,
            notification_targets: 3,
            quarantine: 1,
            sensors: 3,
        }
    );
    assert_eq!(
        time_range(&r).unwrap(),
        Some((1_700_000_000_100, 1_700_000_000_300))
    );
}

fn many_events(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            observed(
                &format!("{prefix}{i}"),
                [G1, G2, G3][i % 3],
                1_700_000_000_000 + i as i64,
            )
        })
        .collect()
}

#[test]
fn a_reader_in_a_transaction_sees_the_previous_commit_and_does_not_block_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "concurrent.db");
    let mut w = Writer::open_with(
        &path,
        WriterOptions {
            // Blocked for longer than this, the batch would fail instead of waiting.
            busy_timeout: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .unwrap();
    w.write_batch(&many_events("a", 100)).unwrap();

    let r = open_read_only(&path).unwrap();
    r.execute_batch("BEGIN").unwrap();
    assert_eq!(counts(&r).unwrap().events, 100);

    let t = Instant::now();
    let s = w.write_batch(&many_events("b", 50)).unwrap();
    assert_eq!(s.events, 50);
    assert!(t.elapsed() < Duration::from_secs(5));
    // The snapshot is stable for the reader's transaction…
    let in_tx: i64 = r
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(in_tx, 100);
    r.execute_batch("COMMIT").unwrap();
    // …and the next one sees the new commit.
    assert_eq!(counts(&r).unwrap().events, 150);
}

#[test]
fn a_reader_polling_during_a_large_batch_sees_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "polling.db");
    let mut w = Writer::open(&path).unwrap();
    w.write_batch(&many_events("a", 10)).unwrap();
    let big = many_events("big", 20_000);
    let r = open_read_only(&path).unwrap();

    let writer = std::thread::spawn(move || {
        let s = w.write_batch(&big).map(|s| s.events);
        (w, s)
    });
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let n: i64 = r
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        seen.insert(n);
        if writer.is_finished() {
            break;
        }
    }
    let (w, stored) = writer.join().unwrap();
    assert_eq!(stored.unwrap(), 20_000);
    let n: i64 = r
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    seen.insert(n);
    assert!(seen.iter().all(|n| *n == 10 || *n == 20_010), "{seen:?}");
    assert!(seen.contains(&20_010));
    drop(w);
}

#[test]
fn read_only_connections_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "ro.db");
    drop(Writer::open(&path).unwrap());
    let r = open_read_only(&path).unwrap();
    assert!(r.execute("DELETE FROM events", params![]).is_err());
}
