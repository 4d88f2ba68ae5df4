//! Schema V4: events stored as `event_rows` in `event_segments` behind the `events` view. The
//! migration of existing rows, how the writer groups a batch, the view's triggers, and the query
//! plans analysts and the exports rely on.

mod treedb;

use cbtrail::model::{Event, EventType, Record, record_key};
use cbtrail::store::schema::MIGRATIONS;
use cbtrail::store::{Writer, fingerprint};
use rusqlite::{Connection, params};
use serde_json::json;
use treedb::{dump_events as dump, plan};

const G1: &str = "00000007-0000-0b1c-01d9-1a2b3c4d5e6f";
const G2: &str = "00000007-0000-0c2d-01d9-2a2b3c4d5e6f";
const G3: &str = "00000007-0000-0d3e-01d9-3a2b3c4d5e6f";

fn event(seed: &str, guid: &str, ts: i64, process_path: &str) -> Record {
    Record::Event(Box::new(Event {
        key: record_key(&[b"v4-event", seed.as_bytes()]),
        event_type: Some(EventType::Filemod),
        timestamp_ms: ts,
        sensor_id: Some(7),
        hostname: Some("WKS-7".into()),
        process_guid: Some(guid.into()),
        pid: Some(4242),
        process_path: Some(process_path.into()),
        path: Some(format!("c:\\temp\\{seed}.txt")),
        action: Some("write".into()),
        details: json!({"seed": seed}).to_string(),
        ..Default::default()
    }))
}

/// (segment id, first_id, last_id, process_guid, process_path) of a segment.
type SegmentRow = (i64, i64, i64, Option<String>, Option<String>);

/// Every segment, by id.
fn segments(conn: &Connection) -> Vec<SegmentRow> {
    conn.prepare(
        "SELECT id, first_id, last_id, process_guid, process_path FROM event_segments ORDER BY id",
    )
    .unwrap()
    .query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The `details.seed` of a process's events in id order.
fn seeds_of(conn: &Connection, guid: &str) -> Vec<String> {
    conn.prepare("SELECT details ->> '$.seed' FROM events WHERE process_guid = ?1 ORDER BY id")
        .unwrap()
        .query_map([guid], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn v4_moves_existing_events_into_segments_without_changing_them() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("v3.db")).unwrap();
    for m in &MIGRATIONS[..3] {
        conn.execute_batch(m).unwrap();
    }
    // Runs of one process, a change of header path inside a run, a change of reception time
    // (another batch), an event without a process, and ids with a gap (retention deleted some).
    let rows: [(i64, Option<&str>, &str, i64); 9] = [
        (1, Some(G1), "a.exe", 100),
        (2, Some(G1), "a.exe", 100),
        (3, Some(G2), "b.exe", 100),
        (4, Some(G1), "a.exe", 100),
        (5, Some(G1), "A.EXE", 100),
        (6, Some(G1), "A.EXE", 200),
        (9, None, "", 200),
        (10, None, "", 200),
        (12, Some(G3), "c.exe", 200),
    ];
    for (id, guid, path, received) in rows {
        conn.execute(
            "INSERT INTO events (id, event_key, timestamp_ms, event_type, process_guid, sensor_id,
                 hostname, pid, process_path, path, remote_ip, details, received_ms)
             VALUES (?1, ?2, ?3, 'netconn', ?4, 7, 'WKS-7', 4, ?5, 'x', '10.0.0.' || ?1,
                 json_object('n', ?1), ?6)",
            params![
                id,
                record_key(&[&id.to_le_bytes()]).as_slice(),
                1_700_000_000_000i64 + id,
                guid,
                (!path.is_empty()).then_some(path),
                received
            ],
        )
        .unwrap();
    }
    let before = dump(&conn);
    let fp_before = fingerprint(&conn).unwrap();

    conn.execute_batch(MIGRATIONS[3]).unwrap();
    assert_eq!(
        dump(&conn),
        before,
        "the view shows every row as the table held it"
    );
    assert_eq!(fingerprint(&conn).unwrap(), fp_before);
    let segs: Vec<(i64, i64)> = segments(&conn).iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(
        segs,
        vec![(1, 2), (3, 3), (4, 4), (5, 5), (6, 6), (9, 10), (12, 12)]
    );
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM netconn_view WHERE remote_ip = '10.0.0.12'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn the_writer_stores_each_process_of_a_batch_as_one_segment_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("w.db")).unwrap();
    let batch = vec![
        event("a1", G1, 10, "a.exe"),
        event("b1", G2, 11, "b.exe"),
        event("a2", G1, 12, "a.exe"),
        event("c1", G3, 9, "c.exe"),
        event("b2", G2, 13, "b.exe"),
        // The header describes G1 differently from here on: a new segment of G1.
        event("a3", G1, 14, "A.EXE"),
        event("a4", G1, 15, "a.exe"),
    ];
    let stats = w.write_batch(&batch).unwrap();
    assert_eq!(stats.events, 7);
    let conn = w.connection();
    let segs = segments(conn);
    let layout: Vec<(i64, i64, &str, &str)> = segs
        .iter()
        .map(|s| (s.1, s.2, s.3.as_deref().unwrap(), s.4.as_deref().unwrap()))
        .collect();
    assert_eq!(
        layout,
        vec![
            (1, 2, G1, "a.exe"),
            (3, 3, G1, "A.EXE"),
            (4, 4, G1, "a.exe"),
            (5, 6, G2, "b.exe"),
            (7, 7, G3, "c.exe")
        ]
    );
    assert_eq!(seeds_of(conn, G1), ["a1", "a2", "a3", "a4"]);
    assert_eq!(seeds_of(conn, G2), ["b1", "b2"]);

    // A redelivery adds no row and no segment; a later batch's events of G1 come after.
    let again = w.write_batch(&batch).unwrap();
    assert_eq!((again.events, again.duplicates), (0, 7));
    assert_eq!(segments(w.connection()).len(), 5);
    let mixed = vec![event("b1", G2, 11, "b.exe"), event("a5", G1, 16, "a.exe")];
    let s = w.write_batch(&mixed).unwrap();
    assert_eq!((s.events, s.duplicates), (1, 1));
    let conn = w.connection();
    assert_eq!(segments(conn).len(), 6);
    assert_eq!(seeds_of(conn, G1), ["a1", "a2", "a3", "a4", "a5"]);
    let (ts, path): (i64, String) = conn
        .query_row(
            "SELECT timestamp_ms, process_path FROM events WHERE details ->> '$.seed' = 'a3'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ts, path.as_str()), (14, "A.EXE"));
}

