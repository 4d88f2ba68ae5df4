//! Tree query timings on a big host, and the access strategies they were chosen from.
//!
//! ```text
//! cargo run --release --example tree_bench -- [--processes N] [--db FILE] [--runs R]
//! ```
//!
//! Builds (or reuses, with `--db`) a database holding one host with N processes (default 100,000):
//! a services.exe with a wide fan-out, user sessions with command chains, a 2,000-level chain,
//! inferred parents, and 20 events for each process of one investigated subtree. Then times every
//! tree query cbtrail offers, and four ways of finding descendants (one indexed query per
//! generation, as `cbtrail::tree` does; one per process; a recursive CTE; a host adjacency built
//! in memory first), printing the best and median of R runs (default 7) in milliseconds.

use cbtrail::export::{self, ExportOptions, ExportRequest};
use cbtrail::store::schema::MIGRATIONS;
use cbtrail::tree::{self, Host, ProcessTree};
use rusqlite::{Connection, params};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

const SENSOR: u32 = 1;
const T0: i64 = 1_447_697_668_819;

fn guid(pid: u32, ms: i64) -> String {
    let ft = ((ms + 11_644_473_600_000) * 10_000) as u64;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:04x}{:08x}",
        SENSOR,
        pid >> 16,
        pid & 0xffff,
        (ft >> 48) as u16,
        ((ft >> 32) & 0xffff) as u16,
        ft as u32
    )
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

struct Shape {
    services: String,
    hit: String,
    deepest: String,
    top: String,
}

fn build(conn: &mut Connection, n: usize) -> Shape {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        conn.execute_batch(m).unwrap();
        conn.pragma_update(None, "user_version", (i + 1) as i64)
            .unwrap();
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rows: Vec<(String, Option<String>, bool, String)> = Vec::with_capacity(n);
    let push = |rows: &mut Vec<_>, parent: Option<String>, inferred: bool, path: &str| {
        let i = rows.len() as u32;
        let g = guid(4 + i * 4, T0 + i64::from(i) * 10);
        rows.push((g.clone(), parent, inferred, path.to_string()));
        g
    };
    let system = push(&mut rows, None, true, "system");
    let wininit = push(
        &mut rows,
        Some(system.clone()),
        false,
        "c:\\windows\\system32\\wininit.exe",
    );
    let services = push(
        &mut rows,
        Some(wininit),
        false,
        "c:\\windows\\system32\\services.exe",
    );
    // A 2,000-level chain (pathological, e.g. PID-reuse mis-linking upstream).
    let mut deepest = services.clone();
    for _ in 0..2_000 {
        deepest = push(&mut rows, Some(deepest), false, "c:\\chain\\link.exe");
    }
    // The investigated subtree: a user's explorer → cmd → powershell (the hit) → 12 descendants.
    let explorer = push(&mut rows, None, true, "c:\\windows\\explorer.exe");
    let cmd = push(
        &mut rows,
        Some(explorer.clone()),
        false,
        "c:\\windows\\system32\\cmd.exe",
    );
    let hit = push(
        &mut rows,
        Some(cmd),
        false,
        "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
    );
    let mut level = vec![hit.clone()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for p in &level {
            for _ in 0..2 {
                next.push(push(&mut rows, Some(p.clone()), false, "c:\\tools\\t.exe"));
            }
        }
        level = next;
    }
    while rows.len() < n {
        let parent = match rng.below(100) {
            0..=24 => Some(services.clone()),
            25..=27 => None,
            28..=34 => Some(explorer.clone()),
            _ => {
                let back = 1 + rng.below(50) as usize;
                Some(rows[rows.len().saturating_sub(back)].0.clone())
            }
        };
        let inferred = parent.is_none();
        push(
            &mut rows,
            parent,
            inferred,
            "c:\\windows\\system32\\svchost.exe",
        );
    }
    let tx = conn.transaction().unwrap();
    {
        let mut p = tx
            .prepare(
                "INSERT INTO processes (guid, parent_guid, sensor_id, hostname, pid, path, cmdline,
                     username, start_ms, inferred, fact_rank, first_seen_ms)
                 VALUES (?1, ?2, ?3, 'BIG-HOST', ?4, ?5, ?6, 'NT AUTHORITY\\SYSTEM', ?7, ?8, 3, ?7)",
            )
            .unwrap();
        for (i, (g, parent, inferred, path)) in rows.iter().enumerate() {
            p.execute(params![
                g,
                parent,
                SENSOR,
                4 + i as i64 * 4,
                path,
                format!("{path} -k netsvcs -p -s Service{i}"),
                T0 + i as i64 * 10,
                *inferred as i64
            ])
            .unwrap();
        }
        let mut e = tx
            .prepare(
                "INSERT INTO events (event_key, process_guid, timestamp_ms, event_type, path, action,
                     details, received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'lastwrite', '{\"file_type\":0}', ?3)",
            )
            .unwrap();
        let mut k = 0u64;
        let sub = tree::descendants(&tx, &hit, None).unwrap();
        for g in std::iter::once(hit.clone()).chain(sub.into_iter().map(|d| d.process.guid)) {
            for j in 0..20 {
                k += 1;
                e.execute(params![
                    k.to_le_bytes().as_slice(),
                    g,
                    T0 + j,
                    if j % 2 == 0 { "filemod" } else { "modload" },
                    format!("c:\\users\\u\\file{j}.dat")
                ])
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    Shape {
        services,
        hit,
        deepest,
        top: system,
    }
}

fn time<T>(label: &str, runs: usize, mut f: impl FnMut() -> T, describe: impl Fn(&T) -> String) {
    let mut ms: Vec<f64> = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        last = Some(v);
    }
    ms.sort_by(f64::total_cmp);
    let what = last.as_ref().map(&describe).unwrap_or_default();
    println!(
        "{label:<52} best {:>9.3} ms   median {:>9.3} ms   {what}",
        ms[0],
        ms[ms.len() / 2]
    );
}

