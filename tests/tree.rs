//! Process trees over hand-built databases: scale shapes (deep chains, wide fan-outs), identity
//! (pid reuse, the same pid on two hosts), bad data (missing parents, cycles, self-parents), and
//! msticpy's summary statistics compared one to one with an independent implementation.

mod treedb;

use cbtrail::export::treejson::tree_json_string;
use cbtrail::tree::{self, AncestryEnd, Forest, Host, ProcessTree, TreeStats};
use treedb::*;

fn stats(p: u64, r: u64, l: u64, b: u64, i: u64, d: u64) -> TreeStats {
    TreeStats {
        processes: p,
        root_processes: r,
        leaf_processes: l,
        branch_processes: b,
        isolated_processes: i,
        largest_tree_depth: d,
    }
}

/// msticpy's `get_summary_info`, written again from `docs/process-tree-prior-art.md` §1.6 without
/// any cbtrail code: rows are `(proc_key, parent_key)`, duplicate keys keep the first row,
/// `IsRoot` = no parent key, `IsLeaf` = the key is nobody's parent key, `IsBranch` = neither root
/// nor leaf, `path` is built level by level from the roots (each row assigned once) and
/// `LargestTreeDepth` = max("/" in path) + 1.
fn msticpy_summary(rows: &[(String, Option<String>)]) -> TreeStats {
    let mut frame: Vec<(String, Option<String>, String)> = Vec::new();
    for (i, (k, p)) in rows.iter().enumerate() {
        if frame.iter().any(|r| &r.0 == k) {
            continue;
        }
        frame.push((k.clone(), p.clone(), format!("{i:05}")));
    }
    let parent_keys: std::collections::HashSet<&String> =
        frame.iter().filter_map(|r| r.1.as_ref()).collect();
    let n = frame.len();
    let is_root: Vec<bool> = frame.iter().map(|r| r.1.is_none()).collect();
    let is_leaf: Vec<bool> = frame.iter().map(|r| !parent_keys.contains(&r.0)).collect();
    let mut path: Vec<Option<String>> = vec![None; n];
    let mut current: Vec<usize> = (0..n).filter(|&i| is_root[i]).collect();
    for &i in &current {
        path[i] = Some(frame[i].2.clone());
    }
    let mut remaining: Vec<usize> = (0..n).filter(|&i| !is_root[i]).collect();
    while !current.is_empty() && !remaining.is_empty() {
        let keys: std::collections::HashMap<&String, usize> =
            current.iter().map(|&i| (&frame[i].0, i)).collect();
        let (next, rest): (Vec<usize>, Vec<usize>) = remaining
            .iter()
            .partition(|&&i| frame[i].1.as_ref().is_some_and(|p| keys.contains_key(p)));
        for &i in &next {
            let parent = keys[frame[i].1.as_ref().unwrap()];
            path[i] = Some(format!("{}/{}", path[parent].as_ref().unwrap(), frame[i].2));
        }
        remaining = rest;
        current = next;
    }
    let depth = path
        .iter()
        .flatten()
        .map(|p| p.matches('/').count() as u64 + 1)
        .max()
        .unwrap_or(0);
    TreeStats {
        processes: n as u64,
        root_processes: is_root.iter().filter(|&&r| r).count() as u64,
        leaf_processes: is_leaf.iter().filter(|&&l| l).count() as u64,
        branch_processes: (0..n).filter(|&i| !is_root[i] && !is_leaf[i]).count() as u64,
        isolated_processes: (0..n).filter(|&i| is_root[i] && is_leaf[i]).count() as u64,
        largest_tree_depth: depth,
    }
}

