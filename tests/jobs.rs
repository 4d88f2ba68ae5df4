//! The export-job state machine: enqueue inside the notification transaction, coalescing, settle,
//! re-export on new events within the follow window, restart recovery, retries, the worker thread.
//! Time is passed in explicitly (`tick(now)`), so nothing here sleeps on a timer it asserts on.

mod treedb;

use cbtrail::jobs::{self, JobRow, JobSettings, Worker};
use cbtrail::model::Notification;
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;
use treedb::*;

const SETTLE: i64 = 60_000;
const FOLLOW: i64 = 30 * 60_000;
const COALESCE: i64 = 5 * 60_000;

fn settings(dir: &Path) -> JobSettings {
    JobSettings {
        settle: Duration::from_millis(SETTLE as u64),
        follow_window: Duration::from_millis(FOLLOW as u64),
        coalesce_window: Duration::from_millis(COALESCE as u64),
        poll_interval: Duration::from_millis(10),
        output_dir: dir.join("exports"),
        max_attempts: 3,
        ..JobSettings::default()
    }
}

/// What the store writer does for a new notification: insert it and enqueue, one transaction.
fn store_hit(conn: &mut Connection, n: &Notification, now: i64, s: &JobSettings) -> (i64, usize) {
    let tx = conn.transaction().unwrap();
    let id = store_notification(&tx, n, now);
    let jobs = jobs::enqueue_for_notification(&tx, id, n, now, s).unwrap();
    tx.commit().unwrap();
    (id, jobs)
}

fn all_jobs(conn: &Connection) -> Vec<JobRow> {
    let mut v = jobs::list_jobs(conn, None).unwrap();
    v.reverse();
    v
}

#[test]
fn a_hit_and_its_job_commit_or_roll_back_together() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut conn) = fresh_db(dir.path());
    let s = settings(dir.path());
    let g = guid(7, 4052, filetime(T0));
    let n = hit_notification(&[&g], T0);

    let tx = conn.transaction().unwrap();
    let id = store_notification(&tx, &n, T0);
    assert_eq!(
        jobs::enqueue_for_notification(&tx, id, &n, T0, &s).unwrap(),
        1
    );
    tx.rollback().unwrap();
    assert!(all_jobs(&conn).is_empty());

    let (id, created) = store_hit(&mut conn, &n, T0, &s);
    assert_eq!(created, 1);
    let j = &all_jobs(&conn)[0];
    assert_eq!(j.process_guid, g);
    assert_eq!(j.state, "pending");
    assert_eq!(j.notification_id, Some(id));
    assert_eq!(j.created_ms, T0);
    assert_eq!(j.due_ms, T0 + SETTLE);
    assert_eq!(j.follow_until_ms, T0 + FOLLOW);
    assert_eq!(j.triggers, 1);
}

#[test]
fn which_notifications_make_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut conn) = fresh_db(dir.path());
    let s = settings(dir.path());
    let a = guid(7, 100, filetime(T0));
    let b = guid(7, 104, filetime(T0));
    for (kind, expected) in [
        ("watchlist.hit.process", 1),
        ("watchlist.storage.hit.process", 1),
        ("feed.ingress.hit.process", 1),
        ("feed.query.hit.process", 1),
        ("alert.watchlist.hit.query.process", 1),
        ("watchlist.hit.binary", 0),
        ("feed.ingress.hit.host", 0),
        ("binaryinfo.observed", 0),
    ] {
        let mut n = hit_notification(&[&a], T0);
        n.kind = kind.into();
        n.key = cbtrail::model::record_key(&[kind.as_bytes()]);
        assert_eq!(store_hit(&mut conn, &n, T0, &s).1, expected, "{kind}");
    }
    // All process hits above were on one GUID within the coalesce window: one job.
    assert_eq!(all_jobs(&conn).len(), 1);
    assert_eq!(all_jobs(&conn)[0].triggers, 5);

    // Several docs: one job per distinct GUID, segment suffixes and case ignored.
    let mut n = hit_notification(&[&b, &a], T0);
    n.key = cbtrail::model::record_key(&[b"multi"]);
    n.targets[1].process_guid = Some(format!("{}-00000001", a.to_uppercase()));
    n.targets.push(n.targets[0].clone());
    assert_eq!(store_hit(&mut conn, &n, T0, &s).1, 2);
    assert_eq!(all_jobs(&conn).len(), 2);

    // A hit without any GUID is stored but makes no job.
    let mut n = hit_notification(&[], T0);
    n.key = cbtrail::model::record_key(&[b"none"]);
    assert_eq!(store_hit(&mut conn, &n, T0, &s).1, 0);
}

