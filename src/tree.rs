//! Process trees over the `processes` table.
//!
//! Identity is the process GUID (sensor id + pid + create time, see `docs/cb-bus.md` §4), never the
//! pid: two processes that reused a pid, or share a pid on two hosts, are different nodes. Every walk
//! keeps a visited set, so self-parents and parent cycles in bad data end the walk instead of looping,
//! and every walk is iterative, so a 10,000-level chain costs heap, not stack.
//!
//! Two access paths, picked by measurement (`examples/tree_bench.rs`, 100,000 processes on one
//! host, release build):
//! - around one process (ancestors, children, siblings, descendants, one tree's statistics):
//!   indexed lookups (`processes` primary key, `processes_parent`), descendants one query per
//!   generation with the whole frontier as a JSON array, so the cost follows the size of the
//!   answer, not of the host: a 70-process tree in ~0.2 ms, a 2,000-deep ancestry in ~5 ms. One
//!   query per process was 5-10x slower; a recursive CTE is as fast but cannot keep a visited set;
//! - a whole host (roots, host statistics): one range scan of the primary key over the host's GUID
//!   prefix into an in-memory adjacency ([`Forest`]) built once per query: ~50-60 ms for 100,000
//!   processes.
//!
//! A host is a sensor: every GUID starts with its sensor id (`0000001c-…`), and a parent's GUID is
//! made with the child's sensor id, so a host's trees never leave its GUID prefix. Legacy decimal ids
//! (sensors too old to send a create time) carry no prefix and are not part of host queries.
//!
//! Summary statistics use msticpy's exact definitions (`docs/process-tree-prior-art.md` §1.6) so
//! numbers compare one to one with a notebook: inferred parents count as processes, a root is a
//! process without a known parent, `LargestTreeDepth` counts the root as 1. Processes caught in a
//! parent cycle have parents, so they are not roots and hang under no root: like in msticpy they
//! count as processes (and as branches when they have children) but add no depth.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;

/// Errors of tree queries.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("database query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("unknown process {0}: no such GUID in the processes table")]
    UnknownProcess(String),
    #[error("unknown host {0}: no sensor or process with that host name or sensor id")]
    UnknownHost(String),
    #[error("invalid host {0:?}: a sensor id must fit in 32 bits")]
    BadHost(String),
}

/// A process GUID as typed by a user or carried by a notification, split into the bare GUID (the
/// tree identity) and the optional segment suffix (kept for provenance only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuidArg {
    /// Bare 36-character lower-case GUID, or a legacy decimal id as given.
    pub guid: String,
    /// Segment suffix in hex (`00000001`, `01778d4d56f2`), when one was given.
    pub segment: Option<String>,
}

/// Why a GUID argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid process GUID {0:?}: expected 8-4-4-4-12 hex digits (36 characters), optionally followed \
     by -<segment> (8 or 12 hex digits), or a legacy decimal id"
)]
pub struct GuidError(pub String);

impl FromStr for GuidArg {
    type Err = GuidError;

    fn from_str(s: &str) -> Result<GuidArg, GuidError> {
        parse_guid(s)
    }
}

/// Parse a GUID argument: a bare GUID (36 characters), a GUID with a segment suffix (45 or 49
/// characters, as in `unique_id`), or a legacy decimal id. Hex digits are lower-cased.
pub fn parse_guid(input: &str) -> Result<GuidArg, GuidError> {
    let s = input.trim();
    let err = || GuidError(input.to_string());
    let is_legacy = {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if is_legacy {
        return Ok(GuidArg {
            guid: s.to_string(),
            segment: None,
        });
    }
    if !s.is_ascii() || s.len() < 36 || !is_bare_guid(&s[..36]) {
        return Err(err());
    }
    let guid = s[..36].to_ascii_lowercase();
    let segment = match s.len() {
        36 => None,
        45 | 49 => {
            let tail = &s[36..];
            let seg = tail.strip_prefix('-').ok_or_else(err)?;
            if !seg.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            Some(seg.to_ascii_lowercase())
        }
        _ => return Err(err()),
    };
    Ok(GuidArg { guid, segment })
}

/// True for `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits, either case).
pub fn is_bare_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// What a CB process GUID encodes: sensor id, pid and create time (UTC ms). `None` for anything
/// that is not a 36-character GUID.
pub fn decode_guid(guid: &str) -> Option<(i64, i64, i64)> {
    if !is_bare_guid(guid) {
        return None;
    }
    let hex: String = guid.chars().filter(|c| *c != '-').collect();
    let v = u128::from_str_radix(&hex, 16).ok()?;
    let sensor = (v >> 96) as u32;
    let pid = (v >> 64) as u32;
    let filetime = v as u64;
    Some((
        i64::from(sensor),
        i64::from(pid),
        filetime_to_ms(filetime as i64),
    ))
}

/// Windows FILETIME (100 ns ticks since 1601) to Unix milliseconds.
pub fn filetime_to_ms(ft: i64) -> i64 {
    ft / 10_000 - 11_644_473_600_000
}

/// One row of `processes`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Process {
    pub guid: String,
    pub parent_guid: Option<String>,
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    pub pid: Option<i64>,
    pub path: Option<String>,
    pub cmdline: Option<String>,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    pub username: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Known only because a child named it as its parent.
    pub inferred: bool,
    pub last_event_ms: Option<i64>,
}

