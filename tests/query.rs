//! The command-line verbs, parsed with clap as `main.rs` will, run against hand-built databases.

mod treedb;

use cbtrail::query::{self, QueryCommand, QueryError};
use clap::Parser;
use serde_json::Value;
use std::path::Path;
use treedb::*;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: QueryCommand,
}

fn parse(args: &[&str]) -> Result<QueryCommand, clap::Error> {
    Cli::try_parse_from(std::iter::once("cbtrail").chain(args.iter().copied())).map(|c| c.cmd)
}

fn run(args: &[&str]) -> Result<String, QueryError> {
    let cmd = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    query::run(&cmd, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn setup() -> (tempfile::TempDir, String, Case) {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    (dir, db.to_string_lossy().into_owned(), case)
}

#[test]
fn tree_text_and_json() {
    let (_dir, db, case) = setup();
    let with_segment = format!("{}-00000001", case.ps.guid.to_uppercase());
    let text = run(&["tree", &with_segment, "--db", &db]).unwrap();
    golden_digest("query/tree.txt", text.as_bytes());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "------ Process Execution Tree ------");
    assert!(lines[1..].iter().all(|l| l.contains("  | ")));
    let hit: Vec<&&str> = lines.iter().filter(|l| l.starts_with('*')).collect();
    assert_eq!(hit.len(), 1);
    assert!(hit[0].ends_with(&format!("| {}", case.ps.guid)));

    let shallow = run(&["tree", &case.ps.guid, "--depth", "1", "--db", &db]).unwrap();
    assert_eq!(
        shallow.lines().count(),
        1 + 3 + 2 + 1,
        "ancestors, the hit, children only, a note"
    );
    assert!(!shallow.contains(&case.conhost.guid));
    assert!(shallow.ends_with("(1 child processes of the deepest generation shown are not listed: 1 generation(s) below the marked process were asked for)\n"), "{shallow}");
    let deep = run(&["tree", &case.ps.guid, "--depth", "2", "--db", &db]).unwrap();
    assert!(!deep.contains("not listed"), "nothing was cut: {deep}");

    let json: Value = serde_json::from_str(
        &run(&["tree", &case.ps.guid, "--format", "json", "--db", &db]).unwrap(),
    )
    .unwrap();
    assert_eq!(json["guid"], case.explorer.guid.as_str());
    assert_eq!(json["children"][0]["children"][0]["hit"], true);
}

#[test]
fn ancestry_text_and_json() {
    let (_dir, db, case) = setup();
    let text = run(&["ancestry", &case.conhost.guid, "--db", &db]).unwrap();
    golden_digest("query/ancestry.txt", text.as_bytes());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 5);
    assert!(
        lines[1].starts_with("  2015-11-16 18:14:30.829 UTC:  "),
        "{}",
        lines[1]
    );
    assert!(lines[5].contains("(inferred) c:\\windows\\explorer.exe"));
    let json: Value = serde_json::from_str(
        &run(&[
            "ancestry",
            &case.conhost.guid,
            "--format",
            "json",
            "--db",
            &db,
        ])
        .unwrap(),
    )
    .unwrap();
    let chain = json["ancestry"].as_array().unwrap();
    assert_eq!(chain.len(), 5);
    assert_eq!(chain[4]["guid"], case.explorer.guid.as_str());
    assert_eq!(chain[4]["generations_up"], 4);
    assert_eq!(json["end"]["kind"], "root");
}