#[test]
fn hits_within_the_coalesce_window_merge_and_record_the_later_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut conn) = fresh_db(dir.path());
    let s = settings(dir.path());
    let g = guid(7, 4052, filetime(T0));
    let mut n1 = hit_notification(&[&g], T0);
    n1.key = cbtrail::model::record_key(&[b"1"]);
    let mut n2 = hit_notification(&[&g], T0 + 60_000);
    n2.key = cbtrail::model::record_key(&[b"2"]);
    let mut n3 = hit_notification(&[&g], T0 + COALESCE + 1);
    n3.key = cbtrail::model::record_key(&[b"3"]);
    store_hit(&mut conn, &n1, T0, &s);
    let (id2, _) = store_hit(&mut conn, &n2, T0 + 60_000, &s);
    let jobs = all_jobs(&conn);
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].notification_id,
        Some(id2),
        "the later trigger is recorded"
    );
    assert_eq!(jobs[0].triggers, 2);
    assert_eq!(jobs[0].last_trigger_ms, T0 + 60_000);
    assert_eq!(
        jobs[0].due_ms,
        T0 + 60_000 + SETTLE,
        "settle restarts with the new hit"
    );
    assert_eq!(jobs[0].follow_until_ms, T0 + 60_000 + FOLLOW);
    let triggers: i64 = conn
        .query_row("SELECT COUNT(*) FROM export_job_triggers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(triggers, 2);

    store_hit(&mut conn, &n3, T0 + COALESCE + 1, &s);
    assert_eq!(all_jobs(&conn).len(), 2, "outside the window: a new job");
}

#[test]
fn settle_then_export_then_follow_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let s = settings(dir.path());
    let n = hit_notification(&[&case.ps.guid], T0 + 5_000);
    let now = T0 + 5_000;
    store_hit(&mut conn, &n, now, &s);
    let mut w = Worker::open(&db, s.clone()).unwrap();
    assert_eq!(w.recover(now).unwrap(), 0);

    // Not yet due: nothing happens.
    let r = w.tick(now + SETTLE - 1).unwrap();
    assert!(r.exported.is_empty());
    assert_eq!(all_jobs(&conn)[0].state, "pending");

    let t1 = now + SETTLE;
    let r = w.tick(t1).unwrap();
    assert_eq!(r.exported, vec![1]);
    let j = &all_jobs(&conn)[0];
    assert_eq!(j.state, "done");
    assert_eq!(j.exports, 1);
    assert_eq!(j.attempts, 0);
    assert!(j.error.is_none());
    let out = Path::new(j.output_path.as_deref().unwrap()).to_path_buf();
    assert_eq!(
        out,
        s.output_dir
            .join(format!("2015-11-16/job1_WIN-OTEMNUTBS23_{}", case.ps.guid))
    );
    assert!(out.join("trigger.json").is_file());
    let wm = j.watermark;
    let max_id: i64 = conn
        .query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(wm, max_id);

    // Nothing new: no re-export.
    assert!(w.tick(t1 + 1_000).unwrap().refollowed.is_empty());

    // Events of an ancestor or an unrelated process do not re-export.
    insert_event(&conn, &E::new(&case.cmd.guid, T0 + 9_000, "modload"));
    insert_event(&conn, &E::new(&guid(8, 1, 1), T0 + 9_000, "modload"));
    assert!(w.tick(t1 + 2_000).unwrap().refollowed.is_empty());

    // An event of a descendant does: back to pending, due after the settle time.
    let mut e = E::new(&case.conhost.guid, T0 + 10_000, "filemod");
    e.action = Some("create".into());
    e.path = Some("c:\\loot.zip".into());
    insert_event(&conn, &e);
    let t2 = t1 + 3_000;
    let r = w.tick(t2).unwrap();
    assert_eq!(r.refollowed, vec![1]);
    assert!(r.exported.is_empty());
    let j = &all_jobs(&conn)[0];
    assert_eq!((j.state.as_str(), j.due_ms), ("pending", t2 + SETTLE));
    let r = w.tick(t2 + SETTLE).unwrap();
    assert_eq!(r.exported, vec![1]);
    let j = &all_jobs(&conn)[0];
    assert_eq!((j.state.as_str(), j.exports), ("done", 2));
    assert!(j.watermark > wm);
    assert_eq!(
        j.output_path.as_deref(),
        Some(out.to_str().unwrap()),
        "same directory"
    );
    let csv = std::fs::read_to_string(out.join(format!("4_{}.csv", case.conhost.guid))).unwrap();
    assert!(csv.contains("c:\\loot.zip"));

    // A new child of the hit process, with its own events, is followed too.
    let late = P::new(7, "WIN-OTEMNUTBS23", 4300, T0 + 20_000, "c:\\rclone.exe").child_of(&case.ps);
    insert_process(&conn, &late);
    insert_event(&conn, &E::new(&late.guid, T0 + 20_000, "procstart"));
    let t3 = t2 + SETTLE + 1_000;
    assert_eq!(w.tick(t3).unwrap().refollowed, vec![1]);
    assert_eq!(w.tick(t3 + SETTLE).unwrap().exported, vec![1]);
    assert!(out.join(format!("3_{}.csv", late.guid)).is_file());

    // After the follow window, new events change nothing.
    insert_event(&conn, &E::new(&case.ps.guid, T0 + 30_000, "modload"));
    let r = w.tick(now + FOLLOW + 1).unwrap();
    assert!(r.refollowed.is_empty() && r.exported.is_empty());
    assert_eq!(all_jobs(&conn)[0].state, "done");
}