const PROCESS_COLUMNS: &str = "guid, parent_guid, sensor_id, hostname, pid, path, cmdline, md5, \
                               sha256, username, start_ms, end_ms, inferred, last_event_ms";

impl Process {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Process> {
        Ok(Process {
            guid: row.get(0)?,
            parent_guid: row.get(1)?,
            sensor_id: row.get(2)?,
            hostname: row.get(3)?,
            pid: row.get(4)?,
            path: row.get(5)?,
            cmdline: row.get(6)?,
            md5: row.get(7)?,
            sha256: row.get(8)?,
            username: row.get(9)?,
            start_ms: row.get(10)?,
            end_ms: row.get(11)?,
            inferred: row.get::<_, Option<i64>>(12)?.unwrap_or(0) != 0,
            last_event_ms: row.get(13)?,
        })
    }

    /// A stand-in for a process the database does not know (yet): what its GUID encodes.
    pub fn placeholder(guid: &str) -> Process {
        let decoded = decode_guid(guid);
        Process {
            guid: guid.to_string(),
            sensor_id: decoded.map(|d| d.0),
            pid: decoded.map(|d| d.1),
            start_ms: decoded.map(|d| d.2),
            inferred: true,
            ..Process::default()
        }
    }

    /// The parent link used by every walk: absent when empty or pointing at the process itself.
    pub fn parent(&self) -> Option<&str> {
        parent_link(&self.guid, self.parent_guid.as_deref())
    }

    /// Image file name (last component of the path, either separator), or "" when unknown.
    pub fn name(&self) -> &str {
        self.path.as_deref().map(basename).unwrap_or("")
    }

    /// What an analyst reads for this process: command line, else path, else a marker.
    pub fn label(&self) -> String {
        let text = self
            .cmdline
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .or(self.path.as_deref().filter(|p| !p.is_empty()));
        let text = match text {
            Some(t) => one_line(t.trim_end()),
            None => "(unknown)".to_string(),
        };
        if self.inferred {
            format!("(inferred) {text}")
        } else {
            text
        }
    }
}

fn parent_link<'a>(guid: &str, parent: Option<&'a str>) -> Option<&'a str> {
    parent.filter(|p| !p.is_empty() && *p != guid)
}

