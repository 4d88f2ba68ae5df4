//! Command-line verbs over the database: `tree`, `ancestry`, `events`, `export`, `stats`, `jobs`.
//!
//! Every verb opens its own read-only connection (`--db FILE`, or `CBTRAIL_DB`), so it is safe
//! while the daemon writes: WAL readers never block the writer and see one consistent snapshot.
//! `export` writes files only, never the database.
//!
//! A GUID argument is a bare 36-character process GUID or one with a segment suffix
//! (`…-00000001`, `…-01778d4d56f2`, as in notifications' `unique_id`); the segment is ignored
//! because trees and events are per process, all segments together.

use crate::export::{
    self, ExportError, ExportOptions, ExportRequest, csv, summary::SummarySpec, text, treejson,
};
use crate::jobs::{self, JobError, JobState};
use crate::model::EventType;
use crate::store::StoreError;
use crate::tree::{self, GuidArg, Host, ProcessTree, TreeError};
use clap::{Args, Subcommand, ValueEnum};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of the query verbs, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("database {0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is not a cbtrail database")]
    NotCbtrail(PathBuf),
    #[error(
        "database {path} has schema version {found}, newer than this cbtrail supports ({supported}); upgrade cbtrail"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(transparent)]
    Store(StoreError),
    #[error("unknown process {0}: not in the database")]
    UnknownGuid(String),
    #[error("{0}")]
    BadOption(String),
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Tree(TreeError),
    #[error(transparent)]
    Export(ExportError),
    #[error(transparent)]
    Job(JobError),
    #[error("writing output: {0}")]
    Io(#[from] io::Error),
}

impl From<TreeError> for QueryError {
    fn from(e: TreeError) -> QueryError {
        match e {
            TreeError::UnknownProcess(g) => QueryError::UnknownGuid(g),
            e => QueryError::Tree(e),
        }
    }
}

impl From<ExportError> for QueryError {
    fn from(e: ExportError) -> QueryError {
        match e {
            ExportError::Tree(t) => t.into(),
            e => QueryError::Export(e),
        }
    }
}

impl From<JobError> for QueryError {
    fn from(e: JobError) -> QueryError {
        QueryError::Job(e)
    }
}

/// The database argument every verb takes.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// cbtrail database file (opened read-only)
    #[arg(long, value_name = "FILE", env = "CBTRAIL_DB")]
    pub db: PathBuf,
}

/// Output of `tree`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TreeFormat {
    /// indented command lines, each ending `| GUID`, the process marked `*`
    Text,
    /// the tree.json shape
    Json,
}

/// Output of `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    /// the export CSV columns
    Csv,
    /// a JSON array of events
    Json,
}

/// `cbtrail tree GUID`: the process's ancestry and descendants.
#[derive(Debug, Clone, Args)]
pub struct TreeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// process GUID (segment suffix allowed)
    pub guid: GuidArg,
    /// generations of descendants to show (default: all)
    #[arg(long, value_name = "N")]
    pub depth: Option<u32>,
    #[arg(long, value_enum, default_value_t = TreeFormat::Text)]
    pub format: TreeFormat,
}

/// `cbtrail ancestry GUID`: the process and its ancestors up to the root, with start times.
#[derive(Debug, Clone, Args)]
pub struct AncestryArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// process GUID (segment suffix allowed)
    pub guid: GuidArg,
    #[arg(long, value_enum, default_value_t = TreeFormat::Text)]
    pub format: TreeFormat,
}

/// `cbtrail events GUID`: a process's events, oldest first.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// process GUID (segment suffix allowed)
    pub guid: GuidArg,
    /// only this event type (repeatable): procstart, childproc, filemod, regmod, modload, netconn, …
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
    #[arg(long, value_enum, default_value_t = EventsFormat::Csv)]
    pub format: EventsFormat,
    /// summary spec for the CSV summary column (default: the built-in deploy/summary.json)
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
}

/// `cbtrail export GUID --out DIR`: what a hit would export, on demand.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// process GUID (segment suffix allowed)
    pub guid: GuidArg,
    /// directory to create (complete or not at all)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// generations of descendants to export (0: none)
    #[arg(long, value_name = "N", default_value_t = export::DEFAULT_FOLLOW_CHILDPROCS)]
    pub follow_childprocs: u32,
    /// export ancestors' events from this many seconds before the process started to this many
    /// after its (and its exported descendants') last event; 0: all of them
    #[arg(long, value_name = "SECS", default_value_t = export::DEFAULT_ANCESTOR_WINDOW.as_secs())]
    pub ancestor_window: u64,
    /// summary spec (default: the built-in deploy/summary.json)
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// per-process CSV name; placeholders {guid} (required), {level}, {pid}, {name}, {role}
    #[arg(long, value_name = "PATTERN", default_value = export::DEFAULT_CSV_PATTERN)]
    pub file_pattern: String,
    /// replace DIR if it is an earlier export (or empty)
    #[arg(long)]
    pub force: bool,
}

