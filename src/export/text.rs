//! cbinterface-style text: an indented execution tree of command lines and an ancestry list.
//!
//! Tree: one process per line, `<marker><indent><command line>  | <guid>`, two spaces per
//! generation, the marker column `* ` on the process the tree was built around. Processes known
//! only as someone's parent read `(inferred) …`. Past 40 generations the indentation stops growing
//! and the line starts with `[L<level>] ` instead, so a pathological chain stays readable.
//!
//! Ancestry: the process, then its parent, grandparent, … each one step further indented:
//! `<start time>:  <command line>  | <guid>`.

use crate::tree::{Ancestry, AncestryEnd, Process, ProcessTree};
use std::io::{self, Write};

const MAX_INDENT_LEVELS: u32 = 40;

fn write_indent<W: Write + ?Sized>(w: &mut W, level: u32) -> io::Result<()> {
    for _ in 0..level.min(MAX_INDENT_LEVELS) {
        w.write_all(b"  ")?;
    }
    if level > MAX_INDENT_LEVELS {
        write!(w, "[L{level}] ")?;
    }
    Ok(())
}

fn end_note(end: &AncestryEnd) -> Option<String> {
    match end {
        AncestryEnd::Root => None,
        AncestryEnd::MissingParent { guid } => Some(format!(
            "(parent {guid} of the top process is not in the database)"
        )),
        AncestryEnd::Cycle { guid } => Some(format!(
            "(bad data: parent links loop back to {guid}; ancestry stops there)"
        )),
    }
}

/// Write the execution tree.
pub fn write_tree_text<W: Write + ?Sized>(w: &mut W, tree: &ProcessTree) -> io::Result<()> {
    writeln!(w, "------ Process Execution Tree ------")?;
    if let Some(note) = end_note(&tree.ancestry_end) {
        writeln!(w, "{note}")?;
    }
    for i in tree.preorder() {
        let n = &tree.nodes[i];
        w.write_all(if i == tree.focus { b"* " } else { b"  " })?;
        write_indent(w, n.level)?;
        writeln!(w, "{}  | {}", n.process.label(), n.process.guid)?;
    }
    if tree.children_beyond_limit > 0 {
        writeln!(
            w,
            "({} child processes of the deepest generation shown are not listed: {} generation(s) below the marked process were asked for)",
            tree.children_beyond_limit,
            tree.max_levels.unwrap_or(0)
        )?;
    }
    Ok(())
}

fn start_text(p: &Process) -> String {
    match p.start_ms {
        Some(ms) => super::text_time(ms),
        None => "(start unknown)".to_string(),
    }
}

/// Write the ancestry of `process`, the process first.
pub fn write_ancestry_text<W: Write + ?Sized>(
    w: &mut W,
    process: &Process,
    ancestry: &Ancestry,
) -> io::Result<()> {
    writeln!(w, "------ Process Ancestry ------")?;
    for (level, p) in std::iter::once(process).chain(&ancestry.chain).enumerate() {
        w.write_all(b"  ")?;
        write_indent(w, level as u32)?;
        writeln!(w, "{}:  {}  | {}", start_text(p), p.label(), p.guid)?;
    }
    if let Some(note) = end_note(&ancestry.end) {
        writeln!(w, "{note}")?;
    }
    Ok(())
}