/// Last component of a Windows or POSIX path.
pub fn basename(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// Keep one process per output line: control characters become visible escapes.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// One process row by GUID.
pub fn process(conn: &Connection, guid: &str) -> Result<Option<Process>, TreeError> {
    let sql = format!("SELECT {PROCESS_COLUMNS} FROM processes WHERE guid = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.query_row([guid], Process::from_row).optional()?)
}

fn require(conn: &Connection, guid: &str) -> Result<Process, TreeError> {
    process(conn, guid)?.ok_or_else(|| TreeError::UnknownProcess(guid.to_string()))
}

/// Direct children, oldest first (start time, then GUID for a stable order).
pub fn children(conn: &Connection, guid: &str) -> Result<Vec<Process>, TreeError> {
    let sql = format!(
        "SELECT {PROCESS_COLUMNS} FROM processes WHERE parent_guid = ?1 AND guid <> ?1 \
         ORDER BY start_ms IS NULL, start_ms, guid"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([guid], Process::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How an upward walk ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AncestryEnd {
    /// The last process has no parent: it is a root.
    Root,
    /// The last process names a parent the database does not hold.
    MissingParent { guid: String },
    /// The last process names a parent already on the chain (bad data).
    Cycle { guid: String },
}

/// A process's ancestors, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Ancestry {
    /// Parent, grandparent, … up to the root (or to where the walk had to stop).
    pub chain: Vec<Process>,
    pub end: AncestryEnd,
}

/// The ancestors of `guid`, nearest first, up to the root. Stops at a cycle or a missing parent
/// and says so in [`Ancestry::end`].
pub fn ancestors(conn: &Connection, guid: &str) -> Result<Ancestry, TreeError> {
    let start = require(conn, guid)?;
    ancestors_of(conn, &start)
}

fn ancestors_of(conn: &Connection, start: &Process) -> Result<Ancestry, TreeError> {
    let mut seen: HashSet<String> = HashSet::from([start.guid.clone()]);
    let mut chain: Vec<Process> = Vec::new();
    let mut next = start.parent().map(str::to_string);
    let end = loop {
        let Some(p) = next else {
            break AncestryEnd::Root;
        };
        if !seen.insert(p.clone()) {
            break AncestryEnd::Cycle { guid: p };
        }
        match process(conn, &p)? {
            None => break AncestryEnd::MissingParent { guid: p },
            Some(row) => {
                next = row.parent().map(str::to_string);
                chain.push(row);
            }
        }
    };
    Ok(Ancestry { chain, end })
}

/// Level of `guid` in its tree, counting the root as 1 (msticpy's depth convention).
pub fn depth(conn: &Connection, guid: &str) -> Result<u32, TreeError> {
    let a = ancestors(conn, guid)?;
    Ok(a.chain.len() as u32 + 1)
}

/// The other children of `guid`'s parent, oldest first. A root has no siblings.
pub fn siblings(conn: &Connection, guid: &str) -> Result<Vec<Process>, TreeError> {
    let me = require(conn, guid)?;
    let Some(parent) = me.parent() else {
        return Ok(Vec::new());
    };
    let mut all = children(conn, parent)?;
    all.retain(|p| p.guid != me.guid);
    Ok(all)
}

/// A descendant and its generation below the starting process (children are level 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Descendant {
    pub level: u32,
    pub process: Process,
}

/// Descendants of `guid` breadth first, to `max_levels` generations (`None`: all of them). Each
/// process appears once even when bad data links it twice.
pub fn descendants(
    conn: &Connection,
    guid: &str,
    max_levels: Option<u32>,
) -> Result<Vec<Descendant>, TreeError> {
    require(conn, guid)?;
    let mut seen: HashSet<String> = HashSet::from([guid.to_string()]);
    descendants_from(conn, guid, max_levels, &mut seen)
}

fn descendants_from(
    conn: &Connection,
    guid: &str,
    max_levels: Option<u32>,
    seen: &mut HashSet<String>,
) -> Result<Vec<Descendant>, TreeError> {
    let sql = format!(
        "SELECT {PROCESS_COLUMNS} FROM processes \
         WHERE parent_guid IN (SELECT value FROM json_each(?1)) AND guid <> parent_guid \
         ORDER BY start_ms IS NULL, start_ms, guid"
    );
    let mut out: Vec<Descendant> = Vec::new();
    generations(
        conn,
        &sql,
        guid,
        max_levels,
        seen,
        Process::from_row,
        |p| &p.guid,
        |level, p| out.push(Descendant { level, process: p }),
    )?;
    Ok(out)
}

/// Breadth-first walk down from `start`, one query per generation (the whole frontier at once, as
/// a JSON array), keeping a visited set so a process is reported once and cycles end. Measured
/// against one query per process and a recursive CTE in `examples/tree_bench.rs`: per-process
/// queries cost ~15 µs each, and a CTE cannot keep a visited set (it either loses the generation
/// numbers or re-walks a cycle until its depth bound).
#[allow(clippy::too_many_arguments)]
fn generations<T>(
    conn: &Connection,
    sql: &str,
    start: &str,
    max_levels: Option<u32>,
    seen: &mut HashSet<String>,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
    guid_of: fn(&T) -> &str,
    mut emit: impl FnMut(u32, T),
) -> Result<(), TreeError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut frontier: Vec<String> = vec![start.to_string()];
    let mut level = 0u32;
    while !frontier.is_empty() && max_levels.is_none_or(|m| level < m) {
        level += 1;
        let keys = serde_json::Value::from(std::mem::take(&mut frontier)).to_string();
        let mut rows = stmt.query([keys])?;
        while let Some(row) = rows.next()? {
            let item = map(row)?;
            let g = guid_of(&item);
            if !seen.contains(g) {
                seen.insert(g.to_string());
                frontier.push(g.to_string());
                emit(level, item);
            }
        }
    }
    Ok(())
}

/// Children of `parents` not already in `seen` (the generation after a depth limit).
fn count_children(
    conn: &Connection,
    parents: &[&str],
    seen: &HashSet<String>,
) -> Result<u64, TreeError> {
    if parents.is_empty() {
        return Ok(0);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT guid FROM processes \
         WHERE parent_guid IN (SELECT value FROM json_each(?1)) AND guid <> parent_guid",
    )?;
    let keys = serde_json::Value::from(parents.to_vec()).to_string();
    let mut rows = stmt.query([keys])?;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let g: String = r.get(0)?;
        n += u64::from(!seen.contains(&g));
    }
    Ok(n)
}

/// Where a node of a [`ProcessTree`] stands relative to the process the tree was built around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ancestor,
    Focus,
    Descendant,
}