#[test]
fn the_view_stays_writable_like_the_table_was() {
    let dir = tempfile::tempdir().unwrap();
    let w = Writer::open(&dir.path().join("t.db")).unwrap();
    let conn = w.connection();
    let insert = "INSERT INTO events (event_key, timestamp_ms, event_type, process_guid, \
                  process_path, path, details, received_ms) VALUES (?1, ?2, 'filemod', ?3, \
                  'a.exe', ?4, '{}', 5)";
    for (i, g) in [G1, G1, G2].iter().enumerate() {
        let i = i as i64;
        conn.execute(
            insert,
            params![vec![i as u8; 16], 100 + i, g, format!("f{i}")],
        )
        .unwrap();
    }
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM events WHERE process_guid = '{G1}'"
        )),
        2
    );
    assert_eq!(count("SELECT count(*) FROM event_segments"), 3);
    // A duplicate key is refused as by the table's unique index.
    assert!(
        conn.execute(insert, params![vec![0u8; 16], 100, G1, "dup"])
            .is_err()
    );
    assert_eq!(count("SELECT count(*) FROM event_rows"), 3);

    conn.execute("UPDATE events SET path = 'changed' WHERE path = 'f1'", [])
        .unwrap();
    assert_eq!(
        count("SELECT count(*) FROM events WHERE path = 'changed'"),
        1
    );
    let err = conn
        .execute(
            "UPDATE events SET process_path = 'b.exe' WHERE path = 'f0'",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("event_segments"), "{err}");

    conn.execute("DELETE FROM events WHERE process_guid = ?1", [G1])
        .unwrap();
    assert_eq!(count("SELECT count(*) FROM event_rows"), 1);
    assert_eq!(
        count("SELECT count(*) FROM event_segments"),
        1,
        "segments left without rows are deleted with their last row"
    );
}

/// Many processes over many batches, as the daemon writes them.
fn busy_db(dir: &std::path::Path) -> Writer {
    let mut w = Writer::open(&dir.join("busy.db")).unwrap();
    let guids: Vec<String> = (0..200)
        .map(|p| format!("00000007-0000-{p:04x}-01d9-1a2b3c4d5e6f"))
        .collect();
    let mut seq = 0u64;
    for batch in 0..40 {
        let records: Vec<Record> = (0..500)
            .map(|i| {
                seq += 1;
                let g = &guids[(i * 7 + batch * 13) % 50 + (batch % 4) * 50];
                event(&seq.to_string(), g, 1_700_000_000_000 + seq as i64, "a.exe")
            })
            .collect();
        w.write_batch(&records).unwrap();
    }
    w
}

