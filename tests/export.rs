//! Exports over a hand-built database: golden CSV (with the summary column), tree.json and text
//! tree; levels and names in tree.json; follow_childprocs; atomic directories.

mod treedb;

use cbtrail::export::{self, ExportOptions, ExportRequest, summary::SummarySpec};
use serde_json::Value;
use std::fs;
use std::path::Path;
use treedb::*;

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn request(guid: &str) -> ExportRequest {
    ExportRequest {
        guid: guid.to_string(),
        ..ExportRequest::default()
    }
}

#[test]
fn golden_export_of_the_hand_built_case() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let n = hit_notification(&[&case.ps.guid], T0 + 5_000);
    let nid = store_notification(&conn, &n, T0 + 5_000);
    let trigger = export::load_trigger(&conn, nid).unwrap().unwrap();
    let out = dir.path().join("out").join("case");
    let req = ExportRequest {
        triggers: vec![trigger],
        job_id: Some(1),
        ..request(&case.ps.guid)
    };
    let report = export::export_process(&conn, &req, &out, &ExportOptions::default()).unwrap();
    assert_eq!(report.processes, 6);
    assert_eq!(report.events, 14);
    assert_eq!(report.dir, out);

    let level = |p: &P, l: u32| format!("{l}_{}.csv", p.guid);
    let mut expected = vec![
        level(&case.explorer, 0),
        level(&case.cmd, 1),
        level(&case.ps, 2),
        level(&case.net, 3),
        level(&case.whoami, 3),
        level(&case.conhost, 4),
        "manifest.json".to_string(),
        "tree.json".to_string(),
        "tree.txt".to_string(),
        "trigger.json".to_string(),
    ];
    expected.sort();
    assert_eq!(files_in(&out), expected);
    let mut reported = report.files.clone();
    reported.sort();
    assert_eq!(reported, expected);

    golden(
        "case/hit.csv",
        &fs::read(out.join(level(&case.ps, 2))).unwrap(),
    );
    golden(
        "case/whoami.csv",
        &fs::read(out.join(level(&case.whoami, 3))).unwrap(),
    );
    golden(
        "case/explorer.csv",
        &fs::read(out.join(level(&case.explorer, 0))).unwrap(),
    );
    golden("case/tree.json", &fs::read(out.join("tree.json")).unwrap());
    golden("case/tree.txt", &fs::read(out.join("tree.txt")).unwrap());

    // trigger.json is the notification as received.
    let t: Value =
        serde_json::from_str(&fs::read_to_string(out.join("trigger.json")).unwrap()).unwrap();
    assert_eq!(t, serde_json::from_str::<Value>(&n.json).unwrap());

    let m: Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["process_guid"], case.ps.guid.as_str());
    assert_eq!(m["job_id"], 1);
    assert_eq!(m["events_total"], 14);
    assert_eq!(m["event_watermark"], report.watermark);
    assert_eq!(m["known_process"], true);
    assert_eq!(m["triggers"][0]["notification_id"], nid);
    assert_eq!(m["triggers"][0]["type"], "watchlist.hit.process");
    assert_eq!(m["processes"].as_array().unwrap().len(), 6);
}

#[test]
fn tree_json_fills_the_root_and_counts_levels_per_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let out = dir.path().join("x");
    export::export_process(
        &conn,
        &request(&case.ps.guid),
        &out,
        &ExportOptions::default(),
    )
    .unwrap();
    let t: Value =
        serde_json::from_str(&fs::read_to_string(out.join("tree.json")).unwrap()).unwrap();
    // The root is the topmost ancestor, with its own name and pid (the CBC tool left them empty).
    assert_eq!(t["guid"], case.explorer.guid.as_str());
    assert_eq!(t["name"], "explorer.exe");
    assert_eq!(t["pid"], 2804);
    assert_eq!(t["level"], 0);
    assert_eq!(t["inferred"], true);
    let cmd = &t["children"][0];
    let ps = &cmd["children"][0];
    assert_eq!(ps["guid"], case.ps.guid.as_str());
    assert_eq!(ps["hit"], true);
    assert_eq!(ps["level"], 2);
    // Both children of the hit are at the same level, and their subtrees are complete: the CBC
    // tool's per-dequeue depth counting got both wrong.
    let kids = ps["children"].as_array().unwrap();
    assert_eq!(kids.len(), 2);
    assert!(kids.iter().all(|k| k["level"] == 3));
    assert_eq!(kids[0]["children"][0]["guid"], case.conhost.guid.as_str());
    assert_eq!(kids[0]["children"][0]["level"], 4);
    assert_eq!(
        kids[1]["children"],
        Value::Array(vec![]),
        "leaves carry an empty list"
    );
    assert_eq!(kids[0]["events"], 2);
}