/// A node of a [`ProcessTree`].
#[derive(Debug, Clone, PartialEq)]
pub struct TreeNode {
    pub process: Process,
    /// Generation below the tree's root (the root is 0).
    pub level: u32,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub role: Role,
}

/// The lineage of one process plus its descendants, as an arena: the chain from the topmost
/// ancestor down to the focus process, then the focus's descendants to a number of generations.
/// Ancestors' other children are not included.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessTree {
    pub nodes: Vec<TreeNode>,
    /// Index of the topmost ancestor (0).
    pub root: usize,
    /// Index of the process the tree was built around.
    pub focus: usize,
    /// How the upward walk ended above the root.
    pub ancestry_end: AncestryEnd,
    /// Generations of descendants requested (`None`: all).
    pub max_levels: Option<u32>,
    /// Children of the deepest included generation that the generation limit left out (0 when
    /// nothing was cut), so a limited tree never looks complete by accident.
    pub children_beyond_limit: u64,
}

impl ProcessTree {
    /// Build the tree around `guid`: ancestors to the root, `guid`, descendants to `max_levels`.
    pub fn build(
        conn: &Connection,
        guid: &str,
        max_levels: Option<u32>,
    ) -> Result<ProcessTree, TreeError> {
        let focus = require(conn, guid)?;
        let ancestry = ancestors_of(conn, &focus)?;
        let mut seen: HashSet<String> = ancestry.chain.iter().map(|p| p.guid.clone()).collect();
        seen.insert(focus.guid.clone());
        let below = descendants_from(conn, &focus.guid, max_levels, &mut seen)?;
        let beyond = match max_levels {
            Some(m) => {
                let edge: Vec<&str> = if m == 0 {
                    vec![focus.guid.as_str()]
                } else {
                    below
                        .iter()
                        .filter(|d| d.level == m)
                        .map(|d| d.process.guid.as_str())
                        .collect()
                };
                count_children(conn, &edge, &seen)?
            }
            None => 0,
        };
        let mut tree = ProcessTree::assemble(ancestry, focus, below, max_levels);
        tree.children_beyond_limit = beyond;
        Ok(tree)
    }

    /// A one-node tree for a process the database does not know yet (a hit that arrived before any
    /// of its events): what the GUID encodes, marked inferred.
    pub fn placeholder(guid: &str) -> ProcessTree {
        ProcessTree::assemble(
            Ancestry {
                chain: Vec::new(),
                end: AncestryEnd::Root,
            },
            Process::placeholder(guid),
            Vec::new(),
            Some(0),
        )
    }