#[test]
fn queries_through_the_view_use_the_segment_index_or_the_time_keys() {
    let dir = tempfile::tempdir().unwrap();
    let w = busy_db(dir.path());
    let conn = w.connection();
    let by_process = "SELECT * FROM events WHERE process_guid = ?1 ORDER BY timestamp_ms";
    let by_time = "SELECT * FROM events WHERE timestamp_ms BETWEEN ?1 AND ?2 AND hostname = 'x'";
    let netconn = "SELECT * FROM netconn_view WHERE remote_ip = ?1";
    // With the planner's defaults, and with statistics (an analyst may run ANALYZE).
    for analyzed in [false, true] {
        if analyzed {
            conn.execute_batch("ANALYZE").unwrap();
        }
        let p = plan(conn, by_process, [G1]);
        assert!(
            p.contains("event_segments_process")
                && p.contains("INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
            "analyzed={analyzed}: {p}"
        );
        // Since V5 the key comes from `event_keys`: one primary-key lookup per row, never a scan.
        assert!(
            p.contains("SEARCH k USING PRIMARY KEY (timestamp_ms=? AND event_key=?)"),
            "analyzed={analyzed}: {p}"
        );
        let p = plan(conn, by_time, [0, 1]);
        assert!(
            p.contains("SEARCH k USING PRIMARY KEY (timestamp_ms>? AND timestamp_ms<?)")
                && p.contains("INTEGER PRIMARY KEY (rowid=?)"),
            "analyzed={analyzed}: {p}"
        );
        let p = plan(conn, netconn, ["1.2.3.4"]);
        assert!(
            p.contains("events_netconn_remote"),
            "analyzed={analyzed}: {p}"
        );
    }
}

#[test]
fn a_migration_keeps_extending_the_systemd_start_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    // SAFETY: nextest runs every test in a process of its own, and nothing else in this one reads
    // the environment concurrently.
    unsafe { std::env::set_var("NOTIFY_SOCKET", &socket_path) };
    let path = dir.path().join("v3.db");
    {
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..3] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
    }
    drop(Writer::open(&path).unwrap());
    unsafe { std::env::remove_var("NOTIFY_SOCKET") };
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        messages.iter().any(|m| m.contains("EXTEND_TIMEOUT_USEC=")
            && m.contains("STATUS=migrating")
            && m.contains("schema version 4")),
        "{messages:?}"
    );
}

#[test]
fn duplicates_inside_a_multi_row_insert_leave_the_right_rows_in_the_right_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("m.db")).unwrap();
    let guids = [G1, G2, G3];
    let ev = |n: usize| event(&format!("s{n}"), guids[n % 3], 1_000 + n as i64, "a.exe");
    // 40 events, more than one statement's worth, then 40 more with every other one (and one
    // twice in a row) already stored.
    let first: Vec<Record> = (0..80).step_by(2).map(ev).collect();
    assert_eq!(w.write_batch(&first).unwrap().events, 40);
    let mut second: Vec<Record> = (0..80).map(ev).collect();
    second.insert(5, ev(5));
    let s = w.write_batch(&second).unwrap();
    assert_eq!((s.events, s.duplicates), (40, 41));

    let conn = w.connection();
    for (p, g) in guids.iter().enumerate() {
        let mut want: Vec<String> = (0..80)
            .step_by(2)
            .filter(|n| n % 3 == p)
            .map(|n| format!("s{n}"))
            .collect();
        want.extend(
            (1..80)
                .step_by(2)
                .filter(|n| n % 3 == p)
                .map(|n| format!("s{n}")),
        );
        assert_eq!(seeds_of(conn, g), want, "{g}");
    }
    // Every row is in exactly one segment, which covers nothing else.
    let orphans: i64 = conn
        .query_row(
            "SELECT count(*) FROM event_rows e WHERE NOT EXISTS (SELECT 1 FROM event_segments s \
             WHERE s.id = e.segment_id AND e.id BETWEEN s.first_id AND s.last_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    let foreign: i64 = conn
        .query_row(
            "SELECT count(*) FROM event_segments s JOIN event_rows e \
             ON e.id BETWEEN s.first_id AND s.last_id WHERE e.segment_id <> s.id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(foreign, 0);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 80);
    // One key per row, naming it; the second batch's rows took consecutive ids, duplicates none.
    let keys: (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(e.id) FROM event_keys k LEFT JOIN event_rows e \
             ON e.id = k.event_id AND e.timestamp_ms = k.timestamp_ms AND e.event_key = k.event_key",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(keys, (80, 80));
    let (lo, hi): (i64, i64) = conn
        .query_row("SELECT min(id), max(id) FROM event_rows", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((lo, hi), (1, 80));
}