#[test]
fn events_csv_json_and_type_filter() {
    let (_dir, db, case) = setup();
    let csv = run(&["events", &case.ps.guid, "--db", &db]).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8);
    assert!(csv.starts_with(
        "event_timestamp,event_type,event_description,summary,details,process_guid\r\n"
    ));
    let some = run(&[
        "events",
        &case.ps.guid,
        "--type",
        "netconn",
        "--type",
        "filemod",
        "--db",
        &db,
    ])
    .unwrap();
    let kinds: Vec<&str> = some
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(kinds, vec!["filemod", "netconn"], "oldest first");
    let json: Value = serde_json::from_str(
        &run(&["events", &case.ps.guid, "--format", "json", "--db", &db]).unwrap(),
    )
    .unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 8);
    assert_eq!(arr[0]["event_type"], "procstart");
    assert_eq!(arr[0]["details"]["uid"], "S-1-5-21-1");
    let empty: Value = serde_json::from_str(
        &run(&[
            "events",
            &case.conhost.guid,
            "--format",
            "json",
            "--db",
            &db,
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(empty, Value::Array(vec![]));
    let err = run(&["events", &case.ps.guid, "--type", "netconns", "--db", &db]).unwrap_err();
    assert!(matches!(err, QueryError::BadOption(_)));
    assert!(
        err.to_string().contains("unknown event type \"netconns\""),
        "{err}"
    );
    assert!(
        err.to_string().contains("netconn"),
        "lists the known types: {err}"
    );
}

#[test]
fn export_verb() {
    let (dir, db, case) = setup();
    let out = dir.path().join("manual");
    let outs = out.to_string_lossy().into_owned();
    let msg = run(&[
        "export",
        &case.ps.guid,
        "--out",
        &outs,
        "--follow-childprocs",
        "1",
        "--db",
        &db,
    ])
    .unwrap();
    assert!(
        msg.starts_with("exported 5 processes, 14 events to "),
        "{msg}"
    );
    assert!(out.join("tree.json").is_file());
    assert!(
        !out.join("trigger.json").exists(),
        "a manual export has no trigger"
    );
    let err = run(&["export", &case.ps.guid, "--out", &outs, "--db", &db]).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let msg = run(&[
        "export",
        &case.ps.guid,
        "--out",
        &outs,
        "--force",
        "--db",
        &db,
    ])
    .unwrap();
    assert!(msg.starts_with("exported 6 processes"), "{msg}");

    // --force never replaces something that is not an export.
    let precious = dir.path().join("home");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep").unwrap();
    let err = run(&[
        "export",
        &case.ps.guid,
        "--out",
        &precious.to_string_lossy(),
        "--force",
        "--db",
        &db,
    ])
    .unwrap_err();
    assert!(err.to_string().contains("refusing to replace"), "{err}");
    assert!(precious.join("notes.txt").is_file());

    let err = run(&[
        "export",
        &case.ps.guid,
        "--out",
        &dir.path().join("x").to_string_lossy(),
        "--file-pattern",
        "{level}.csv",
        "--db",
        &db,
    ])
    .unwrap_err();
    assert!(err.to_string().contains("{guid}"), "{err}");
}

#[test]
fn stats_for_a_tree_a_host_and_everything() {
    let (_dir, db, case) = setup();
    let host = run(&["stats", "--host", "WIN-OTEMNUTBS23", "--db", &db]).unwrap();
    assert_eq!(
        host,
        "# host WIN-OTEMNUTBS23\nProcesses: 6\nRootProcesses: 1\nLeafProcesses: 2\nBranchProcesses: 3\nIsolatedProcesses: 0\nLargestTreeDepth: 5\n"
    );
    assert_eq!(
        run(&["stats", "--host", "7", "--db", &db])
            .unwrap()
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        host.lines().skip(1).collect::<Vec<_>>()
    );
    let tree: Value = serde_json::from_str(
        &run(&[
            "stats",
            "--guid",
            &case.whoami.guid,
            "--format",
            "json",
            "--db",
            &db,
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(tree["Processes"], 6);
    assert_eq!(tree["LargestTreeDepth"], 5);
    assert!(
        run(&["stats", "--db", &db])
            .unwrap()
            .starts_with("# all hosts\nProcesses: 6\n")
    );
    assert!(parse(&["stats", "--host", "x", "--guid", &case.ps.guid, "--db", &db]).is_err());
    let err = run(&["stats", "--host", "NOPE", "--db", &db]).unwrap_err();
    assert!(err.to_string().contains("unknown host NOPE"), "{err}");
    let err = run(&["stats", "--host", "99999999999", "--db", &db]).unwrap_err();
    assert!(err.to_string().contains("32 bits"), "{err}");
}

#[test]
fn jobs_verb() {
    let (_dir, db, case) = setup();
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let n = hit_notification(&[&case.ps.guid], T0);
    let tx = conn.transaction().unwrap();
    let id = store_notification(&tx, &n, T0);
    cbtrail::jobs::enqueue_for_notification(
        &tx,
        id,
        &n,
        T0,
        &cbtrail::jobs::JobSettings::default(),
    )
    .unwrap();
    tx.commit().unwrap();
    let text = run(&["jobs", "--db", &db]).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains(&format!("pending  {}", case.ps.guid))
    );
    assert_eq!(
        run(&["jobs", "--state", "done", "--db", &db])
            .unwrap()
            .lines()
            .count(),
        1
    );
    let json: Value = serde_json::from_str(
        &run(&[
            "jobs", "--state", "pending", "--format", "json", "--db", &db,
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(json[0]["process_guid"], case.ps.guid.as_str());
    let err = parse(&["jobs", "--state", "stuck", "--db", &db])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown job state"), "{err}");
}

#[test]
fn clear_errors() {
    let (dir, db, case) = setup();
    let missing = dir.path().join("missing.db");
    let err = run(&["tree", &case.ps.guid, "--db", &missing.to_string_lossy()]).unwrap_err();
    assert!(matches!(err, QueryError::Missing(_)), "{err}");

    let err = run(&["tree", &guid(7, 1, 1), "--db", &db]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unknown process {}: not in the database", guid(7, 1, 1))
    );
    for verb in ["ancestry", "events"] {
        assert!(matches!(
            run(&[verb, &guid(7, 1, 1), "--db", &db]).unwrap_err(),
            QueryError::UnknownGuid(_)
        ));
    }

    let err = parse(&["tree", "not-a-guid", "--db", &db])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("invalid process GUID"), "{err}");
    let err = parse(&["tree", &case.ps.guid, "--depth", "lots", "--db", &db])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--depth"), "{err}");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let err = run(&["tree", &case.ps.guid, "--db", &garbage.to_string_lossy()]).unwrap_err();
    assert!(matches!(err, QueryError::NotCbtrail(_)), "{err}");

    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    assert!(matches!(
        run(&["tree", &case.ps.guid, "--db", &empty.to_string_lossy()]).unwrap_err(),
        QueryError::NotCbtrail(_)
    ));

    let newer = dir.path().join("newer.db");
    std::fs::copy(&db, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = run(&["tree", &case.ps.guid, "--db", &newer.to_string_lossy()]).unwrap_err();
    assert!(
        err.to_string()
            .contains("schema version 99, newer than this cbtrail supports"),
        "{err}"
    );

    // A database still at V1 (the daemon not restarted since an upgrade) is refused with advice.
    let v1 = dir.path().join("v1.db");
    let c = rusqlite::Connection::open(&v1).unwrap();
    c.execute_batch(cbtrail::store::schema::MIGRATIONS[0])
        .unwrap();
    c.pragma_update(None, "user_version", 1).unwrap();
    drop(c);
    for verb in [&["jobs"][..], &["tree", &case.ps.guid][..]] {
        let mut args = verb.to_vec();
        let v1s = v1.to_string_lossy().into_owned();
        args.extend(["--db", &v1s]);
        let err = run(&args).unwrap_err();
        assert!(
            err.to_string().contains("open it once with the daemon"),
            "{err}"
        );
    }
}

#[test]
fn queries_run_beside_a_writer_and_change_nothing() {
    let (_dir, db, case) = setup();
    let mut writer = rusqlite::Connection::open(&db).unwrap();
    let tx = writer.transaction().unwrap();
    let late = P::new(7, "WIN-OTEMNUTBS23", 5000, T0 + 50_000, "c:\\late.exe").child_of(&case.ps);
    insert_process(&tx, &late);
    // The writer holds an open write transaction: readers still answer, from the last commit.
    let text = run(&["tree", &case.ps.guid, "--db", &db]).unwrap();
    assert!(!text.contains(&late.guid));
    tx.commit().unwrap();
    assert!(
        run(&["tree", &case.ps.guid, "--db", &db])
            .unwrap()
            .contains(&late.guid)
    );
    let before = std::fs::read(Path::new(&db)).unwrap();
    run(&["stats", "--db", &db]).unwrap();
    run(&["events", &case.ps.guid, "--db", &db]).unwrap();
    assert_eq!(std::fs::read(Path::new(&db)).unwrap(), before);
}