    fn assemble(
        ancestry: Ancestry,
        focus: Process,
        below: Vec<Descendant>,
        max_levels: Option<u32>,
    ) -> ProcessTree {
        let mut nodes: Vec<TreeNode> = Vec::with_capacity(ancestry.chain.len() + 1 + below.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, p) in ancestry.chain.into_iter().rev().enumerate() {
            index.insert(p.guid.clone(), i);
            nodes.push(TreeNode {
                process: p,
                level: i as u32,
                parent: i.checked_sub(1),
                children: Vec::new(),
                role: Role::Ancestor,
            });
        }
        let focus_idx = nodes.len();
        index.insert(focus.guid.clone(), focus_idx);
        nodes.push(TreeNode {
            process: focus,
            level: focus_idx as u32,
            parent: focus_idx.checked_sub(1),
            children: Vec::new(),
            role: Role::Focus,
        });
        for d in below {
            // Breadth-first order guarantees the parent is already placed.
            let parent = d.process.parent().and_then(|p| index.get(p)).copied();
            let level = parent.map_or(focus_idx as u32 + d.level, |p| nodes[p].level + 1);
            index.insert(d.process.guid.clone(), nodes.len());
            nodes.push(TreeNode {
                process: d.process,
                level,
                parent,
                children: Vec::new(),
                role: Role::Descendant,
            });
        }
        for i in 1..nodes.len() {
            if let Some(p) = nodes[i].parent {
                nodes[p].children.push(i);
            }
        }
        ProcessTree {
            nodes,
            root: 0,
            focus: focus_idx,
            ancestry_end: ancestry.end,
            max_levels,
            children_beyond_limit: 0,
        }
    }

    /// Node indices in depth-first pre-order (parents before children, siblings oldest first): the
    /// order a text tree is printed in. Iterative, so deep chains are safe.
    pub fn preorder(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![self.root];
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend(self.nodes[i].children.iter().rev());
        }
        out
    }

    /// The focus process.
    pub fn focus(&self) -> &Process {
        &self.nodes[self.focus].process
    }
}

/// msticpy's `get_summary_info` numbers, field for field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TreeStats {
    /// All processes, inferred parents included.
    #[serde(rename = "Processes")]
    pub processes: u64,
    /// Processes without a known parent.
    #[serde(rename = "RootProcesses")]
    pub root_processes: u64,
    /// Processes that are nobody's parent.
    #[serde(rename = "LeafProcesses")]
    pub leaf_processes: u64,
    /// Processes with a parent and at least one child.
    #[serde(rename = "BranchProcesses")]
    pub branch_processes: u64,
    /// Roots that are also leaves.
    #[serde(rename = "IsolatedProcesses")]
    pub isolated_processes: u64,
    /// Generations of the deepest tree, the root counting 1 (0 for an empty set).
    #[serde(rename = "LargestTreeDepth")]
    pub largest_tree_depth: u64,
}

impl TreeStats {
    /// Combine the statistics of disjoint sets of trees (different hosts).
    pub fn merge(&mut self, other: &TreeStats) {
        self.processes += other.processes;
        self.root_processes += other.root_processes;
        self.leaf_processes += other.leaf_processes;
        self.branch_processes += other.branch_processes;
        self.isolated_processes += other.isolated_processes;
        self.largest_tree_depth = self.largest_tree_depth.max(other.largest_tree_depth);
    }
}

impl fmt::Display for TreeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Processes: {}", self.processes)?;
        writeln!(f, "RootProcesses: {}", self.root_processes)?;
        writeln!(f, "LeafProcesses: {}", self.leaf_processes)?;
        writeln!(f, "BranchProcesses: {}", self.branch_processes)?;
        writeln!(f, "IsolatedProcesses: {}", self.isolated_processes)?;
        writeln!(f, "LargestTreeDepth: {}", self.largest_tree_depth)
    }
}

/// An in-memory adjacency over a set of processes (a host, or one tree), built once per query.
/// A parent link that leaves the set or points at the process itself counts as no parent.
#[derive(Debug, Clone, Default)]
pub struct Forest {
    guids: Vec<String>,
    parent: Vec<Option<u32>>,
    // Children in CSR form: children of i are `child_list[child_start[i]..child_start[i + 1]]`.
    child_start: Vec<u32>,
    child_list: Vec<u32>,
}