#[test]
fn a_hit_before_the_process_is_known_exports_a_placeholder_then_the_real_thing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut conn) = fresh_db(dir.path());
    let s = settings(dir.path());
    let p = P::new(9, "LATE-HOST", 1234, T0, "c:\\evil.exe");
    let n = hit_notification(&[&p.guid], T0);
    store_hit(&mut conn, &n, T0, &s);
    let mut w = Worker::open(&db, s.clone()).unwrap();
    w.recover(T0).unwrap();
    assert_eq!(w.tick(T0 + SETTLE).unwrap().exported, vec![1]);
    let out = all_jobs(&conn)[0].output_path.clone().unwrap();
    assert!(out.ends_with(&format!("job1_sensor9_{}", p.guid)), "{out}");

    insert_process(&conn, &p);
    insert_event(&conn, &E::new(&p.guid, T0 + 1, "procstart"));
    assert_eq!(w.tick(T0 + SETTLE + 10).unwrap().refollowed, vec![1]);
    assert_eq!(w.tick(T0 + 2 * SETTLE + 10).unwrap().exported, vec![1]);
    assert_eq!(
        all_jobs(&conn)[0].output_path.as_deref(),
        Some(out.as_str()),
        "the directory stays"
    );
    let tree = std::fs::read_to_string(Path::new(&out).join("tree.json")).unwrap();
    assert!(tree.contains("\"name\": \"evil.exe\""), "{tree}");
}

#[test]
fn jobs_survive_a_restart_and_interrupted_ones_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let s = settings(dir.path());
    store_hit(&mut conn, &hit_notification(&[&case.ps.guid], T0), T0, &s);
    // A previous worker claimed the job and died mid-export.
    conn.execute(
        "UPDATE export_jobs SET state = 'running', started_ms = ?1, attempts = 1",
        [T0 + SETTLE],
    )
    .unwrap();
    let mut w = Worker::open(&db, s.clone()).unwrap();
    let restart = T0 + SETTLE + 5_000;
    assert_eq!(w.recover(restart).unwrap(), 1);
    let j = &all_jobs(&conn)[0];
    assert_eq!((j.state.as_str(), j.due_ms), ("pending", restart));
    assert!(j.error.as_deref().unwrap().contains("interrupted"));
    assert_eq!(w.tick(restart).unwrap().exported, vec![1]);
    let j = &all_jobs(&conn)[0];
    assert_eq!(
        (j.state.as_str(), j.attempts, j.error.is_none()),
        ("done", 0, true)
    );

    // A job that keeps dying is given up after max_attempts.
    conn.execute("UPDATE export_jobs SET state = 'running', attempts = 3", [])
        .unwrap();
    let mut w = Worker::open(&db, s.clone()).unwrap();
    w.recover(restart + 1).unwrap();
    let r = w.tick(restart + 1).unwrap();
    assert!(r.exported.is_empty());
    let j = &all_jobs(&conn)[0];
    assert_eq!(j.state, "failed");
    assert!(
        j.error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 3 attempts"),
        "{:?}",
        j.error
    );
}

