//! Export of one process with its lineage and descendants: per-process event CSVs, `tree.json`,
//! `tree.txt`, the triggering notification and a manifest, written as one directory that appears
//! complete or not at all.
//!
//! What is exported for a process P: every ancestor of P up to the root, P, and P's descendants to
//! `follow_childprocs` generations (1 = children only, 0 = none). Each of them gets one CSV of all
//! its events, oldest first, nothing capped (see [`csv`]). The full layout, the naming placeholders
//! and the atomicity rules are in `docs/exports.md`.
//!
//! Atomicity: the directory is built under a hidden temporary name next to its destination
//! (`.<name>.cbtrail-tmp`), every file is written to a temporary name, flushed, `fsync`ed and
//! renamed, the directory is `fsync`ed, then renamed into place. A re-export first moves the old
//! directory aside (`.<name>.cbtrail-old`) and deletes it after the new one is in place, so readers
//! see the old complete export, then (for an instant) none, then the new complete one; never a
//! partial one. Leftovers of a crash are removed by the next export of the same directory.
//!
//! All reads of one export happen in one read transaction: the files describe one consistent
//! snapshot of the database, and the highest event id of that snapshot is reported as the
//! watermark the job worker uses to notice later events.

pub mod csv;
pub mod summary;
pub mod text;
pub mod treejson;

use crate::tree::{ProcessTree, Role, TreeError};
use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::{Map, Value, json};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use summary::SummarySpec;

/// Default generations of descendants exported below the hit process.
pub const DEFAULT_FOLLOW_CHILDPROCS: u32 = 5;

/// Default time around the hit within which ancestors' events are exported.
pub const DEFAULT_ANCESTOR_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Default per-process CSV file name.
pub const DEFAULT_CSV_PATTERN: &str = "{level}_{guid}.csv";