impl Forest {
    /// Build from `(guid, parent_guid)` pairs. A repeated GUID keeps its first row (msticpy keeps
    /// the first of duplicate keys too); the database never has repeats, its primary key is the GUID.
    pub fn from_edges<I>(edges: I) -> Forest
    where
        I: IntoIterator<Item = (String, Option<String>)>,
    {
        let all: Vec<(String, Option<String>)> = edges.into_iter().collect();
        // Index borrowed from `all` (no key copies); the first row of a repeated GUID wins.
        let mut index: HashMap<&str, u32> = HashMap::with_capacity(all.len());
        let mut keep: Vec<usize> = Vec::with_capacity(all.len());
        for (i, (g, _)) in all.iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(v) = index.entry(g.as_str()) {
                v.insert(keep.len() as u32);
                keep.push(i);
            }
        }
        let parent: Vec<Option<u32>> = keep
            .iter()
            .map(|&i| {
                let (g, p) = &all[i];
                parent_link(g, p.as_deref()).and_then(|p| index.get(p).copied())
            })
            .collect();
        drop(index);
        let guids: Vec<String> = if keep.len() == all.len() {
            all.into_iter().map(|(g, _)| g).collect()
        } else {
            let mut all: Vec<Option<String>> = all.into_iter().map(|(g, _)| Some(g)).collect();
            keep.iter().filter_map(|&i| all[i].take()).collect()
        };
        let n = guids.len();
        let mut counts = vec![0u32; n + 1];
        for p in parent.iter().flatten() {
            counts[*p as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let child_start = counts.clone();
        let mut fill = counts;
        let mut child_list = vec![0u32; parent.iter().flatten().count()];
        for (c, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                let slot = &mut fill[*p as usize];
                child_list[*slot as usize] = c as u32;
                *slot += 1;
            }
        }
        Forest {
            guids,
            parent,
            child_start,
            child_list,
        }
    }

    /// Number of processes.
    pub fn len(&self) -> usize {
        self.guids.len()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.guids.is_empty()
    }

    fn children_of(&self, i: usize) -> &[u32] {
        &self.child_list[self.child_start[i] as usize..self.child_start[i + 1] as usize]
    }

    /// GUIDs of the roots, in input order.
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.guids
            .iter()
            .zip(&self.parent)
            .filter(|(_, p)| p.is_none())
            .map(|(g, _)| g.as_str())
    }

    /// Generation of every process below its root (roots 0), `None` for processes no root reaches
    /// (parent cycles). Breadth first from all roots; each process is assigned once.
    pub fn levels(&self) -> Vec<Option<u32>> {
        let mut level: Vec<Option<u32>> = vec![None; self.len()];
        let mut queue: VecDeque<usize> = VecDeque::new();
        for (i, p) in self.parent.iter().enumerate() {
            if p.is_none() {
                level[i] = Some(0);
                queue.push_back(i);
            }
        }
        while let Some(i) = queue.pop_front() {
            let next = level[i].map(|l| l + 1);
            for &c in self.children_of(i) {
                let c = c as usize;
                if level[c].is_none() {
                    level[c] = next;
                    queue.push_back(c);
                }
            }
        }
        level
    }

    /// msticpy's summary statistics of the whole set.
    pub fn stats(&self) -> TreeStats {
        let mut s = TreeStats {
            processes: self.len() as u64,
            ..TreeStats::default()
        };
        for i in 0..self.len() {
            let root = self.parent[i].is_none();
            let leaf = self.children_of(i).is_empty();
            s.root_processes += u64::from(root);
            s.leaf_processes += u64::from(leaf);
            s.branch_processes += u64::from(!root && !leaf);
            s.isolated_processes += u64::from(root && leaf);
        }
        s.largest_tree_depth = self
            .levels()
            .into_iter()
            .flatten()
            .max()
            .map_or(0, |l| u64::from(l) + 1);
        s
    }
}

/// A host: a sensor id, or a host name (matched case-insensitively against `sensors`, and as typed,
/// upper-cased or lower-cased against `processes.hostname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Sensor(i64),
    Name(String),
}

impl FromStr for Host {
    type Err = TreeError;