#[test]
fn follow_childprocs_limits_generations_below_the_hit() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    for (n, expected) in [(0u32, 3usize), (1, 5), (2, 6), (50, 6)] {
        let out = dir.path().join(format!("f{n}"));
        let opts = ExportOptions {
            follow_childprocs: n,
            ..ExportOptions::default()
        };
        let r = export::export_process(&conn, &request(&case.ps.guid), &out, &opts).unwrap();
        assert_eq!(r.processes, expected, "follow_childprocs {n}");
        let m: Value =
            serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
        let beyond = match n {
            0 => 2,
            1 => 1,
            _ => 0,
        };
        assert_eq!(
            m["children_beyond_follow_childprocs"], beyond,
            "follow_childprocs {n}"
        );
    }
}

#[test]
fn custom_spec_and_file_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let spec = SummarySpec::from_json(
        r#"{"types": {"crossproc": ["requested_access", "is_target"], "*": []},
            "transforms": {"requested_access": "hex"}}"#,
    )
    .unwrap();
    let opts = ExportOptions {
        follow_childprocs: 0,
        csv_pattern: "{role}-{name}-{pid}-{guid}.csv".into(),
        spec,
        ..ExportOptions::default()
    };
    let out = dir.path().join("c");
    export::export_process(&conn, &request(&case.ps.guid), &out, &opts).unwrap();
    let name = format!("focus-powershell.exe-4052-{}.csv", case.ps.guid);
    let csv = fs::read_to_string(out.join(&name)).unwrap();
    assert!(
        csv.contains(",requested_access=0x1fffff is_target=false,"),
        "{csv}"
    );
    assert!(
        out.join(format!("ancestor-cmd.exe-4040-{}.csv", case.cmd.guid))
            .is_file()
    );
    let bad = ExportOptions {
        csv_pattern: "{level}.csv".into(),
        ..ExportOptions::default()
    };
    assert!(
        export::export_process(&conn, &request(&case.ps.guid), &dir.path().join("d"), &bad)
            .is_err()
    );
    assert!(!dir.path().join("d").exists());
}

#[test]
fn directories_appear_complete_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let parent = dir.path().join("exports");
    let out = parent.join("job1");
    let first = export::export_process(
        &conn,
        &request(&case.ps.guid),
        &out,
        &ExportOptions::default(),
    )
    .unwrap();
    assert_eq!(files_in(&parent), vec!["job1"], "no temporary leftovers");

    // New events, then a re-export: the directory is replaced by the new complete one.
    let mut e = E::new(&case.whoami.guid, T0 + 3_600, "filemod");
    e.action = Some("create".into());
    e.path = Some("c:\\out.txt".into());
    insert_event(&conn, &e);
    let second = export::export_process(
        &conn,
        &request(&case.ps.guid),
        &out,
        &ExportOptions::default(),
    )
    .unwrap();
    assert_eq!(second.events, first.events + 1);
    assert!(second.watermark > first.watermark);
    assert_eq!(files_in(&parent), vec!["job1"]);

    // An export that fails half-way (a corrupt row in the last process) leaves the previous
    // export untouched and no partial directory behind.
    let before = fs::read(out.join("tree.json")).unwrap();
    let mut e = E::new(&case.conhost.guid, T0 + 4_000, "modload");
    e.path = Some("c:\\x.dll".into());
    let bad_id = insert_event(&conn, &e);
    conn.execute(
        "UPDATE events SET remote_port = 'x' WHERE id = ?1",
        [bad_id],
    )
    .unwrap();
    let err = export::export_process(
        &conn,
        &request(&case.ps.guid),
        &out,
        &ExportOptions::default(),
    );
    assert!(err.is_err(), "a corrupt row is an error, not a silent gap");
    assert_eq!(files_in(&parent), vec!["job1"]);
    assert_eq!(fs::read(out.join("tree.json")).unwrap(), before);
    assert_eq!(files_in(&out).len(), 9);

    // Leftovers of a crash (temporary and old directories) are cleared by the next export.
    fs::create_dir(parent.join(".job2.cbtrail-tmp")).unwrap();
    fs::write(parent.join(".job2.cbtrail-tmp").join("partial.csv"), "x").unwrap();
    fs::create_dir(parent.join(".job2.cbtrail-old")).unwrap();
    export::export_process(
        &conn,
        &request(&case.cmd.guid),
        &parent.join("job2"),
        &ExportOptions {
            follow_childprocs: 0,
            ..ExportOptions::default()
        },
    )
    .unwrap();
    assert_eq!(files_in(&parent), vec!["job1", "job2"]);
}