/// The small set worked by hand:
///
/// ```text
/// I1 (inferred) ── A ── B ── C        I2 (inferred) ── E        F (alone)
///                  └── D
/// ```
/// Processes 8; roots I1, I2, F; leaves C, D, E, F; branches A, B; isolated F; deepest I1/A/B/C = 4.
fn hand_set(conn: &rusqlite::Connection) -> Vec<P> {
    let i1 = P::new(7, "WIN-A", 500, T0, "c:\\windows\\explorer.exe").inferred();
    let a = P::new(7, "WIN-A", 600, T0 + 10, "c:\\windows\\system32\\cmd.exe").child_of(&i1);
    let b = P::new(7, "WIN-A", 601, T0 + 20, "c:\\tools\\b.exe").child_of(&a);
    let c = P::new(7, "WIN-A", 602, T0 + 30, "c:\\tools\\c.exe").child_of(&b);
    let d = P::new(7, "WIN-A", 603, T0 + 40, "c:\\tools\\d.exe").child_of(&a);
    let i2 = P::new(7, "WIN-A", 700, T0 + 1, "c:\\windows\\services.exe").inferred();
    let e = P::new(7, "WIN-A", 701, T0 + 50, "c:\\windows\\svchost.exe").child_of(&i2);
    let f = P::new(7, "WIN-A", 800, T0 + 60, "c:\\lonely.exe");
    let all = vec![i1, a, b, c, d, i2, e, f];
    for p in &all {
        insert_process(conn, p);
    }
    all
}

#[test]
fn msticpy_statistics_match_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let s = hand_set(&conn);
    let expected_host = stats(8, 3, 4, 2, 1, 4);
    let rows: Vec<(String, Option<String>)> = s
        .iter()
        .map(|p| (p.guid.clone(), p.parent.clone()))
        .collect();
    assert_eq!(
        msticpy_summary(&rows),
        expected_host,
        "reference implementation"
    );
    assert_eq!(
        tree::host_stats(&conn, &Host::Sensor(7)).unwrap(),
        expected_host
    );
    assert_eq!(
        tree::host_stats(&conn, &Host::Name("win-a".into())).unwrap(),
        expected_host,
        "host names match in upper or lower case without a sensors row"
    );
    conn.execute(
        "INSERT INTO sensors (sensor_id, hostname, first_seen_ms, last_seen_ms) VALUES (7, 'WIN-A', 0, 0)",
        [],
    )
    .unwrap();
    assert_eq!(
        tree::host_stats(&conn, &Host::Name("Win-A".into())).unwrap(),
        expected_host,
        "and in any case through the sensors table"
    );
    // msticpy's invariant.
    let h = expected_host;
    assert_eq!(
        h.processes,
        h.root_processes + h.branch_processes + h.leaf_processes - h.isolated_processes
    );
    // The tree of C is I1's tree: I1, A, B, C, D.
    assert_eq!(
        tree::tree_stats(&conn, &s[3].guid).unwrap(),
        stats(5, 1, 2, 2, 0, 4)
    );
    // F's tree is F alone.
    assert_eq!(
        tree::tree_stats(&conn, &s[7].guid).unwrap(),
        stats(1, 1, 1, 0, 1, 1)
    );
    assert_eq!(tree::depth(&conn, &s[3].guid).unwrap(), 4);
    assert_eq!(tree::depth(&conn, &s[0].guid).unwrap(), 1);
}