    fn from_str(s: &str) -> Result<Host, TreeError> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u32>() {
                Ok(id) => Ok(Host::Sensor(i64::from(id))),
                Err(_) => Err(TreeError::BadHost(s.to_string())),
            };
        }
        Ok(Host::Name(s.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Sensor(id) => write!(f, "sensor {id}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// GUID prefix of a sensor's processes.
fn sensor_prefix(sensor_id: i64) -> Option<String> {
    u32::try_from(sensor_id).ok().map(|id| format!("{id:08x}-"))
}

/// The sensor ids a host stands for (a host name can have several after a sensor reinstall).
pub fn host_sensors(conn: &Connection, host: &Host) -> Result<Vec<i64>, TreeError> {
    let mut ids: Vec<i64> = match host {
        Host::Sensor(id) => vec![*id],
        Host::Name(name) => {
            let mut ids: Vec<i64> = conn
                .prepare_cached("SELECT sensor_id FROM sensors WHERE hostname = ?1 COLLATE NOCASE")?
                .query_map([name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            // The processes_host index covers (hostname, start_ms, guid): no table reads. Three
            // seeks (as typed, upper, lower case) instead of a NOCASE scan the index cannot serve.
            let prefixes: Vec<String> = conn
                .prepare_cached(
                    "SELECT DISTINCT substr(guid, 1, 8) FROM processes
                     WHERE hostname IN (?1, upper(?1), lower(?1))",
                )?
                .query_map([name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ids.extend(
                prefixes
                    .iter()
                    .filter_map(|p| u32::from_str_radix(p, 16).ok())
                    .map(i64::from),
            );
            ids
        }
    };
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|id| u32::try_from(*id).is_ok());
    if ids.is_empty() {
        return Err(TreeError::UnknownHost(host.to_string()));
    }
    Ok(ids)
}

/// Load every process of the given sensors into a [`Forest`] (one primary-key range scan each).
pub fn load_sensors(conn: &Connection, sensors: &[i64]) -> Result<Forest, TreeError> {
    let mut edges: Vec<(String, Option<String>)> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT guid, parent_guid FROM processes WHERE guid >= ?1 AND guid < ?2 ORDER BY guid",
    )?;
    for id in sensors {
        let Some(lo) = sensor_prefix(*id) else {
            continue;
        };
        // '.' sorts right after '-': [lo, hi) is exactly the GUIDs starting with `lo`.
        let hi = format!("{}.", &lo[..8]);
        let rows = stmt.query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            edges.push(row?);
        }
    }
    Ok(Forest::from_edges(edges))
}

/// Load every process of a host.
pub fn load_host(conn: &Connection, host: &Host) -> Result<Forest, TreeError> {
    let sensors = host_sensors(conn, host)?;
    load_sensors(conn, &sensors)
}

/// The roots of a host's trees (processes without a known parent), oldest first.
pub fn roots_of_host(conn: &Connection, host: &Host) -> Result<Vec<Process>, TreeError> {
    let forest = load_host(conn, host)?;
    let mut out = Vec::new();
    for g in forest.roots() {
        out.extend(process(conn, g)?);
    }
    out.sort_by(|a, b| {
        (a.start_ms.is_none(), a.start_ms, &a.guid).cmp(&(
            b.start_ms.is_none(),
            b.start_ms,
            &b.guid,
        ))
    });
    Ok(out)
}

/// msticpy statistics of every tree of a host.
pub fn host_stats(conn: &Connection, host: &Host) -> Result<TreeStats, TreeError> {
    Ok(load_host(conn, host)?.stats())
}

/// msticpy statistics of the whole tree `guid` belongs to (msticpy's `get_root_tree`): the topmost
/// ancestor and all of its descendants.
pub fn tree_stats(conn: &Connection, guid: &str) -> Result<TreeStats, TreeError> {
    let me = require(conn, guid)?;
    let ancestry = ancestors_of(conn, &me)?;
    let top = ancestry.chain.last().cloned().unwrap_or(me);
    let mut seen: HashSet<String> = HashSet::from([top.guid.clone()]);
    let mut edges: Vec<(String, Option<String>)> = vec![(top.guid.clone(), top.parent_guid)];
    // Only the links are needed: a light query per generation.
    generations(
        conn,
        "SELECT guid, parent_guid FROM processes \
         WHERE parent_guid IN (SELECT value FROM json_each(?1)) AND guid <> parent_guid",
        &top.guid,
        None,
        &mut seen,
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
        |e| &e.0,
        |_, e| edges.push(e),
    )?;
    Ok(Forest::from_edges(edges).stats())
}

/// Sensor ids present in `processes`, found with a skip scan over GUID prefixes (one index seek per
/// sensor, not a table scan). Rows whose GUID is not a CB GUID (legacy decimal ids) are skipped.
pub fn all_sensors(conn: &Connection) -> Result<Vec<i64>, TreeError> {
    let mut stmt =
        conn.prepare_cached("SELECT guid FROM processes WHERE guid >= ?1 ORDER BY guid LIMIT 1")?;
    let mut out = Vec::new();
    let mut from = String::new();
    while let Some(g) = stmt
        .query_row([&from], |r| r.get::<_, String>(0))
        .optional()?
    {
        match g.get(..9) {
            Some(prefix) if prefix.ends_with('-') && is_bare_guid(&g) => {
                if let Ok(id) = u32::from_str_radix(&prefix[..8], 16) {
                    out.push(i64::from(id));
                }
                from = format!("{}.", &prefix[..8]);
            }
            // Not a CB GUID: step past this one row.
            _ => from = format!("{g}\u{0}"),
        }
    }
    Ok(out)
}

/// msticpy statistics of every host in the database (hosts are disjoint, so numbers add up and
/// the depth is the largest).
pub fn all_hosts_stats(conn: &Connection) -> Result<TreeStats, TreeError> {
    let mut total = TreeStats::default();
    for id in all_sensors(conn)? {
        total.merge(&load_sensors(conn, &[id])?.stats());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_forms() {
        let g = "00000007-0000-0FD4-01d1-209aa22a57ee";
        assert_eq!(parse_guid(g).unwrap().guid, g.to_ascii_lowercase());
        let a = parse_guid("00000007-0000-0fd4-01d1-209aa22a57ee-00000001").unwrap();
        assert_eq!(a.segment.as_deref(), Some("00000001"));
        let b = parse_guid(" 00007c6f-0000-0a28-01d6-ffde20451832-01778d4d56f2 ").unwrap();
        assert_eq!(b.guid, "00007c6f-0000-0a28-01d6-ffde20451832");
        assert_eq!(b.segment.as_deref(), Some("01778d4d56f2"));
        assert_eq!(
            parse_guid("-8915740139778150230").unwrap().guid,
            "-8915740139778150230"
        );
        for bad in [
            "",
            "xyz",
            "00000007-0000-0fd4-01d1-209aa22a57e",
            "00000007-0000-0fd4-01d1-209aa22a57ee-1",
            "00000007-0000-0fd4-01d1-209aa22a57ee-0000000g",
            "00000007_0000-0fd4-01d1-209aa22a57ee",
            "00000007-0000-0fd4-01d1-209aa22a57ée",
        ] {
            assert!(parse_guid(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn guid_decoding_matches_the_prior_art_worked_example() {
        // docs/process-tree-prior-art.md §3: sensor 31855, pid 2600, 2021-02-10 18:54:14.323 UTC.
        let (sensor, pid, ms) = decode_guid("00007c6f-0000-0a28-01d6-ffde20451832").unwrap();
        assert_eq!((sensor, pid, ms), (31855, 2600, 1_612_983_254_323));
    }

    #[test]
    fn forest_normalizes_self_parents_and_outside_parents() {
        let f = Forest::from_edges([
            ("a".to_string(), Some("a".to_string())),
            ("b".to_string(), Some("zz".to_string())),
            ("c".to_string(), Some("b".to_string())),
        ]);
        let s = f.stats();
        assert_eq!(s.root_processes, 2);
        assert_eq!(s.isolated_processes, 1);
        assert_eq!(s.largest_tree_depth, 2);
        assert_eq!(f.roots().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn repeated_guids_keep_their_first_row() {
        let f = Forest::from_edges([
            ("a".to_string(), None),
            ("b".to_string(), Some("a".to_string())),
            ("b".to_string(), None),
            ("c".to_string(), Some("b".to_string())),
        ]);
        assert_eq!(f.len(), 3);
        assert_eq!(f.roots().collect::<Vec<_>>(), ["a"]);
        assert_eq!(f.stats().largest_tree_depth, 3);
    }

    #[test]
    fn empty_forest() {
        assert_eq!(Forest::from_edges([]).stats(), TreeStats::default());
    }

    #[test]
    fn labels_stay_on_one_line() {
        let p = Process {
            cmdline: Some("a\nb".into()),
            inferred: true,
            ..Process::default()
        };
        assert_eq!(p.label(), "(inferred) a\\nb");
        assert_eq!(basename("c:\\x\\y.exe"), "y.exe");
        assert_eq!(basename("/usr/bin/ls"), "ls");
    }
}
