//! Hand-built databases for tree, export, job and query tests: the schema from the migrations,
//! rows inserted with plain SQL the way the store fills them.
#![allow(dead_code)]

use cbtrail::store::schema::MIGRATIONS;
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};

/// SQLite's query plan for `sql`, its steps joined by ` | `.
pub fn plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt
        .query_map(params, |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    rows.join(" | ")
}

/// Every column of the `events` relation (table before schema 4, view since), in id order.
pub fn dump_events(conn: &Connection) -> Vec<Vec<rusqlite::types::Value>> {
    let mut stmt = conn.prepare("SELECT * FROM events ORDER BY id").unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A migrated database file in `dir`, in WAL mode like the daemon's.
pub fn fresh_db(dir: &Path) -> (PathBuf, Connection) {
    let path = dir.join("cbtrail.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for (i, m) in MIGRATIONS.iter().enumerate() {
        conn.execute_batch(m).unwrap();
        conn.pragma_update(None, "user_version", (i + 1) as i64)
            .unwrap();
    }
    (path, conn)
}

/// The forwarder's GUID layout: sensor, pid, raw FILETIME.
pub fn guid(sensor: u32, pid: u32, filetime: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:04x}{:08x}",
        sensor,
        pid >> 16,
        pid & 0xffff,
        (filetime >> 48) as u16,
        ((filetime >> 32) & 0xffff) as u16,
        filetime as u32
    )
}

/// FILETIME of a Unix millisecond time.
pub fn filetime(ms: i64) -> u64 {
    ((ms + 11_644_473_600_000) * 10_000) as u64
}

/// Base time of the fixtures: 2015-11-16T18:14:28.819Z.
pub const T0: i64 = 1_447_697_668_819;

/// A process row.
#[derive(Debug, Clone, Default)]
pub struct P {
    pub guid: String,
    pub parent: Option<String>,
    pub sensor: i64,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub path: Option<String>,
    pub cmdline: Option<String>,
    pub user: Option<String>,
    pub start_ms: Option<i64>,
    pub inferred: bool,
}

impl P {
    /// A process on `sensor`/`host` with a GUID made from pid and start time.
    pub fn new(sensor: u32, host: &str, pid: u32, start_ms: i64, path: &str) -> P {
        P {
            guid: guid(sensor, pid, filetime(start_ms)),
            sensor: i64::from(sensor),
            host: Some(host.to_string()),
            pid: Some(i64::from(pid)),
            path: Some(path.to_string()),
            cmdline: Some(format!("\"{path}\"")),
            start_ms: Some(start_ms),
            ..P::default()
        }
    }

    pub fn child_of(mut self, parent: &P) -> P {
        self.parent = Some(parent.guid.clone());
        self
    }

    pub fn inferred(mut self) -> P {
        self.inferred = true;
        self.cmdline = None;
        self
    }
}

pub fn insert_process(conn: &Connection, p: &P) {
    conn.execute(
        "INSERT INTO processes (guid, parent_guid, sensor_id, hostname, pid, path, cmdline, username,
             start_ms, inferred, fact_rank, first_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            p.guid,
            p.parent,
            p.sensor,
            p.host,
            p.pid,
            p.path,
            p.cmdline,
            p.user,
            p.start_ms,
            p.inferred as i64,
            if p.inferred { 0 } else { 3 },
            p.start_ms.unwrap_or(0)
        ],
    )
    .unwrap();
}