fn cte_descendants(conn: &Connection, g: &str, max: u32) -> usize {
    let mut stmt = conn
        .prepare_cached(
            "WITH RECURSIVE d(guid, lvl) AS (
                 SELECT ?1, 0
                 UNION
                 SELECT p.guid, d.lvl + 1 FROM processes p JOIN d ON p.parent_guid = d.guid
                 WHERE d.lvl < ?2)
             SELECT p.guid, p.path, p.cmdline, d.lvl FROM d JOIN processes p ON p.guid = d.guid",
        )
        .unwrap();
    let rows = stmt
        .query_map(params![g, max], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap();
    rows.count() - 1
}

fn per_process_descendants(conn: &Connection, g: &str) -> usize {
    let mut seen = std::collections::HashSet::from([g.to_string()]);
    let mut q = VecDeque::from([g.to_string()]);
    while let Some(x) = q.pop_front() {
        for c in tree::children(conn, &x).unwrap() {
            if seen.insert(c.guid.clone()) {
                q.push_back(c.guid);
            }
        }
    }
    seen.len() - 1
}

fn memory_descendants(conn: &Connection, g: &str) -> usize {
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT guid, parent_guid FROM processes WHERE guid >= ?1 AND guid < ?2")
        .unwrap();
    let rows = stmt
        .query_map(
            params![format!("{SENSOR:08x}-"), format!("{SENSOR:08x}.")],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
        )
        .unwrap();
    for r in rows {
        let (c, p) = r.unwrap();
        if let Some(p) = p {
            children.entry(p).or_default().push(c);
        }
    }
    let mut seen = std::collections::HashSet::from([g.to_string()]);
    let mut q = VecDeque::from([g.to_string()]);
    while let Some(x) = q.pop_front() {
        for c in children.get(&x).into_iter().flatten() {
            if seen.insert(c.clone()) {
                q.push_back(c.clone());
            }
        }
    }
    seen.len() - 1
}