#[test]
fn failed_exports_back_off_then_fail_and_a_new_hit_revives_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let mut s = settings(dir.path());
    // The output root is a file: every export fails.
    std::fs::write(dir.path().join("blocked"), "x").unwrap();
    s.output_dir = dir.path().join("blocked");
    let (_, _) = store_hit(&mut conn, &hit_notification(&[&case.ps.guid], T0), T0, &s);
    let mut w = Worker::open(&db, s.clone()).unwrap();
    w.recover(T0).unwrap();
    let mut now = T0 + SETTLE;
    for (attempt, delay) in [(1, 30_000), (2, 60_000)] {
        let r = w.tick(now).unwrap();
        assert_eq!(r.failed, vec![1]);
        let j = &all_jobs(&conn)[0];
        assert_eq!((j.state.as_str(), j.attempts), ("pending", attempt));
        assert_eq!(j.due_ms, now + delay);
        assert!(j.error.is_some());
        assert!(
            w.tick(now + delay - 1).unwrap().failed.is_empty(),
            "not before the delay"
        );
        now += delay;
    }
    assert_eq!(w.tick(now).unwrap().failed, vec![1]);
    let j = &all_jobs(&conn)[0];
    assert_eq!((j.state.as_str(), j.attempts), ("failed", 3));
    assert!(
        w.tick(now + 3_600_000).unwrap().failed.is_empty(),
        "failed jobs stay failed"
    );

    // A new hit on the process within the coalesce window revives the job.
    let mut n = hit_notification(&[&case.ps.guid], T0 + 1);
    n.key = cbtrail::model::record_key(&[b"again"]);
    store_hit(&mut conn, &n, T0 + 2 * 60_000, &s);
    let j = &all_jobs(&conn)[0];
    assert_eq!(
        (j.state.as_str(), j.attempts, j.triggers),
        ("pending", 0, 2)
    );
}