/// Tiny deterministic generator (xorshift64*), so the generated set is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn msticpy_statistics_match_an_independent_implementation_on_generated_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut conn) = fresh_db(dir.path());
    for (sensor, seed) in [(11u32, 0x9e37_79b9_7f4a_7c15u64), (12, 42), (13, 7)] {
        let mut rng = Rng(seed);
        let mut edges: Vec<(String, Option<String>)> = Vec::new();
        for i in 0..3000u32 {
            let g = guid(sensor, 4 + i * 4, filetime(T0 + i64::from(i)));
            let parent = match rng.below(10) {
                // A new root (as the store's inferred parents are).
                0 => None,
                // Usually a recent process, to get depth; sometimes any earlier one.
                1..=6 if i > 0 => Some(
                    edges[(i as u64 - 1 - rng.below(u64::from(i).min(5))) as usize]
                        .0
                        .clone(),
                ),
                _ if i > 0 => Some(edges[rng.below(u64::from(i)) as usize].0.clone()),
                _ => None,
            };
            edges.push((g, parent));
        }
        // A three-process cycle hanging off nothing, with a child: bad data msticpy also keeps.
        let c: Vec<String> = (0..4)
            .map(|k| guid(sensor, 90_000 + k, filetime(T0 + 99_000 + i64::from(k))))
            .collect();
        edges.push((c[0].clone(), Some(c[2].clone())));
        edges.push((c[1].clone(), Some(c[0].clone())));
        edges.push((c[2].clone(), Some(c[1].clone())));
        edges.push((c[3].clone(), Some(c[1].clone())));
        insert_edges(
            &mut conn,
            i64::from(sensor),
            &format!("HOST-{sensor}"),
            &edges,
        );

        let mine = tree::host_stats(&conn, &Host::Sensor(i64::from(sensor))).unwrap();
        let reference = msticpy_summary(&edges);
        assert_eq!(mine, reference, "sensor {sensor}");
        assert!(
            mine.largest_tree_depth > 10,
            "the generator makes deep trees"
        );
        assert_eq!(Forest::from_edges(edges.clone()).stats(), reference);

        // One tree: the tree of the last ordinary process, against the reference applied to
        // exactly that tree's rows (the root's parent key dropped, as msticpy's get_root_tree).
        let focus = &edges[2999].0;
        let t = ProcessTree::build(&conn, focus, None).unwrap();
        let root = t.nodes[t.root].process.guid.clone();
        let members: Vec<(String, Option<String>)> = tree::descendants(&conn, &root, None)
            .unwrap()
            .into_iter()
            .map(|d| (d.process.guid, d.process.parent_guid))
            .chain(std::iter::once((root.clone(), None)))
            .collect();
        assert_eq!(
            tree::tree_stats(&conn, focus).unwrap(),
            msticpy_summary(&members)
        );
    }
    let mut total = TreeStats::default();
    for s in [11, 12, 13] {
        total.merge(&tree::host_stats(&conn, &Host::Sensor(s)).unwrap());
    }
    assert_eq!(tree::all_hosts_stats(&conn).unwrap(), total);
    assert_eq!(tree::all_sensors(&conn).unwrap(), vec![11, 12, 13]);
}

#[test]
fn a_ten_thousand_level_chain_neither_recurses_nor_overflows() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut conn) = fresh_db(dir.path());
    const N: u32 = 10_000;
    let mut edges: Vec<(String, Option<String>)> = Vec::new();
    for i in 0..N {
        let g = guid(3, i + 1, filetime(T0 + i64::from(i)));
        let parent = edges.last().map(|(p, _)| p.clone());
        edges.push((g, parent));
    }
    insert_edges(&mut conn, 3, "DEEP", &edges);
    let root = &edges[0].0;
    let leaf = &edges[(N - 1) as usize].0;

    let a = tree::ancestors(&conn, leaf).unwrap();
    assert_eq!(a.chain.len(), (N - 1) as usize);
    assert_eq!(a.end, AncestryEnd::Root);
    assert_eq!(&a.chain.last().unwrap().guid, root);
    assert_eq!(tree::depth(&conn, leaf).unwrap(), N);

    let d = tree::descendants(&conn, root, None).unwrap();
    assert_eq!(d.len(), (N - 1) as usize);
    assert_eq!(d.last().unwrap().level, N - 1);
    assert_eq!(tree::descendants(&conn, root, Some(10)).unwrap().len(), 10);

    let deep = stats(u64::from(N), 1, 1, u64::from(N) - 2, 0, u64::from(N));
    assert_eq!(tree::tree_stats(&conn, leaf).unwrap(), deep);
    assert_eq!(tree::host_stats(&conn, &Host::Sensor(3)).unwrap(), deep);

    let t = ProcessTree::build(&conn, root, None).unwrap();
    assert_eq!(t.nodes.len(), N as usize);
    assert_eq!(t.nodes.last().unwrap().level, N - 1);
    let json = tree_json_string(&t);
    assert_eq!(json.matches("\"guid\"").count(), N as usize);
    // Indentation is capped: the output grows linearly, not quadratically.
    assert!(json.len() < 40_000_000, "{} bytes", json.len());
    let mut text = Vec::new();
    cbtrail::export::text::write_tree_text(&mut text, &t).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.lines().count(), N as usize + 1);
    assert!(text.lines().last().unwrap().contains("[L9999] "));
}

