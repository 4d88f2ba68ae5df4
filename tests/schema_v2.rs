//! Migrations V2 (export jobs, `netconn_view`), V3 (its partial indexes rewritten) and V4 (events
//! in segments), applied on top of a V1 database with data, and the query plans the tree and view
//! queries rely on.

mod treedb;

use cbtrail::store::schema::{MIGRATIONS, SCHEMA_VERSION};
use rusqlite::Connection;
use treedb::*;

#[test]
fn v2_applies_over_a_v1_database_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("v1.db")).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    let p = P::new(7, "H", 1, T0, "c:\\a.exe");
    insert_process(&conn, &p);
    let mut e = E::new(&p.guid, T0, "netconn");
    e.remote_ip = Some("10.1.2.3".into());
    insert_event(&conn, &e);
    for m in &MIGRATIONS[1..] {
        conn.execute_batch(m).unwrap();
    }
    assert_eq!(SCHEMA_VERSION, 5);
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM netconn_view WHERE remote_ip = '10.1.2.3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

type ViewRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

#[test]
fn netconn_view_joins_each_connection_to_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    // A connection of a process the database has no row for keeps the event's own fields.
    let mut e = E::new(&guid(7, 9999, filetime(T0)), T0 + 7_000, "netconnblocked");
    e.remote_ip = Some("198.51.100.7".into());
    e.direction = Some("outbound".into());
    insert_event(&conn, &e);
    let rows: Vec<ViewRow> = conn
        .prepare(
            "SELECT time_utc, event_type, process_path, process_cmdline, process_username, remote_ip, domain
             FROM netconn_view ORDER BY timestamp_ms",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2, "only network events");
    assert_eq!(
        rows[0],
        (
            "2015-11-16T18:14:30.219Z".to_string(),
            "netconn".to_string(),
            case.ps.path.clone(),
            case.ps.cmdline.clone(),
            case.ps.user.clone(),
            "23.4.187.27".to_string(),
            Some("evil.example.com".to_string())
        )
    );
    assert_eq!(rows[1].1, "netconnblocked");
    assert_eq!(rows[1].2, None);
    assert_eq!(rows[1].5, "198.51.100.7");
}

#[test]
fn queries_use_the_indexes_they_were_designed_for() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    build_case(&conn);
    conn.execute_batch("ANALYZE").unwrap();
    let p = plan(
        &conn,
        "SELECT * FROM netconn_view WHERE remote_ip = ?1",
        ["1.2.3.4"],
    );
    assert!(p.contains("events_netconn_remote"), "{p}");
    let p = plan(
        &conn,
        "SELECT * FROM netconn_view WHERE timestamp_ms BETWEEN ?1 AND ?2",
        [0, 1],
    );
    assert!(p.contains("events_netconn_time"), "{p}");
    // As docs/exports.md tells analysts querying `events` directly.
    let p = plan(
        &conn,
        "SELECT * FROM events WHERE (event_type = 'netconn' OR event_type = 'netconnblocked' \
         OR event_type = 'netconnblockedv2') AND remote_ip = ?1",
        ["1.2.3.4"],
    );
    assert!(p.contains("events_netconn_remote"), "{p}");
    let p = plan(
        &conn,
        "SELECT guid FROM processes WHERE parent_guid IN (SELECT value FROM json_each(?1)) AND guid <> parent_guid",
        ["[\"x\"]"],
    );
    assert!(p.contains("processes_parent"), "{p}");
    let p = plan(
        &conn,
        "SELECT guid, parent_guid FROM processes WHERE guid >= ?1 AND guid < ?2",
        ["a", "b"],
    );
    assert!(
        p.contains("PRIMARY KEY") || p.contains("sqlite_autoindex_processes"),
        "{p}"
    );
    let p = plan(
        &conn,
        "SELECT id FROM export_jobs WHERE state = 'pending' AND due_ms <= ?1 ORDER BY due_ms, id LIMIT 1",
        [0],
    );
    assert!(p.contains("export_jobs_state"), "{p}");
    let p = plan(
        &conn,
        "SELECT id FROM export_jobs WHERE process_guid = ?1 AND created_ms >= ?2 ORDER BY created_ms DESC, id DESC LIMIT 1",
        rusqlite::params!["g", 0],
    );
    assert!(p.contains("export_jobs_process"), "{p}");
}