fn main() {
    let mut n = 100_000usize;
    let mut runs = 7usize;
    let mut db: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--processes" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--processes N")
            }
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs R"),
            "--db" => db = args.next().map(PathBuf::from),
            other => {
                eprintln!(
                    "unknown argument {other}; usage: tree_bench [--processes N] [--db FILE] [--runs R]"
                );
                std::process::exit(2);
            }
        }
    }
    let tmp = std::env::temp_dir().join(format!("cbtrail-tree-bench-{}", std::process::id()));
    let path = db.clone().unwrap_or_else(|| tmp.clone());
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    let mut conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    let shape = build(&mut conn, n);
    println!(
        "built {n} processes on one host in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        path.display()
    );
    drop(conn);
    let conn =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let host = Host::Name("BIG-HOST".into());

    println!("-- tree queries (cbtrail::tree)");
    time(
        "process row",
        runs,
        || tree::process(&conn, &shape.hit).unwrap(),
        |p| format!("{}", p.is_some()),
    );
    time(
        "children of the hit",
        runs,
        || tree::children(&conn, &shape.hit).unwrap(),
        |v| format!("{} children", v.len()),
    );
    time(
        "siblings of a svchost (wide parent)",
        runs,
        || {
            let c = tree::children(&conn, &shape.services).unwrap();
            tree::siblings(&conn, &c[c.len() / 2].guid).unwrap()
        },
        |v| format!("{} siblings", v.len()),
    );
    time(
        "ancestors of the hit",
        runs,
        || tree::ancestors(&conn, &shape.hit).unwrap(),
        |a| format!("{} ancestors", a.chain.len()),
    );
    time(
        "ancestors of the 2,000-deep leaf",
        runs,
        || tree::ancestors(&conn, &shape.deepest).unwrap(),
        |a| format!("{} ancestors", a.chain.len()),
    );
    time(
        "depth of the 2,000-deep leaf",
        runs,
        || tree::depth(&conn, &shape.deepest).unwrap(),
        |d| format!("depth {d}"),
    );
    time(
        "tree around the hit (all descendants)",
        runs,
        || ProcessTree::build(&conn, &shape.hit, None).unwrap(),
        |t| format!("{} nodes", t.nodes.len()),
    );
    time(
        "descendants of services.exe, 1 level",
        runs,
        || tree::descendants(&conn, &shape.services, Some(1)).unwrap(),
        |v| format!("{} processes", v.len()),
    );
    time(
        "tree statistics of the hit's tree",
        runs,
        || tree::tree_stats(&conn, &shape.hit).unwrap(),
        |s| format!("{} processes, depth {}", s.processes, s.largest_tree_depth),
    );
    time(
        "roots of the host",
        runs,
        || tree::roots_of_host(&conn, &host).unwrap(),
        |v| format!("{} roots", v.len()),
    );
    time(
        "host statistics",
        runs,
        || tree::host_stats(&conn, &host).unwrap(),
        |s| format!("{s:?}"),
    );
    time(
        "tree statistics of the biggest tree",
        runs,
        || tree::tree_stats(&conn, &shape.services).unwrap(),
        |s| format!("{} processes", s.processes),
    );

    println!(
        "-- descendants: one query per generation vs per process vs recursive CTE vs host in memory"
    );
    for (label, g) in [("the hit", &shape.hit), ("the biggest tree", &shape.top)] {
        time(
            &format!("per generation (cbtrail): {label}"),
            runs,
            || tree::descendants(&conn, g, None).unwrap().len(),
            |n| format!("{n} processes"),
        );
        time(
            &format!("per process:              {label}"),
            runs,
            || per_process_descendants(&conn, g),
            |n| format!("{n} processes"),
        );
        time(
            &format!("recursive CTE:            {label}"),
            runs,
            || cte_descendants(&conn, g, 100_000),
            |n| format!("{n} processes"),
        );
        time(
            &format!("host in memory:           {label}"),
            runs,
            || memory_descendants(&conn, g),
            |n| format!("{n} processes"),
        );
    }

    println!("-- export of the hit (ancestors, descendants, 20 events each)");
    let out = std::env::temp_dir().join(format!("cbtrail-tree-bench-out-{}", std::process::id()));
    let req = ExportRequest {
        guid: shape.hit.clone(),
        ..ExportRequest::default()
    };
    time(
        "export_process",
        runs,
        || export::export_process(&conn, &req, &out, &ExportOptions::default()).unwrap(),
        |r| format!("{} processes, {} events", r.processes, r.events),
    );
    let _ = std::fs::remove_dir_all(&out);
    drop(conn);
    if db.is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
        }
    }
}