/// `cbtrail stats`: msticpy summary statistics for one tree, one host, or all hosts.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// host name or sensor id
    #[arg(long, value_name = "H", conflicts_with = "guid")]
    pub host: Option<String>,
    /// the tree this process belongs to
    #[arg(long, value_name = "G")]
    pub guid: Option<GuidArg>,
    #[arg(long, value_enum, default_value_t = TreeFormat::Text)]
    pub format: TreeFormat,
}

/// `cbtrail jobs`: export jobs, newest first.
#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// only jobs in this state: pending, running, done, failed
    #[arg(long, value_name = "S")]
    pub state: Option<JobState>,
    #[arg(long, value_enum, default_value_t = TreeFormat::Text)]
    pub format: TreeFormat,
}

/// All query verbs, for `main.rs` to flatten into its own subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum QueryCommand {
    /// Show a process's ancestry and descendants as an indented tree
    Tree(TreeArgs),
    /// Show a process and its ancestors up to the root
    Ancestry(AncestryArgs),
    /// Print a process's events as CSV or JSON
    Events(EventsArgs),
    /// Export a process with its ancestors and descendants to a directory
    Export(ExportArgs),
    /// msticpy process-tree statistics of a tree, a host or every host
    Stats(StatsArgs),
    /// List hit-triggered export jobs
    Jobs(JobsArgs),
}

/// Run one verb.
pub fn run(cmd: &QueryCommand, out: &mut dyn Write) -> Result<(), QueryError> {
    match cmd {
        QueryCommand::Tree(a) => run_tree(a, out),
        QueryCommand::Ancestry(a) => run_ancestry(a, out),
        QueryCommand::Events(a) => run_events(a, out),
        QueryCommand::Export(a) => run_export(a, out),
        QueryCommand::Stats(a) => run_stats(a, out),
        QueryCommand::Jobs(a) => run_jobs(a, out),
    }
}

/// Open a database read-only for queries ([`crate::store::open_read_only`]), telling apart a file
/// that is not a cbtrail database at all.
pub fn open_db(path: &Path) -> Result<Connection, QueryError> {
    match crate::store::open_read_only(path) {
        Ok(conn) => Ok(conn),
        Err(StoreError::Missing(p)) => Err(QueryError::Missing(p)),
        Err(StoreError::TooNew {
            path,
            found,
            supported,
        }) => Err(QueryError::TooNew {
            path,
            found,
            supported,
        }),
        Err(StoreError::NotMigrated { path, found: 0, .. }) => Err(QueryError::NotCbtrail(path)),
        Err(StoreError::Sqlite { path, source })
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) =>
        {
            Err(QueryError::NotCbtrail(path))
        }
        Err(e) => Err(QueryError::Store(e)),
    }
}

fn require_process(conn: &Connection, guid: &GuidArg) -> Result<tree::Process, QueryError> {
    tree::process(conn, &guid.guid)?.ok_or_else(|| QueryError::UnknownGuid(guid.guid.clone()))
}

/// `tree`.
pub fn run_tree(args: &TreeArgs, out: &mut dyn Write) -> Result<(), QueryError> {
    let conn = open_db(&args.db.db)?;
    let tree = ProcessTree::build(&conn, &args.guid.guid, args.depth)?;
    match args.format {
        TreeFormat::Text => text::write_tree_text(out, &tree)?,
        TreeFormat::Json => treejson::write_tree_json(out, &tree, &|_| Vec::new())?,
    }
    Ok(())
}

