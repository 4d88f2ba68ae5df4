//! `tree.json`: the CBC exporter's anytree shape, fixed.
//!
//! Every node is `{"guid", "name", "pid", "level", …, "children": [...]}` with the same keys on every
//! node: the root's own name and pid are filled in from its process row (the CBC tool left them
//! empty), `pid` is always a number (or null when unknown), `level` counts generations from the root
//! (0) down, and leaves carry `"children": []`. Extra keys: `hit` (the process the tree was built
//! around), `role` (`ancestor`/`focus`/`descendant`), `inferred`, `path`, `cmdline`, `username`,
//! `start`/`end` (ISO-8601 UTC), and in exports `file` (the process's CSV) and `events` (its row
//! count).
//!
//! The writer is iterative and caps indentation at 32 levels, so a pathological 10,000-level chain
//! neither overflows the stack nor produces quadratic whitespace.

use super::iso8601_ms;
use crate::tree::ProcessTree;
use serde_json::Value;
use std::io::{self, Write};

const MAX_INDENT: usize = 32;

fn indent<W: Write + ?Sized>(w: &mut W, depth: usize) -> io::Result<()> {
    for _ in 0..depth.min(MAX_INDENT) {
        w.write_all(b"  ")?;
    }
    Ok(())
}

/// The fixed fields of one node, in output order.
pub fn node_fields(tree: &ProcessTree, i: usize) -> Vec<(&'static str, Value)> {
    let n = &tree.nodes[i];
    let p = &n.process;
    let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    let time = |v: Option<i64>| v.map_or(Value::Null, |ms| Value::String(iso8601_ms(ms)));
    let name = p.name();
    vec![
        ("guid", Value::String(p.guid.clone())),
        (
            "name",
            if name.is_empty() {
                Value::Null
            } else {
                Value::String(name.to_string())
            },
        ),
        ("pid", p.pid.map_or(Value::Null, Value::from)),
        ("level", Value::from(n.level)),
        ("hit", Value::Bool(i == tree.focus)),
        ("role", serde_json::to_value(n.role).unwrap_or(Value::Null)),
        ("inferred", Value::Bool(p.inferred)),
        ("path", opt(&p.path)),
        ("cmdline", opt(&p.cmdline)),
        ("username", opt(&p.username)),
        ("start", time(p.start_ms)),
        ("end", time(p.end_ms)),
    ]
}

/// Write `tree` as nested JSON. `extra(i)` adds fields to node `i` (after the fixed ones).
pub fn write_tree_json<W: Write + ?Sized>(
    w: &mut W,
    tree: &ProcessTree,
    extra: &dyn Fn(usize) -> Vec<(&'static str, Value)>,
) -> io::Result<()> {
    // (node, next child to write, JSON nesting depth of the node's object)
    let mut stack: Vec<(usize, usize, usize)> = Vec::new();
    open(w, tree, extra, tree.root, 0, &mut stack)?;
    while let Some(top) = stack.last_mut() {
        let (node, next, depth) = *top;
        let kids = &tree.nodes[node].children;
        if next < kids.len() {
            top.1 += 1;
            if next > 0 {
                w.write_all(b",\n")?;
            }
            indent(w, depth + 2)?;
            open(w, tree, extra, kids[next], depth + 2, &mut stack)?;
        } else {
            stack.pop();
            w.write_all(b"\n")?;
            indent(w, depth + 1)?;
            w.write_all(b"]\n")?;
            indent(w, depth)?;
            w.write_all(b"}")?;
        }
    }
    w.write_all(b"\n")
}

fn open<W: Write + ?Sized>(
    w: &mut W,
    tree: &ProcessTree,
    extra: &dyn Fn(usize) -> Vec<(&'static str, Value)>,
    node: usize,
    depth: usize,
    stack: &mut Vec<(usize, usize, usize)>,
) -> io::Result<()> {
    w.write_all(b"{\n")?;
    for (k, v) in node_fields(tree, node).into_iter().chain(extra(node)) {
        indent(w, depth + 1)?;
        write!(w, "\"{k}\": ")?;
        serde_json::to_writer(&mut *w, &v)?;
        w.write_all(b",\n")?;
    }
    indent(w, depth + 1)?;
    if tree.nodes[node].children.is_empty() {
        w.write_all(b"\"children\": []\n")?;
        indent(w, depth)?;
        w.write_all(b"}")?;
    } else {
        w.write_all(b"\"children\": [\n")?;
        stack.push((node, 0, depth));
    }
    Ok(())
}

/// The tree as a string (CLI output, tests).
pub fn tree_json_string(tree: &ProcessTree) -> String {
    let mut v = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_tree_json(&mut v, tree, &|_| Vec::new());
    String::from_utf8_lossy(&v).into_owned()
}