#[test]
fn unknown_process_fails_unless_a_placeholder_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let g = guid(7, 4052, filetime(T0));
    let out = dir.path().join("u");
    let err =
        export::export_process(&conn, &request(&g), &out, &ExportOptions::default()).unwrap_err();
    assert!(err.to_string().contains("unknown process"), "{err}");
    assert!(!out.exists());
    let req = ExportRequest {
        allow_unknown: true,
        ..request(&g)
    };
    let r = export::export_process(&conn, &req, &out, &ExportOptions::default()).unwrap();
    assert_eq!(r.processes, 1);
    let t: Value =
        serde_json::from_str(&fs::read_to_string(out.join("tree.json")).unwrap()).unwrap();
    assert_eq!(t["pid"], 4052, "decoded from the GUID");
    assert_eq!(t["name"], Value::Null);
    let m: Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["known_process"], false);
}

#[test]
fn ancestors_events_are_limited_to_a_window_around_the_hit_and_the_rest_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    // cmd.exe has one event beside the hit (T0 + 900); add one two days before and one three
    // hours after the newest event of the hit's subtree (T0 + 3_500).
    insert_event(
        &conn,
        &E::new(&case.cmd.guid, T0 - 2 * 86_400_000, "modload"),
    );
    insert_event(
        &conn,
        &E::new(&case.cmd.guid, T0 + 3_500 + 3 * 3_600_000, "modload"),
    );
    // Just inside the window on both sides.
    insert_event(
        &conn,
        &E::new(&case.cmd.guid, T0 + 1_000 - 3_600_000, "regmod"),
    );
    insert_event(
        &conn,
        &E::new(&case.cmd.guid, T0 + 3_500 + 3_600_000, "regmod"),
    );
    let out = dir.path().join("w");
    let r = export::export_process(
        &conn,
        &request(&case.ps.guid),
        &out,
        &ExportOptions::default(),
    )
    .unwrap();
    let cmd_csv = fs::read_to_string(out.join(format!("1_{}.csv", case.cmd.guid))).unwrap();
    assert_eq!(cmd_csv.lines().count(), 1 + 3, "{cmd_csv}");
    assert!(!cmd_csv.contains("modload"));
    let m: Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["ancestor_window"]["from"], "2015-11-16T17:14:29.819Z");
    assert_eq!(m["ancestor_window"]["to"], "2015-11-16T19:14:32.319Z");
    let cmd = m["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["guid"] == case.cmd.guid.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (cmd["events"].clone(), cmd["events_outside_window"].clone()),
        (Value::from(3), Value::from(2))
    );
    let hit = m["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["guid"] == case.ps.guid.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        hit["events_outside_window"],
        Value::Null,
        "the hit and descendants are never limited"
    );
    let t: Value =
        serde_json::from_str(&fs::read_to_string(out.join("tree.json")).unwrap()).unwrap();
    assert_eq!(t["children"][0]["events_outside_window"], 2);

    let all = ExportOptions {
        ancestor_window: None,
        ..ExportOptions::default()
    };
    let r2 = export::export_process(
        &conn,
        &request(&case.ps.guid),
        &dir.path().join("all"),
        &all,
    )
    .unwrap();
    assert_eq!(r2.events, r.events + 2);
    let m: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("all/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["ancestor_window"], Value::Null);
}