#[test]
fn wide_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut conn) = fresh_db(dir.path());
    let parent = guid(4, 4, filetime(T0));
    let mut edges = vec![(parent.clone(), None)];
    for i in 0..5000u32 {
        edges.push((
            guid(4, 8 + i * 4, filetime(T0 + 1 + i64::from(i))),
            Some(parent.clone()),
        ));
    }
    insert_edges(&mut conn, 4, "WIDE", &edges);
    let kids = tree::children(&conn, &parent).unwrap();
    assert_eq!(kids.len(), 5000);
    assert!(
        kids.windows(2).all(|w| w[0].start_ms <= w[1].start_ms),
        "oldest first"
    );
    assert_eq!(tree::siblings(&conn, &edges[17].0).unwrap().len(), 4999);
    assert!(
        tree::siblings(&conn, &parent).unwrap().is_empty(),
        "a root has no siblings"
    );
    assert_eq!(
        tree::descendants(&conn, &parent, Some(1)).unwrap().len(),
        5000
    );
    assert_eq!(
        tree::host_stats(&conn, &Host::Sensor(4)).unwrap(),
        stats(5001, 1, 5000, 0, 0, 2)
    );
    let roots = tree::roots_of_host(&conn, &Host::Name("WIDE".into())).unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].guid, parent);
}

#[test]
fn pid_reuse_on_one_host_and_the_same_pid_on_two_hosts_are_different_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    // Sensor 1: pid 100 used twice an hour apart, each instance with its own child.
    let first = P::new(1, "HOST-1", 100, T0, "c:\\a.exe");
    let second = P::new(1, "HOST-1", 100, T0 + 3_600_000, "c:\\b.exe");
    let c1 = P::new(1, "HOST-1", 200, T0 + 5, "c:\\c1.exe").child_of(&first);
    let c2 = P::new(1, "HOST-1", 200, T0 + 3_600_005, "c:\\c2.exe").child_of(&second);
    // Sensor 2: pid 100 and the same start time as `first`.
    let other = P::new(2, "HOST-2", 100, T0, "c:\\a.exe");
    let oc = P::new(2, "HOST-2", 300, T0 + 9, "c:\\oc.exe").child_of(&other);
    for p in [&first, &second, &c1, &c2, &other, &oc] {
        insert_process(&conn, p);
    }
    assert_ne!(first.guid, second.guid);
    assert_ne!(first.guid, other.guid);
    let kids = |g: &str| -> Vec<String> {
        tree::children(&conn, g)
            .unwrap()
            .into_iter()
            .map(|p| p.guid)
            .collect()
    };
    assert_eq!(kids(&first.guid), vec![c1.guid.clone()]);
    assert_eq!(kids(&second.guid), vec![c2.guid.clone()]);
    assert_eq!(kids(&other.guid), vec![oc.guid.clone()]);
    assert_eq!(
        tree::ancestors(&conn, &c2.guid).unwrap().chain[0].guid,
        second.guid
    );
    assert_eq!(
        tree::host_stats(&conn, &Host::Sensor(1)).unwrap(),
        stats(4, 2, 2, 0, 0, 2)
    );
    assert_eq!(
        tree::host_stats(&conn, &Host::Name("HOST-2".into())).unwrap(),
        stats(2, 1, 1, 0, 0, 2)
    );
    let roots: Vec<String> = tree::roots_of_host(&conn, &Host::Sensor(1))
        .unwrap()
        .into_iter()
        .map(|p| p.guid)
        .collect();
    assert_eq!(roots, vec![first.guid.clone(), second.guid.clone()]);
    assert!(matches!(
        tree::host_stats(&conn, &Host::Name("NOPE".into())),
        Err(tree::TreeError::UnknownHost(_))
    ));
}