/// Errors of exports.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("summary spec: {0}")]
    Spec(String),
    #[error("file name pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("{0} already exists (pass --force to replace it)")]
    Exists(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD`, `HH:MM:SS.mmm` of Unix milliseconds, UTC.
fn date_and_time(ms: i64) -> (String, String) {
    let (y, mo, d) = civil_from_days(ms.div_euclid(86_400_000));
    let r = ms.rem_euclid(86_400_000);
    (
        format!("{y:04}-{mo:02}-{d:02}"),
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            r / 3_600_000,
            r / 60_000 % 60,
            r / 1000 % 60,
            r % 1000
        ),
    )
}

/// Unix milliseconds as ISO-8601 UTC: `2015-11-16T18:14:28.819Z`.
pub fn iso8601_ms(ms: i64) -> String {
    let (date, time) = date_and_time(ms);
    format!("{date}T{time}Z")
}

/// Unix milliseconds as analysts read them in text output: `2015-11-16 18:14:28.819 UTC`.
pub fn text_time(ms: i64) -> String {
    let (date, time) = date_and_time(ms);
    format!("{date} {time} UTC")
}

/// One stored event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventRow {
    /// Row id: storage order, which depends on how deliveries were batched, so it is not part of
    /// what an export shows (see [`EventRow::columns`]).
    pub id: i64,
    pub process_guid: Option<String>,
    pub timestamp_ms: i64,
    pub event_type: String,
    pub sensor_id: Option<i64>,
    pub hostname: Option<String>,
    pub pid: Option<i64>,
    pub process_path: Option<String>,
    pub process_md5: Option<String>,
    pub process_sha256: Option<String>,
    pub path: Option<String>,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    pub action: Option<String>,
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
    /// The `details` column as stored (a JSON object).
    pub details: String,
}

const EVENT_COLUMNS: &str = "id, process_guid, timestamp_ms, event_type, sensor_id, hostname, pid, \
     process_path, process_md5, process_sha256, path, md5, sha256, action, target_guid, remote_ip, \
     remote_port, local_ip, local_port, protocol, direction, domain, command_line, username, details";

impl EventRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
        Ok(EventRow {
            id: r.get(0)?,
            process_guid: r.get(1)?,
            timestamp_ms: r.get(2)?,
            event_type: r.get(3)?,
            sensor_id: r.get(4)?,
            hostname: r.get(5)?,
            pid: r.get(6)?,
            process_path: r.get(7)?,
            process_md5: r.get(8)?,
            process_sha256: r.get(9)?,
            path: r.get(10)?,
            md5: r.get(11)?,
            sha256: r.get(12)?,
            action: r.get(13)?,
            target_guid: r.get(14)?,
            remote_ip: r.get(15)?,
            remote_port: r.get(16)?,
            local_ip: r.get(17)?,
            local_port: r.get(18)?,
            protocol: r.get(19)?,
            direction: r.get(20)?,
            domain: r.get(21)?,
            command_line: r.get(22)?,
            username: r.get(23)?,
            details: r.get(24)?,
        })
    }

    /// The typed columns by name, as JSON (null-valued ones omitted). The row id is left out: the
    /// writer stores each batch's events grouped by process, so ids differ between a live run and
    /// a replay of the same traffic, and an export must be the same whichever way it was fed.
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let s = |v: &Option<String>| v.clone().map(Value::String);
        let i = |v: Option<i64>| v.map(Value::from);
        let cols: [(&'static str, Option<Value>); 23] = [
            ("process_guid", s(&self.process_guid)),
            ("timestamp_ms", Some(Value::from(self.timestamp_ms))),
            ("event_type", Some(Value::String(self.event_type.clone()))),
            ("sensor_id", i(self.sensor_id)),
            ("hostname", s(&self.hostname)),
            ("pid", i(self.pid)),
            ("process_path", s(&self.process_path)),
            ("process_md5", s(&self.process_md5)),
            ("process_sha256", s(&self.process_sha256)),
            ("path", s(&self.path)),
            ("md5", s(&self.md5)),
            ("sha256", s(&self.sha256)),
            ("action", s(&self.action)),
            ("target_guid", s(&self.target_guid)),
            ("remote_ip", s(&self.remote_ip)),
            ("remote_port", i(self.remote_port)),
            ("local_ip", s(&self.local_ip)),
            ("local_port", i(self.local_port)),
            ("protocol", s(&self.protocol)),
            ("direction", s(&self.direction)),
            ("domain", s(&self.domain)),
            ("command_line", s(&self.command_line)),
            ("username", s(&self.username)),
        ];
        cols.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()
    }

    /// `details` parsed; text that is not JSON (never written by the store) is kept as a string.
    pub fn parsed_details(&self) -> Value {
        serde_json::from_str(&self.details).unwrap_or_else(|_| Value::String(self.details.clone()))
    }

    /// An attribute for the summary: a typed column, else a `details` key, else a dotted path into
    /// `details`.
    pub fn attribute(&self, name: &str, details: &Value) -> Option<Value> {
        if let Some((_, v)) = self.columns().into_iter().find(|(k, _)| *k == name) {
            return Some(v);
        }
        if let Some(v) = details.get(name) {
            return (!v.is_null()).then(|| v.clone());
        }
        let mut cur = details;
        for part in name.split('.') {
            cur = cur.get(part)?;
        }
        (!cur.is_null()).then(|| cur.clone())
    }

    /// The whole event as one JSON object: typed columns, `timestamp` in ISO-8601, `details`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in self.columns() {
            m.insert(k.to_string(), v);
        }
        if self.timestamp_ms != 0 {
            m.insert(
                "timestamp".into(),
                Value::String(iso8601_ms(self.timestamp_ms)),
            );
        }
        m.insert("details".into(), self.parsed_details());
        Value::Object(m)
    }
}

/// Stream the events of one process, oldest first, optionally only some types.
pub fn for_each_event(
    conn: &Connection,
    guid: &str,
    types: &[String],
    f: impl FnMut(EventRow) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    for_each_event_in(conn, guid, types, None, f)
}

/// [`for_each_event`], only events whose time is within `window` (inclusive UTC ms) if given.
pub fn for_each_event_in(
    conn: &Connection,
    guid: &str,
    types: &[String],
    window: Option<(i64, i64)>,
    mut f: impl FnMut(EventRow) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    // The process's segments (event_segments_process) give its rows as id ranges; the sort is over
    // one process's events only.
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE process_guid = ?1 \
         AND (?2 IS NULL OR event_type IN (SELECT value FROM json_each(?2))) \
         AND (?3 IS NULL OR timestamp_ms BETWEEN ?3 AND ?4) \
         ORDER BY timestamp_ms, id"
    );
    let filter = (!types.is_empty()).then(|| Value::from(types.to_vec()).to_string());
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params![
        guid,
        filter,
        window.map(|w| w.0),
        window.map(|w| w.1)
    ])?;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        f(EventRow::from_row(r)?)?;
        n += 1;
    }
    Ok(n)
}

/// A notification that triggered an export.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub notification_id: i64,
    pub routing_key: String,
    pub kind: String,
    pub received_ms: i64,
    pub watchlist_name: Option<String>,
    pub feed_name: Option<String>,
    /// The notification body as received.
    pub json: String,
}

/// Load a stored notification.
pub fn load_trigger(conn: &Connection, id: i64) -> Result<Option<Trigger>, ExportError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, routing_key, type, received_ms, watchlist_name, feed_name, json \
         FROM notifications WHERE id = ?1",
    )?;
    Ok(stmt
        .query_row([id], |r| {
            Ok(Trigger {
                notification_id: r.get(0)?,
                routing_key: r.get(1)?,
                kind: r.get(2)?,
                received_ms: r.get(3)?,
                watchlist_name: r.get(4)?,
                feed_name: r.get(5)?,
                json: r.get(6)?,
            })
        })
        .optional()?)
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Generations of descendants below the hit process (0: none).
    pub follow_childprocs: u32,
    /// Ancestors' CSVs hold their events from this long before the hit process started to this
    /// long after the last event of the hit process and its exported descendants; `None`: all of
    /// them. Long-lived ancestors (`services.exe`, `explorer.exe`) would otherwise put days of
    /// unrelated activity into every export. What is left out is counted in the manifest and in
    /// `tree.json` (`events_outside_window`), never dropped silently.
    pub ancestor_window: Option<std::time::Duration>,
    /// Per-process CSV file name, see [`render_pattern`]; must contain `{guid}`.
    pub csv_pattern: String,
    pub spec: SummarySpec,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            follow_childprocs: DEFAULT_FOLLOW_CHILDPROCS,
            ancestor_window: Some(DEFAULT_ANCESTOR_WINDOW),
            csv_pattern: DEFAULT_CSV_PATTERN.to_string(),
            spec: SummarySpec::default(),
        }
    }
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// Bare GUID of the hit process.
    pub guid: String,
    /// The export job, for the manifest (`None` for a manual export).
    pub job_id: Option<i64>,
    /// Triggering notifications, oldest first; the last one is written to `trigger.json`.
    pub triggers: Vec<Trigger>,
    /// Export a one-node placeholder when the process is not in the database yet (jobs), instead
    /// of failing with an unknown-process error (command line).
    pub allow_unknown: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub processes: usize,
    pub events: u64,
    /// Highest `events.id` in the database snapshot the export read.
    pub watermark: i64,
    /// File names inside `dir`.
    pub files: Vec<String>,
}

/// Placeholders available in the per-process CSV name.
pub const CSV_PLACEHOLDERS: [&str; 5] = ["level", "guid", "pid", "name", "role"];

/// Make a value safe as (part of) one path component: anything but ASCII letters, digits, `.`, `_`
/// and `-` becomes `_`; at most 64 characters; never empty, `.` or `..`.
pub fn sanitize_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push_str("unknown");
    }
    if out.chars().all(|c| c == '.') {
        out = "_".repeat(out.len());
    }
    out
}

/// Substitute `{name}` placeholders. Values must already be sanitized; an unknown placeholder or
/// an unbalanced brace is an error.
pub fn render_pattern(pattern: &str, vars: &[(&str, String)]) -> Result<String, ExportError> {
    let bad = |reason: String| ExportError::Pattern {
        pattern: pattern.to_string(),
        reason,
    };
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(bad("unbalanced '}'".into()));
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| bad("unbalanced '{'".into()))?;
        let name = &after[..close];
        let value = vars.iter().find(|(k, _)| *k == name).ok_or_else(|| {
            let known: Vec<String> = vars.iter().map(|(k, _)| format!("{{{k}}}")).collect();
            bad(format!(
                "unknown placeholder {{{name}}}; known: {}",
                known.join(" ")
            ))
        })?;
        out.push_str(&value.1);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Check a per-process CSV name pattern.
pub fn validate_csv_pattern(pattern: &str) -> Result<(), ExportError> {
    let bad = |reason: &str| ExportError::Pattern {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    };
    let vars: Vec<(&str, String)> = CSV_PLACEHOLDERS.iter().map(|k| (*k, "x".into())).collect();
    let name = render_pattern(pattern, &vars)?;
    if !pattern.contains("{guid}") {
        return Err(bad(
            "must contain {guid} so every process gets its own file",
        ));
    }
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(bad(
            "must be a plain file name (no '/', not starting with '.')",
        ));
    }
    Ok(())
}

/// A directory built under a temporary name and renamed into place on [`StagedDir::commit`].
/// Dropped uncommitted, it removes itself.
pub struct StagedDir {
    tmp: PathBuf,
    dest: PathBuf,
    old: PathBuf,
    parent: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Stage `dest`. Leftovers of an earlier crash at the same destination are removed.
    pub fn new(dest: &Path) -> Result<StagedDir, ExportError> {
        let name = dest
            .file_name()
            .ok_or_else(|| ExportError::Io {
                path: dest.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory name"),
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let tmp = parent.join(format!(".{name}.cbtrail-tmp"));
        let old = parent.join(format!(".{name}.cbtrail-old"));
        for leftover in [&tmp, &old] {
            if leftover.exists() {
                fs::remove_dir_all(leftover).map_err(io_err(leftover))?;
            }
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        Ok(StagedDir {
            tmp,
            dest: dest.to_path_buf(),
            old,
            parent,
            committed: false,
        })
    }

    /// Where files go until commit.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Write one file atomically inside the staged directory.
    pub fn write_file(
        &self,
        name: &str,
        body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), ExportError> {
        write_file_atomic(&self.tmp.join(name), body)
    }

    /// Make the directory durable and put it in place, replacing an earlier export.
    pub fn commit(mut self) -> Result<PathBuf, ExportError> {
        sync_dir(&self.tmp)?;
        if self.dest.exists() {
            fs::rename(&self.dest, &self.old).map_err(io_err(&self.dest))?;
            fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
            sync_dir(&self.parent)?;
            fs::remove_dir_all(&self.old).map_err(io_err(&self.old))?;
        } else {
            fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
            sync_dir(&self.parent)?;
        }
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover is also removed by the next export to this destination.
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Write `path` through a temporary file in the same directory: write, flush, fsync, rename.
pub fn write_file_atomic(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), ExportError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        body(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ExportError::Io {
            path: path.to_path_buf(),
            source: e,
        });
    }
    Ok(())
}

/// Export `req.guid` into the directory `dest` (created or replaced atomically).
pub fn export_process(
    conn: &Connection,
    req: &ExportRequest,
    dest: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    validate_csv_pattern(&opts.csv_pattern)?;
    // One read transaction: tree, events and watermark come from the same snapshot.
    let tx = conn.unchecked_transaction()?;
    let watermark: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM event_rows", [], |r| {
        r.get(0)
    })?;
    let (tree, known) = match ProcessTree::build(&tx, &req.guid, Some(opts.follow_childprocs)) {
        Ok(t) => (t, true),
        Err(TreeError::UnknownProcess(_)) if req.allow_unknown => {
            (ProcessTree::placeholder(&req.guid), false)
        }
        Err(e) => return Err(e.into()),
    };
    let window = match opts.ancestor_window {
        Some(w) => Some(ancestor_window(&tx, &tree, w)?),
        None => None,
    };
    let staged = StagedDir::new(dest)?;
    let mut files: Vec<Option<String>> = vec![None; tree.nodes.len()];
    let mut counts: Vec<u64> = vec![0; tree.nodes.len()];
    let mut outside: Vec<Option<u64>> = vec![None; tree.nodes.len()];
    // Reported in the manifest only when some ancestor was actually limited by it.
    let mut window_used: Option<(i64, i64)> = None;
    let mut total = 0u64;
    for (i, node) in tree.nodes.iter().enumerate() {
        let p = &node.process;
        let role = serde_json::to_value(node.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let vars = [
            ("level", node.level.to_string()),
            ("guid", sanitize_component(&p.guid)),
            ("pid", p.pid.map_or("unknown".into(), |v| v.to_string())),
            ("name", sanitize_component(p.name())),
            ("role", role),
        ];
        let name = render_pattern(&opts.csv_pattern, &vars)?;
        let mut n = 0u64;
        let mut inner: Option<ExportError> = None;
        staged
            .write_file(&name, |w| {
                csv::write_header(w)?;
                let limit = window.filter(|_| node.role == Role::Ancestor);
                let r = for_each_event_in(&tx, &p.guid, &[], limit, |e| {
                    csv::write_event(w, &e, &opts.spec).map_err(io_err(Path::new(&name)))
                });
                match r {
                    Ok(c) => n = c,
                    Err(e) => {
                        inner = Some(e);
                        return Err(io::Error::other("event query failed"));
                    }
                }
                Ok(())
            })
            .map_err(|e| inner.take().unwrap_or(e))?;
        if let Some((lo, hi)) = window.filter(|_| node.role == Role::Ancestor) {
            let all: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM events WHERE process_guid = ?1")?
                .query_row([&p.guid], |r| r.get(0))?;
            outside[i] = Some((all as u64).saturating_sub(n));
            window_used = Some((lo, hi));
        }
        counts[i] = n;
        total += n;
        files[i] = Some(name);
    }
    staged.write_file("tree.json", |w| {
        treejson::write_tree_json(w, &tree, &|i| {
            let mut extra = vec![
                ("file", files[i].clone().map_or(Value::Null, Value::String)),
                ("events", Value::from(counts[i])),
            ];
            if let Some(o) = outside[i] {
                extra.push(("events_outside_window", Value::from(o)));
            }
            extra
        })
    })?;
    staged.write_file("tree.txt", |w| text::write_tree_text(w, &tree))?;
    if let Some(t) = req.triggers.last() {
        let body = match serde_json::from_str::<Value>(&t.json) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| t.json.clone()),
            Err(_) => t.json.clone(),
        };
        staged.write_file("trigger.json", |w| {
            w.write_all(body.as_bytes())?;
            w.write_all(b"\n")
        })?;
    }
    let manifest = manifest(
        req,
        &tree,
        known,
        &Tally {
            files: &files,
            counts: &counts,
            outside: &outside,
            total,
            watermark,
            window: window_used,
        },
        opts,
    );
    staged.write_file("manifest.json", |w| {
        serde_json::to_writer_pretty(&mut *w, &manifest)?;
        w.write_all(b"\n")
    })?;
    drop(tx);
    let dir = staged.commit()?;
    let mut names: Vec<String> = files.into_iter().flatten().collect();
    names.extend(["tree.json", "tree.txt", "manifest.json"].map(String::from));
    if !req.triggers.is_empty() {
        names.push("trigger.json".into());
    }
    Ok(ExportReport {
        dir,
        processes: tree.nodes.len(),
        events: total,
        watermark,
        files: names,
    })
}

/// The time range of ancestors' events: `w` before the hit process started (or its first event) to
/// `w` after the newest event of the hit process and its exported descendants.
fn ancestor_window(
    conn: &Connection,
    tree: &ProcessTree,
    w: std::time::Duration,
) -> Result<(i64, i64), ExportError> {
    let w = i64::try_from(w.as_millis()).unwrap_or(i64::MAX / 4);
    let mut first: Option<i64> = tree.focus().start_ms;
    let mut last: Option<i64> = None;
    let mut stmt = conn.prepare_cached(
        "SELECT MIN(timestamp_ms), MAX(timestamp_ms) FROM events \
         WHERE process_guid = ?1 AND timestamp_ms > 0",
    )?;
    for n in tree.nodes.iter().filter(|n| n.role != Role::Ancestor) {
        let (lo, hi): (Option<i64>, Option<i64>) =
            stmt.query_row([&n.process.guid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if n.role == Role::Focus && first.is_none() {
            first = lo;
        }
        last = last.max(hi);
    }
    let start = first.or(last).unwrap_or(0);
    let end = last.unwrap_or(start).max(start);
    Ok((start.saturating_sub(w), end.saturating_add(w)))
}

/// What the export wrote, for the manifest.
struct Tally<'a> {
    files: &'a [Option<String>],
    counts: &'a [u64],
    outside: &'a [Option<u64>],
    total: u64,
    watermark: i64,
    window: Option<(i64, i64)>,
}

fn manifest(
    req: &ExportRequest,
    tree: &ProcessTree,
    known: bool,
    t: &Tally<'_>,
    opts: &ExportOptions,
) -> Value {
    let (files, counts, total, watermark) = (t.files, t.counts, t.total, t.watermark);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let processes: Vec<Value> = tree
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "guid": n.process.guid,
                "level": n.level,
                "role": n.role,
                "pid": n.process.pid,
                "name": n.process.name(),
                "inferred": n.process.inferred,
                "file": files[i],
                "events": counts[i],
                "events_outside_window": t.outside[i],
            })
        })
        .collect();
    let triggers: Vec<Value> = req
        .triggers
        .iter()
        .map(|t| {
            json!({
                "notification_id": t.notification_id,
                "type": t.kind,
                "routing_key": t.routing_key,
                "received": iso8601_ms(t.received_ms),
                "watchlist_name": t.watchlist_name,
                "feed_name": t.feed_name,
            })
        })
        .collect();
    json!({
        "cbtrail_version": env!("CARGO_PKG_VERSION"),
        "process_guid": req.guid,
        "job_id": req.job_id,
        "exported_at": iso8601_ms(now_ms),
        "known_process": known,
        "follow_childprocs": opts.follow_childprocs,
        "children_beyond_follow_childprocs": tree.children_beyond_limit,
        "ancestor_window": t.window.map(|(lo, hi)| json!({
            "from": iso8601_ms(lo),
            "to": iso8601_ms(hi),
        })),
        "ancestry_end": tree.ancestry_end,
        "event_watermark": watermark,
        "events_total": total,
        "triggers": triggers,
        "processes": processes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(1_447_697_668_819), "2015-11-16T18:14:28.819Z");
        assert_eq!(iso8601_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(text_time(1_612_983_254_323), "2021-02-10 18:54:14.323 UTC");
    }

    #[test]
    fn patterns() {
        let vars = [("guid", "g".to_string()), ("level", "2".to_string())];
        assert_eq!(
            render_pattern("{level}_{guid}.csv", &vars).unwrap(),
            "2_g.csv"
        );
        for bad in ["{nope}", "{level", "level}", "{guid"] {
            assert!(render_pattern(bad, &vars).is_err(), "{bad}");
        }
        assert!(validate_csv_pattern("{level}.csv").is_err());
        assert!(validate_csv_pattern("x/{guid}.csv").is_err());
        assert!(validate_csv_pattern(".{guid}.csv").is_err());
        assert!(validate_csv_pattern(DEFAULT_CSV_PATTERN).is_ok());
        assert_eq!(sanitize_component("a b/c\\..d"), "a_b_c_..d");
        assert_eq!(sanitize_component(".."), "__");
        assert_eq!(sanitize_component(""), "unknown");
    }
}