/// `ancestry`.
pub fn run_ancestry(args: &AncestryArgs, out: &mut dyn Write) -> Result<(), QueryError> {
    let conn = open_db(&args.db.db)?;
    let me = require_process(&conn, &args.guid)?;
    let ancestry = tree::ancestors(&conn, &me.guid)?;
    match args.format {
        TreeFormat::Text => text::write_ancestry_text(out, &me, &ancestry)?,
        TreeFormat::Json => {
            let chain: Vec<Value> = std::iter::once(&me)
                .chain(&ancestry.chain)
                .enumerate()
                .map(|(up, p)| {
                    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert("generations_up".into(), Value::from(up));
                        if let Some(ms) = p.start_ms {
                            m.insert("start".into(), Value::String(export::iso8601_ms(ms)));
                        }
                    }
                    v
                })
                .collect();
            let doc = json!({ "ancestry": chain, "end": ancestry.end });
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

fn check_types(types: &[String]) -> Result<(), QueryError> {
    for t in types {
        if EventType::parse(t).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(QueryError::BadOption(format!(
                "unknown event type {t:?}; known: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// `events`.
pub fn run_events(args: &EventsArgs, out: &mut dyn Write) -> Result<(), QueryError> {
    check_types(&args.types)?;
    let spec = SummarySpec::load_or_default(args.summary.as_deref())?;
    let conn = open_db(&args.db.db)?;
    require_process(&conn, &args.guid)?;
    let io_fail = |e: io::Error| ExportError::Io {
        path: PathBuf::from("<output>"),
        source: e,
    };
    let tx = conn
        .unchecked_transaction()
        .map_err(|source| QueryError::Sqlite {
            path: args.db.db.clone(),
            source,
        })?;
    match args.format {
        EventsFormat::Csv => {
            csv::write_header(out)?;
            export::for_each_event(&tx, &args.guid.guid, &args.types, |e| {
                csv::write_event(out, &e, &spec).map_err(io_fail)
            })?;
        }
        EventsFormat::Json => {
            out.write_all(b"[")?;
            let mut first = true;
            export::for_each_event(&tx, &args.guid.guid, &args.types, |e| {
                let sep: &[u8] = if first { b"\n" } else { b",\n" };
                first = false;
                out.write_all(sep).map_err(io_fail)?;
                serde_json::to_writer(&mut *out, &e.to_json())
                    .map_err(|e| io_fail(io::Error::from(e)))
            })?;
            out.write_all(b"\n]\n")?;
        }
    }
    Ok(())
}

/// `export`.
pub fn run_export(args: &ExportArgs, out: &mut dyn Write) -> Result<(), QueryError> {
    export::validate_csv_pattern(&args.file_pattern)?;
    let spec = SummarySpec::load_or_default(args.summary.as_deref())?;
    if args.out.exists() {
        let replaceable = args.out.join("manifest.json").is_file()
            || std::fs::read_dir(&args.out).is_ok_and(|mut d| d.next().is_none());
        if !args.force {
            return Err(ExportError::Exists(args.out.clone()).into());
        }
        if !replaceable || !args.out.is_dir() {
            return Err(QueryError::BadOption(format!(
                "{} is neither an earlier cbtrail export nor an empty directory; refusing to replace it",
                args.out.display()
            )));
        }
    }
    let conn = open_db(&args.db.db)?;
    let opts = ExportOptions {
        follow_childprocs: args.follow_childprocs,
        ancestor_window: (args.ancestor_window > 0)
            .then(|| Duration::from_secs(args.ancestor_window)),
        csv_pattern: args.file_pattern.clone(),
        spec,
    };
    let req = ExportRequest {
        guid: args.guid.guid.clone(),
        ..ExportRequest::default()
    };
    let report = export::export_process(&conn, &req, &args.out, &opts)?;
    writeln!(
        out,
        "exported {} processes, {} events to {}",
        report.processes,
        report.events,
        report.dir.display()
    )?;
    Ok(())
}

/// `stats`.
pub fn run_stats(args: &StatsArgs, out: &mut dyn Write) -> Result<(), QueryError> {
    let conn = open_db(&args.db.db)?;
    let (scope, stats) = match (&args.host, &args.guid) {
        (Some(h), _) => {
            let host: Host = h.parse()?;
            (format!("host {host}"), tree::host_stats(&conn, &host)?)
        }
        (None, Some(g)) => (
            format!("tree of {}", g.guid),
            tree::tree_stats(&conn, &g.guid)?,
        ),
        (None, None) => ("all hosts".to_string(), tree::all_hosts_stats(&conn)?),
    };
    match args.format {
        TreeFormat::Text => {
            writeln!(out, "# {scope}")?;
            write!(out, "{stats}")?;
        }
        TreeFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &stats).map_err(io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// `jobs`.
pub fn run_jobs(args: &JobsArgs, out: &mut dyn Write) -> Result<(), QueryError> {
    let conn = open_db(&args.db.db)?;
    let rows = jobs::list_jobs(&conn, args.state)?;
    match args.format {
        TreeFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &rows).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        TreeFormat::Text => {
            writeln!(
                out,
                "{:>6}  {:<7}  {:<36}  {:<24}  {:<24}  {:>8}  {:>7}  {:>8}  output / error",
                "id", "state", "process", "created", "due", "attempts", "exports", "triggers"
            )?;
            for j in rows {
                let detail = match (&j.error, &j.output_path) {
                    (Some(e), _) => format!("error: {}", tree::one_line(e)),
                    (None, Some(p)) => p.clone(),
                    (None, None) => String::new(),
                };
                writeln!(
                    out,
                    "{:>6}  {:<7}  {:<36}  {:<24}  {:<24}  {:>8}  {:>7}  {:>8}  {}",
                    j.id,
                    j.state,
                    j.process_guid,
                    export::iso8601_ms(j.created_ms),
                    export::iso8601_ms(j.due_ms),
                    j.attempts,
                    j.exports,
                    j.triggers,
                    detail
                )?;
            }
        }
    }
    Ok(())
}