/// Insert many `(guid, parent)` rows on one sensor quickly (scale tests).
pub fn insert_edges(
    conn: &mut Connection,
    sensor: i64,
    host: &str,
    edges: &[(String, Option<String>)],
) {
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO processes (guid, parent_guid, sensor_id, hostname, pid, path, cmdline,
                     start_ms, inferred, first_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, 0)",
            )
            .unwrap();
        for (i, (g, p)) in edges.iter().enumerate() {
            stmt.execute(params![
                g,
                p,
                sensor,
                host,
                i as i64,
                format!("c:\\bin\\p{i}.exe"),
                format!("p{i}.exe --n {i}"),
                T0 + i as i64
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// An event row; fill the typed columns you need.
#[derive(Debug, Clone, Default)]
pub struct E {
    pub guid: String,
    pub ts: i64,
    pub kind: String,
    pub path: Option<String>,
    pub action: Option<String>,
    pub md5: Option<String>,
    pub target_guid: Option<String>,
    pub remote_ip: Option<String>,
    pub remote_port: Option<i64>,
    pub local_ip: Option<String>,
    pub local_port: Option<i64>,
    pub protocol: Option<String>,
    pub direction: Option<String>,
    pub domain: Option<String>,
    pub command_line: Option<String>,
    pub username: Option<String>,
    pub details: String,
}

impl E {
    pub fn new(guid: &str, ts: i64, kind: &str) -> E {
        E {
            guid: guid.to_string(),
            ts,
            kind: kind.to_string(),
            details: "{}".to_string(),
            ..E::default()
        }
    }
}

static EVENT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Insert an event; returns its id.
pub fn insert_event(conn: &Connection, e: &E) -> i64 {
    let seq = EVENT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = cbtrail::model::record_key(&[e.guid.as_bytes(), &seq.to_le_bytes()]);
    conn.execute(
        "INSERT INTO events (event_key, process_guid, timestamp_ms, event_type, sensor_id, hostname,
             pid, process_path, path, md5, action, target_guid, remote_ip, remote_port, local_ip,
             local_port, protocol, direction, domain, command_line, username, details, received_ms)
         SELECT ?1, ?2, ?3, ?4, p.sensor_id, p.hostname, p.pid, p.path, ?5, ?6, ?7, ?8, ?9, ?10,
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?3
         FROM (SELECT 1) LEFT JOIN processes p ON p.guid = ?2",
        params![
            key.as_slice(),
            e.guid,
            e.ts,
            e.kind,
            e.path,
            e.md5,
            e.action,
            e.target_guid,
            e.remote_ip,
            e.remote_port,
            e.local_ip,
            e.local_port,
            e.protocol,
            e.direction,
            e.domain,
            e.command_line,
            e.username,
            e.details
        ],
    )
    .unwrap();
    // `last_insert_rowid` does not see inserts made by the view's INSTEAD OF trigger; before V4
    // (migration tests) `events` is the table itself.
    let v4: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE name = 'event_rows'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let table = if v4 { "event_rows" } else { "events" };
    conn.query_row(&format!("SELECT max(id) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// A watchlist hit notification on `guids` (as the decoder builds it), stored; returns its id and
/// the model record.
pub fn hit_notification(guids: &[&str], received_ms: i64) -> cbtrail::model::Notification {
    use cbtrail::model::{Notification, NotificationTarget, record_key};
    let docs: Vec<serde_json::Value> = guids
        .iter()
        .map(|g| serde_json::json!({"unique_id": format!("{g}-00000001"), "process_name": "x.exe"}))
        .collect();
    let json = serde_json::json!({
        "watchlist_id": 2,
        "watchlist_name": "Non-System Filemods to system32",
        "docs": docs,
        "event_timestamp": received_ms as f64 / 1000.0,
    })
    .to_string();
    Notification {
        key: record_key(&[json.as_bytes(), &received_ms.to_le_bytes()]),
        routing_key: "watchlist.2.hit.process".into(),
        kind: "watchlist.hit.process".into(),
        watchlist_id: Some(2),
        watchlist_name: Some("Non-System Filemods to system32".into()),
        timestamp_ms: Some(received_ms),
        process_guid: guids.first().map(|g| g.to_string()),
        segment: Some("00000001".into()),
        targets: guids
            .iter()
            .map(|g| NotificationTarget {
                process_guid: Some(g.to_string()),
                segment: Some("00000001".into()),
                ..NotificationTarget::default()
            })
            .collect(),
        json,
        ..Notification::default()
    }
}

/// Store a notification row (the part of the store writer's work these tests need).
pub fn store_notification(
    conn: &Connection,
    n: &cbtrail::model::Notification,
    received_ms: i64,
) -> i64 {
    conn.execute(
        "INSERT INTO notifications (notification_key, routing_key, type, watchlist_id, watchlist_name,
             timestamp_ms, process_guid, segment, json, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            n.key.as_slice(),
            n.routing_key,
            n.kind,
            n.watchlist_id,
            n.watchlist_name,
            n.timestamp_ms,
            n.process_guid,
            n.segment,
            n.json,
            received_ms
        ],
    )
    .unwrap();
    conn.last_insert_rowid()
}

/// The processes of the hand-built investigation case.
pub struct Case {
    pub explorer: P,
    pub cmd: P,
    pub ps: P,
    pub net: P,
    pub conhost: P,
    pub whoami: P,
}

/// A small, realistic investigation on sensor 7 (`WIN-OTEMNUTBS23`):
///
/// ```text
/// explorer.exe (inferred)
/// └── cmd.exe
///     └── powershell.exe  <- the hit
///         ├── net.exe
///         │   └── conhost.exe
///         └── whoami.exe
/// ```
/// with events whose values need CSV quoting (commas, quotes, newlines) and summary quoting.
pub fn build_case(conn: &Connection) -> Case {
    let host = "WIN-OTEMNUTBS23";
    let explorer = P::new(7, host, 2804, T0 - 86_400_000, "c:\\windows\\explorer.exe").inferred();
    let mut cmd = P::new(7, host, 4040, T0, "c:\\windows\\system32\\cmd.exe").child_of(&explorer);
    cmd.cmdline = Some("cmd.exe /c \"run.bat\"".into());
    cmd.user = Some("WIN-OTEMNUTBS23\\Administrator".into());
    let mut ps = P::new(
        7,
        host,
        4052,
        T0 + 1_000,
        "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
    )
    .child_of(&cmd);
    ps.cmdline = Some("powershell.exe -nop -enc SQBFAFgA,\"x\"".into());
    ps.user = cmd.user.clone();
    let mut net = P::new(7, host, 4100, T0 + 2_000, "c:\\windows\\system32\\net.exe").child_of(&ps);
    net.cmdline = Some("net.exe user /domain".into());
    let conhost = P::new(
        7,
        host,
        4104,
        T0 + 2_010,
        "c:\\windows\\system32\\conhost.exe",
    )
    .child_of(&net);
    let mut whoami = P::new(
        7,
        host,
        4200,
        T0 + 3_000,
        "c:\\windows\\system32\\whoami.exe",
    )
    .child_of(&ps);
    whoami.cmdline = Some("whoami /all".into());
    for p in [&explorer, &cmd, &ps, &net, &conhost, &whoami] {
        insert_process(conn, p);
    }

    let mut e = E::new(&cmd.guid, T0 + 900, "childproc");
    e.action = Some("start".into());
    e.path = ps.path.clone();
    e.command_line = ps.cmdline.clone();
    e.target_guid = Some(ps.guid.clone());
    insert_event(conn, &e);

    let mut e = E::new(&ps.guid, T0 + 1_000, "procstart");
    e.path = ps.path.clone();
    e.command_line = ps.cmdline.clone();
    e.username = ps.user.clone();
    e.md5 = Some("097CE5761C89434367598B34FE32893B".into());
    e.details =
        r#"{"parent_pid": 4040, "uid": "S-1-5-21-1", "filtering_known_dlls": false}"#.into();
    insert_event(conn, &e);

    let mut e = E::new(&ps.guid, T0 + 1_100, "modload");
    e.path = Some("c:\\windows\\system32\\amsi.dll".into());
    e.md5 = Some("D6021013D7C4E248AEB8BED12D3DCC88".into());
    insert_event(conn, &e);

    let mut e = E::new(&ps.guid, T0 + 1_200, "filemod");
    e.action = Some("lastwrite".into());
    e.path = Some("c:\\users\\administrator\\appdata\\local\\temp\\a, b.ps1".into());
    e.md5 = Some("445C3E95C8CB05403AEDAEC3BAAA3A1D".into());
    e.details = r#"{"file_type": 0, "tamper": false, "note": "line one\nline \"two\""}"#.into();
    insert_event(conn, &e);

    let mut e = E::new(&ps.guid, T0 + 1_300, "regmod");
    e.action = Some("writeval".into());
    e.path = Some(
        "\\registry\\user\\s-1-5-21-1\\software\\microsoft\\windows\\currentversion\\run\\updater"
            .into(),
    );
    insert_event(conn, &e);

    let mut e = E::new(&ps.guid, T0 + 1_400, "netconn");
    e.direction = Some("outbound".into());
    e.protocol = Some("tcp".into());
    e.local_ip = Some("172.31.30.0".into());
    e.local_port = Some(49352);
    e.remote_ip = Some("23.4.187.27".into());
    e.remote_port = Some(80);
    e.domain = Some("evil.example.com".into());
    insert_event(conn, &e);

    let mut e = E::new(&ps.guid, T0 + 1_500, "crossproc");
    e.action = Some("open_process".into());
    e.path = Some("c:\\windows\\system32\\lsass.exe".into());
    e.target_guid = Some(guid(7, 600, filetime(T0 - 86_400_000)));
    e.details = r#"{"requested_access": 2097151, "is_target": false}"#.into();
    insert_event(conn, &e);

    for (child, ts) in [(&net, T0 + 2_000), (&whoami, T0 + 3_000)] {
        let mut e = E::new(&ps.guid, ts, "childproc");
        e.action = Some("start".into());
        e.path = child.path.clone();
        e.command_line = child.cmdline.clone();
        e.target_guid = Some(child.guid.clone());
        insert_event(conn, &e);
        let mut e = E::new(&child.guid, ts, "procstart");
        e.path = child.path.clone();
        e.command_line = child.cmdline.clone();
        insert_event(conn, &e);
    }
    let mut e = E::new(&net.guid, T0 + 2_010, "childproc");
    e.action = Some("start".into());
    e.path = conhost.path.clone();
    e.target_guid = Some(conhost.guid.clone());
    insert_event(conn, &e);
    let mut e = E::new(&whoami.guid, T0 + 3_500, "procend");
    insert_event(conn, &e);
    e.ts = 0;
    e.kind = "header".into();
    insert_event(conn, &e);

    Case {
        explorer,
        cmd,
        ps,
        net,
        conhost,
        whoami,
    }
}

/// Compare `actual` with the golden file `tests/golden/<name>`; `CBTRAIL_BLESS=1` rewrites it.
/// Like [`golden`] for output derived from the real captures, which may not be committed: the
/// repository keeps only the output's length and xxh3-128 digest (`NAME.digest`). On a mismatch the
/// actual output is written under `target/golden-actual/` for inspection.
pub fn golden_digest(name: &str, actual: &[u8]) {
    let line = format!(
        "{} {:032x}\n",
        actual.len(),
        xxhash_rust::xxh3::xxh3_128(actual)
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.digest"));
    if std::env::var_os("CBTRAIL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &line).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with CBTRAIL_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != line {
        let keep = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/golden-actual")
            .join(name);
        std::fs::create_dir_all(keep.parent().unwrap()).unwrap();
        std::fs::write(&keep, actual).unwrap();
        panic!(
            "{name} differs from its golden digest {} (expected {}, got {}); the output is in {} \
             (CBTRAIL_BLESS=1 records the new digest)",
            path.display(),
            expected.trim(),
            line.trim(),
            keep.display()
        );
    }
}

pub fn golden(name: &str, actual: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("CBTRAIL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with CBTRAIL_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output (CBTRAIL_BLESS=1 rewrites it):\n--- expected\n{}\n--- actual\n{}",
        path.display(),
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}