#[test]
fn missing_parents_inferred_rows_and_dangling_links() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let parent = P::new(5, "H5", 10, T0, "c:\\windows\\explorer.exe").inferred();
    let child = P::new(5, "H5", 11, T0 + 1, "c:\\x.exe").child_of(&parent);
    // A parent link to a row that does not exist (retention removed it, or bad data).
    let mut orphan = P::new(5, "H5", 12, T0 + 2, "c:\\y.exe");
    orphan.parent = Some(guid(5, 9999, filetime(T0 - 5)));
    for p in [&parent, &child, &orphan] {
        insert_process(&conn, p);
    }
    let a = tree::ancestors(&conn, &child.guid).unwrap();
    assert_eq!(a.chain.len(), 1);
    assert!(a.chain[0].inferred);
    assert_eq!(a.end, AncestryEnd::Root);
    let a = tree::ancestors(&conn, &orphan.guid).unwrap();
    assert!(a.chain.is_empty());
    assert_eq!(
        a.end,
        AncestryEnd::MissingParent {
            guid: orphan.parent.clone().unwrap()
        }
    );
    // Inferred parents count as processes (msticpy); a dangling link makes a root.
    assert_eq!(
        tree::host_stats(&conn, &Host::Sensor(5)).unwrap(),
        stats(3, 2, 2, 0, 1, 2)
    );
    let t = ProcessTree::build(&conn, &child.guid, None).unwrap();
    let mut text = Vec::new();
    cbtrail::export::text::write_tree_text(&mut text, &t).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!(
            "(inferred) c:\\windows\\explorer.exe  | {}",
            parent.guid
        )),
        "{text}"
    );
}

#[test]
fn cycles_and_self_parents_end_every_walk() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let mut a = P::new(6, "H6", 1, T0, "c:\\a.exe");
    let b = P::new(6, "H6", 2, T0 + 1, "c:\\b.exe").child_of(&a);
    a.parent = Some(b.guid.clone());
    let c = P::new(6, "H6", 3, T0 + 2, "c:\\c.exe").child_of(&b);
    let mut s = P::new(6, "H6", 4, T0 + 3, "c:\\s.exe");
    s.parent = Some(s.guid.clone());
    let sc = P::new(6, "H6", 5, T0 + 4, "c:\\sc.exe").child_of(&s);
    for p in [&a, &b, &c, &s, &sc] {
        insert_process(&conn, p);
    }
    let anc = tree::ancestors(&conn, &c.guid).unwrap();
    assert_eq!(
        anc.chain.iter().map(|p| &p.guid).collect::<Vec<_>>(),
        vec![&b.guid, &a.guid]
    );
    assert_eq!(
        anc.end,
        AncestryEnd::Cycle {
            guid: b.guid.clone()
        }
    );
    let d = tree::descendants(&conn, &a.guid, None).unwrap();
    assert_eq!(d.len(), 2, "b and c, a is not revisited");
    let t = ProcessTree::build(&conn, &c.guid, None).unwrap();
    assert_eq!(t.nodes.len(), 3);
    tree::tree_stats(&conn, &c.guid).unwrap();
    // A self-parent is treated as no parent: s is a root with one child.
    assert!(tree::ancestors(&conn, &s.guid).unwrap().chain.is_empty());
    assert!(tree::siblings(&conn, &s.guid).unwrap().is_empty());
    assert_eq!(tree::children(&conn, &s.guid).unwrap().len(), 1);
    // Host: a, b in a cycle (not roots, both branches, unreachable), c a leaf; s root, sc leaf.
    assert_eq!(
        tree::host_stats(&conn, &Host::Sensor(6)).unwrap(),
        stats(5, 1, 2, 2, 0, 2)
    );
    let mut text = Vec::new();
    cbtrail::export::text::write_tree_text(&mut text, &t).unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains("bad data: parent links loop")
    );
}

#[test]
fn unknown_process_is_an_error_not_an_empty_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = fresh_db(dir.path());
    let g = guid(1, 1, filetime(T0));
    for r in [
        tree::ancestors(&conn, &g).map(|_| ()),
        tree::descendants(&conn, &g, None).map(|_| ()),
        tree::siblings(&conn, &g).map(|_| ()),
        tree::tree_stats(&conn, &g).map(|_| ()),
        ProcessTree::build(&conn, &g, None).map(|_| ()),
    ] {
        assert!(matches!(r, Err(tree::TreeError::UnknownProcess(ref x)) if *x == g));
    }
    assert!(tree::children(&conn, &g).unwrap().is_empty());
}
