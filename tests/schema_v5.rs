//! Schema V5: the event keys move from the `events_time_key` index to the `event_keys` table, which
//! the writer fills in key order. The migration of existing keys, the view's triggers keeping the
//! table in step, and duplicates found through it after the migration.

mod treedb;

use cbtrail::model::{Event, EventType, Record, record_key};
use cbtrail::store::schema::{MIGRATIONS, SCHEMA_VERSION};
use cbtrail::store::{Writer, fingerprint};
use rusqlite::{Connection, params};
use serde_json::json;
use treedb::dump_events as dump;

const G1: &str = "00000007-0000-0b1c-01d9-1a2b3c4d5e6f";
const G2: &str = "00000007-0000-0c2d-01d9-2a2b3c4d5e6f";

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Keys that do not name a row with the same time and key, and rows without such a key.
fn mismatched_keys(conn: &Connection) -> (i64, i64) {
    (
        count(
            conn,
            "SELECT count(*) FROM event_keys k WHERE NOT EXISTS (SELECT 1 FROM event_rows e \
             WHERE e.id = k.event_id AND e.timestamp_ms = k.timestamp_ms \
             AND e.event_key = k.event_key)",
        ),
        count(
            conn,
            "SELECT count(*) FROM event_rows e WHERE NOT EXISTS (SELECT 1 FROM event_keys k \
             WHERE k.timestamp_ms = e.timestamp_ms AND k.event_key = e.event_key \
             AND k.event_id = e.id)",
        ),
    )
}

fn event(n: i64, guid: &str) -> Record {
    Record::Event(Box::new(Event {
        key: record_key(&[b"v5-event", &n.to_le_bytes()]),
        event_type: Some(EventType::Filemod),
        // Times out of id order, and two events in the same millisecond.
        timestamp_ms: 1_700_000_000_000 + (n * 7919) % 13,
        sensor_id: Some(7),
        hostname: Some("WKS-7".into()),
        process_guid: Some(guid.into()),
        pid: Some(4242),
        process_path: Some("a.exe".into()),
        path: Some(format!("c:\\temp\\{n}.txt")),
        action: Some("write".into()),
        details: json!({"n": n}).to_string(),
        ..Default::default()
    }))
}

#[test]
fn v5_moves_the_keys_out_of_the_index_without_changing_the_view() {
    assert_eq!(SCHEMA_VERSION, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let conn = Connection::open(&path).unwrap();
    for m in &MIGRATIONS[..4] {
        conn.execute_batch(m).unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
    // Through the V4 view, as a tool would have: one segment per row.
    for n in 0..20i64 {
        conn.execute(
            "INSERT INTO events (event_key, timestamp_ms, event_type, process_guid, sensor_id,
                 hostname, pid, process_path, path, details, received_ms)
             VALUES (?1, ?2, 'filemod', ?3, 7, 'WKS-7', 4, 'a.exe', 'x', json_object('n', ?4), 5)",
            params![
                record_key(&[b"v5-event", &n.to_le_bytes()]).as_slice(),
                1_700_000_000_000i64 + (n * 7919) % 13,
                if n % 2 == 0 { G1 } else { G2 },
                n
            ],
        )
        .unwrap();
    }
    let before = dump(&conn);
    let fp_before = fingerprint(&conn).unwrap();
    drop(conn);

    // The writer migrates the file.
    let mut w = Writer::open(&path).unwrap();
    let conn = w.connection();
    assert_eq!(dump(conn), before, "the view shows every row as before");
    assert_eq!(fingerprint(conn).unwrap(), fp_before);
    assert_eq!(count(conn, "SELECT count(*) FROM event_keys"), 20);
    assert_eq!(mismatched_keys(conn), (0, 0));
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM sqlite_schema WHERE name = 'events_time_key'"
        ),
        0
    );

    // The migrated keys still make a redelivery a duplicate; new events are added after them.
    let again: Vec<Record> = (0..25)
        .map(|n| event(n, if n % 2 == 0 { G1 } else { G2 }))
        .collect();
    let s = w.write_batch(&again).unwrap();
    assert_eq!((s.events, s.duplicates), (5, 20));
    let conn = w.connection();
    assert_eq!(count(conn, "SELECT count(*) FROM events"), 25);
    assert_eq!(mismatched_keys(conn), (0, 0));
}

#[test]
fn the_view_keeps_event_keys_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("t.db")).unwrap();
    let records: Vec<Record> = (0..10).map(|n| event(n, G1)).collect();
    w.write_batch(&records).unwrap();
    let conn = w.connection();

    // A duplicate key through the view is refused, as the unique index refused it.
    let dup = conn.execute(
        "INSERT INTO events (event_key, timestamp_ms, event_type, details)
         SELECT event_key, timestamp_ms, 'filemod', '{}' FROM events WHERE id = 3",
        [],
    );
    assert!(dup.is_err(), "a duplicate key was accepted");

    // Moving an event in time moves its key; deleting it deletes the key.
    conn.execute(
        "UPDATE events SET timestamp_ms = timestamp_ms + 86400000 WHERE id = 4",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM events WHERE id = 5", []).unwrap();
    conn.execute(
        "INSERT INTO events (event_key, timestamp_ms, event_type, details)
         VALUES (x'00112233445566778899aabbccddeeff', 42, 'filemod', '{}')",
        [],
    )
    .unwrap();
    assert_eq!(count(conn, "SELECT count(*) FROM event_keys"), 10);
    assert_eq!(mismatched_keys(conn), (0, 0));
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM events WHERE timestamp_ms BETWEEN 1700086400000 AND 1700086500000"
        ),
        1
    );
}