#[test]
fn the_worker_thread_exports_and_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut conn) = fresh_db(dir.path());
    let case = build_case(&conn);
    let mut s = settings(dir.path());
    s.settle = Duration::ZERO;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    store_hit(&mut conn, &hit_notification(&[&case.ps.guid], now), now, &s);
    let (stop, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn({
        let db = db.clone();
        let s = s.clone();
        move || jobs::run_worker(db, s, rx)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while all_jobs(&conn)[0].state != "done" {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not export"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.send(()).unwrap();
    worker.join().unwrap().unwrap();

    // Dropping the sender stops it too.
    let (stop, rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || jobs::run_worker(db, s, rx));
    drop(stop);
    worker.join().unwrap().unwrap();
}

#[test]
fn settings_are_checked_before_the_first_job() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _conn) = fresh_db(dir.path());
    let base = settings(dir.path());
    for (s, needle) in [
        (
            JobSettings {
                dir_pattern: "{guid}".into(),
                ..base.clone()
            },
            "must contain {job}",
        ),
        (
            JobSettings {
                dir_pattern: "../{job}".into(),
                ..base.clone()
            },
            "must not contain",
        ),
        (
            JobSettings {
                dir_pattern: "/abs/{job}".into(),
                ..base.clone()
            },
            "relative",
        ),
        (
            JobSettings {
                dir_pattern: "{job}_{nope}".into(),
                ..base.clone()
            },
            "unknown placeholder",
        ),
        (
            JobSettings {
                file_pattern: "{level}.csv".into(),
                ..base.clone()
            },
            "must contain {guid}",
        ),
        (
            JobSettings {
                poll_interval: Duration::ZERO,
                ..base.clone()
            },
            "poll_interval",
        ),
        (
            JobSettings {
                summary_spec: Some(dir.path().join("missing.json")),
                ..base.clone()
            },
            "missing.json",
        ),
    ] {
        let e = Worker::open(&db, s).err().expect("refused").to_string();
        assert!(e.contains(needle), "{e}");
    }
    let e = Worker::open(&dir.path().join("nope.db"), base.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn settings_deserialize_with_defaults_and_seconds() {
    let s: JobSettings = serde_json::from_str(
        r#"{"settle": 1.5, "follow_window": 0, "output_dir": "/tmp/x", "follow_childprocs": 2}"#,
    )
    .unwrap();
    assert_eq!(s.settle, Duration::from_millis(1500));
    assert_eq!(s.follow_window, Duration::ZERO);
    assert_eq!(s.follow_childprocs, 2);
    assert_eq!(s.coalesce_window, JobSettings::default().coalesce_window);
    assert!(serde_json::from_str::<JobSettings>(r#"{"settle": -1}"#).is_err());
    assert!(serde_json::from_str::<JobSettings>(r#"{"setle": 1}"#).is_err());
}

#[test]
fn settings_round_trip_through_serde() {
    let s = JobSettings {
        settle: Duration::from_millis(2500),
        ..JobSettings::default()
    };
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains("\"settle\":2.5"), "{text}");
    assert_eq!(serde_json::from_str::<JobSettings>(&text).unwrap(), s);
}

#[test]
fn old_finished_jobs_are_purged_in_chunks_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut conn) = fresh_db(dir.path());
    let s = settings(dir.path());
    for i in 0..7u32 {
        let mut n = hit_notification(&[&guid(7, 100 + i * 4, filetime(T0))], T0);
        n.key = cbtrail::model::record_key(&[&i.to_le_bytes()]);
        store_hit(&mut conn, &n, T0, &s);
    }
    // Jobs 1-3 done long ago, 4 failed long ago, 5 done but still followed, 6 pending, 7 running.
    conn.execute_batch(&format!(
        "UPDATE export_jobs SET state = 'done', finished_ms = {T0}, follow_until_ms = {T0} WHERE id <= 3;
         UPDATE export_jobs SET state = 'failed', finished_ms = {T0}, follow_until_ms = {T0} WHERE id = 4;
         UPDATE export_jobs SET state = 'done', finished_ms = {T0}, follow_until_ms = {T0} + 10 * 86400000 WHERE id = 5;
         UPDATE export_jobs SET state = 'running' WHERE id = 7;"
    ))
    .unwrap();
    let horizon = T0 + 86_400_000;
    assert_eq!(jobs::purge_jobs(&conn, horizon, 2).unwrap(), 4);
    let left: Vec<i64> = all_jobs(&conn).iter().map(|j| j.id).collect();
    assert_eq!(left, vec![5, 6, 7]);
    let triggers: i64 = conn
        .query_row("SELECT COUNT(*) FROM export_job_triggers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(triggers, 3);
    assert_eq!(jobs::purge_jobs(&conn, horizon, 2).unwrap(), 0);
}

#[test]
fn the_store_writer_queues_a_job_with_each_new_hit_and_none_for_a_redelivery() {
    use cbtrail::model::{Event, EventType, FactRank, ProcessFacts, Record};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let mut writer = cbtrail::store::Writer::open(&db).unwrap();
    let g = guid(7, 4052, filetime(T0));
    let start = Event {
        key: cbtrail::model::record_key(&[b"procstart"]),
        event_type: Some(EventType::Procstart),
        timestamp_ms: T0,
        sensor_id: Some(7),
        hostname: Some("WIN-1".into()),
        process_guid: Some(g.clone()),
        pid: Some(4052),
        process_path: Some("c:\\evil.exe".into()),
        path: Some("c:\\evil.exe".into()),
        details: serde_json::json!({}).to_string(),
        processes: vec![ProcessFacts {
            guid: g.clone(),
            rank: Some(FactRank::Procstart),
            sensor_id: Some(7),
            hostname: Some("WIN-1".into()),
            pid: Some(4052),
            path: Some("c:\\evil.exe".into()),
            start_ms: Some(T0),
            ..ProcessFacts::default()
        }],
        ..Event::default()
    };
    let hit = hit_notification(&[&g], T0);
    let batch = vec![
        Record::Event(Box::new(start)),
        Record::Notification(Box::new(hit.clone())),
    ];
    writer.write_batch(&batch).unwrap();
    let conn = writer.connection();
    let jobs = all_jobs(conn);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].process_guid, g);
    assert_eq!(jobs[0].state, "pending");
    let settle = JobSettings::default().settle.as_millis() as i64;
    assert_eq!(jobs[0].due_ms - jobs[0].created_ms, settle);

    // The broker redelivers the same message: stored once, no second trigger.
    let stats = writer
        .write_batch(&[Record::Notification(Box::new(hit))])
        .unwrap();
    assert_eq!(stats.duplicates, 1);
    let jobs = all_jobs(writer.connection());
    assert_eq!((jobs.len(), jobs[0].triggers), (1, 1));
    drop(writer);

    // And the worker exports it.
    let mut w = Worker::open(&db, settings(dir.path())).unwrap();
    w.recover(jobs[0].created_ms).unwrap();
    assert_eq!(w.tick(jobs[0].due_ms).unwrap().exported, vec![jobs[0].id]);
}
