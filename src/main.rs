//! The `cbtrail` command: parse the command line, set up logging, call into the library, map errors
//! to exit codes (0 success, 1 runtime failure, 2 usage or configuration error).

use anyhow::{Context, Result};
use cbtrail::capture::{self, CaptureOverrides};
use cbtrail::config::Settings;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

// Decoding and storing allocate and free a few dozen small strings per event on two threads at a
// time; mimalloc does that in about half the instructions of glibc's malloc (measured with the
// benchmark: scripts/bench.sh). Its settings: `cbtrail::alloc`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cbtrail",
    version,
    about = "Carbon Black EDR event-bus consumer: decode, store in SQLite, process trees, hit exports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: consume the CB server's bus and store everything.
    Run {
        /// TOML configuration file (keys documented in deploy/cbtrail.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective settings, secrets masked.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Ingest capture files offline through the daemon's decode and store code.
    Replay {
        /// Database file (created when missing).
        #[arg(long)]
        db: PathBuf,
        /// Routing key for every file (default: the file's parent directory name).
        #[arg(long)]
        routing_key: Option<String>,
        /// Content type for every file (default: from the extension).
        #[arg(long)]
        content_type: Option<String>,
        /// Extra AMQP header, K=V (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = parse_kv)]
        headers: Vec<(String, String)>,
        /// Deliveries per transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Files or directories (walked recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Row counts, time range and size per table of a database.
    DbInfo {
        #[arg(long)]
        db: PathBuf,
    },
    #[command(flatten)]
    Query(cbtrail::query::QueryCommand),
    /// Publish capture files as the CB server would (exchanges, routing keys, content types,
    /// headers), with publisher confirms.
    Publish {
        /// Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f
        #[arg(long, env = "CBTRAIL_PUBLISH_AMQP")]
        amqp: String,
        /// Messages per second (default: as fast as the broker confirms).
        #[arg(long)]
        rate: Option<f64>,
        /// Publish the whole set this many times.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Name of the connection (shown by rabbitmqctl list_connections).
        #[arg(long, default_value = "cbtrail-publish")]
        connection_name: String,
        #[arg(long)]
        routing_key: Option<String>,
        #[arg(long)]
        content_type: Option<String>,
        #[arg(long = "header", value_name = "K=V", value_parser = parse_kv)]
        headers: Vec<(String, String)>,
        /// Publish generated CB traffic instead of files: `key=value,...` (hosts, processes,
        /// events, mode=singles|bundles|mixed, hit_rate, seed, ...; see src/synth/config.rs).
        #[arg(long, value_name = "SPEC", conflicts_with = "paths")]
        synthetic: Option<String>,
        /// Mark the messages persistent (delivery mode 2) so that they survive a broker restart.
        /// By default they are transient (delivery mode 1), as the CB server publishes them.
        #[arg(long)]
        persistent: bool,
        /// Only declare the CB server's exchanges, publish nothing.
        #[arg(long, conflicts_with_all = ["paths", "synthetic"])]
        declare_only: bool,
        /// Files or directories.
        #[arg(required_unless_present_any = ["synthetic", "declare_only"])]
        paths: Vec<PathBuf>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not K=V")),
    }
}

/// Errors that are the user's to fix (exit 2), as opposed to runtime failures (exit 1).
#[derive(Debug)]
struct UsageError;

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("usage or configuration error")
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    // SAFETY: no other thread exists yet.
    unsafe { cbtrail::alloc::configure() };
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`cbtrail events … | head`) is not a failure.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    || c.to_string().contains("Broken pipe")
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cbtrail: {e:#}");
            if e.chain()
                .any(|c| c.is::<UsageError>() || c.is::<cbtrail::config::ConfigError>())
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => {
            let settings = Settings::load(config.as_deref())?;
            let reload = init_logging(&settings.log.level);
            tracing::info!(version = env!("CARGO_PKG_VERSION"), "cbtrail starting");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(cbtrail::daemon::run(settings, config, Some(reload)))?;
            Ok(())
        }
        Command::CheckConfig { config } => {
            let settings = Settings::load(config.as_deref())?;
            print!("{}", settings.to_masked_toml());
            // Credentials are part of a working configuration: say where they come from.
            match settings.amqp.credentials() {
                Ok(c) if settings.amqp.url.is_empty() => {
                    println!("# bus credentials: user `{}` (password set)", c.username)
                }
                Ok(_) => println!("# bus credentials: from amqp.url"),
                Err(e) if settings.amqp.url.is_empty() => return Err(e.into()),
                Err(_) => println!("# bus credentials: from amqp.url"),
            }
            Ok(())
        }
        Command::DbInfo { db } => {
            let mut out = std::io::stdout().lock();
            cbtrail::store::retention::db_info(&db, &mut out)?;
            Ok(())
        }
        Command::Query(cmd) => {
            let mut out = std::io::stdout().lock();
            cbtrail::query::run(&cmd, &mut out)?;
            Ok(())
        }
        Command::Replay {
            db,
            routing_key,
            content_type,
            headers,
            batch_size,
            paths,
        } => {
            let _ = init_logging("warn");
            if batch_size == 0 {
                return Err(
                    anyhow::Error::new(UsageError).context("--batch-size must be at least 1")
                );
            }
            let overrides = CaptureOverrides {
                routing_key,
                content_type,
                headers,
            };
            let files = capture::walk(&paths, &overrides)?;
            let summary = cbtrail::replay::replay(&db, files, batch_size)?;
            println!("{summary}");
            Ok(())
        }
        Command::Publish {
            amqp,
            rate,
            repeat,
            connection_name,
            routing_key,
            content_type,
            headers,
            synthetic,
            persistent,
            declare_only,
            paths,
        } => {
            let _ = init_logging("warn");
            let synth = match &synthetic {
                Some(spec) => Some(
                    cbtrail::synth::SynthConfig::parse(spec)
                        .map_err(|e| anyhow::Error::new(UsageError).context(e.to_string()))?,
                ),
                None => None,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            if declare_only {
                // Connecting declares the exchanges.
                rt.block_on(async {
                    cbtrail::bus::publish::Publisher::connect(&amqp, &connection_name, rate)
                        .await?
                        .finish()
                        .await
                })?;
                println!(
                    "declared exchanges {} (topic, durable) and {} (fanout, durable); published nothing",
                    cbtrail::bus::publish::EVENTS_EXCHANGE,
                    cbtrail::bus::publish::RAW_EXCHANGE
                );
                return Ok(());
            }
            let files = if synth.is_none() {
                let overrides = CaptureOverrides {
                    routing_key,
                    content_type,
                    headers,
                };
                capture::walk(&paths, &overrides)?
            } else {
                Vec::new()
            };
            let (report, summary) = rt.block_on(async {
                let mut p =
                    cbtrail::bus::publish::Publisher::connect(&amqp, &connection_name, rate)
                        .await?;
                p.set_persistent(persistent);
                let mut summary = None;
                for _ in 0..repeat {
                    match &synth {
                        Some(cfg) => {
                            let mut g = cbtrail::synth::Synth::new(cfg.clone());
                            for m in g.by_ref() {
                                p.publish(&m.meta, &m.body).await?;
                            }
                            summary = Some(g.summary());
                        }
                        None => {
                            for f in &files {
                                p.publish(&f.meta, &f.body).await?;
                            }
                        }
                    }
                }
                Ok::<_, cbtrail::bus::BusError>((p.finish().await?, summary))
            })?;
            if let Some(s) = summary {
                println!("generated {s}");
            }
            println!(
                "published messages={} bytes={} unroutable={}",
                report.messages, report.bytes, report.unroutable
            );
            if report.unroutable > 0 {
                eprintln!(
                    "cbtrail: warning: {} messages reached no queue (is the daemon's queue declared and bound?)",
                    report.unroutable
                );
            }
            Ok(())
        }
    }
}

/// Human format on a terminal; under systemd (journald stamps lines itself) plain lines without ANSI
/// or timestamps. `RUST_LOG` wins over the configured level. Returns a reloader for SIGHUP.
fn init_logging(level: &str) -> cbtrail::daemon::LogReloader {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt, reload};
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(quiet_returns(level)));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let terminal = std::io::stderr().is_terminal();
    let fmt_layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(terminal && !journald);
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        let _ = registry.with(fmt_layer.without_time()).try_init();
    } else {
        let _ = registry.with(fmt_layer).try_init();
    }
    let rust_log = std::env::var_os("RUST_LOG").is_some();
    Box::new(move |new: &str| {
        if rust_log {
            return Err("RUST_LOG is set and takes precedence".into());
        }
        let f = EnvFilter::try_new(quiet_returns(new)).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    })
}

/// `level` with lapin's own report of returned (unroutable) messages switched off: it logs each
/// one at WARN with its whole body, tens of kilobytes per zip bundle, so publishing to exchanges
/// nobody has bound yet flooded the terminal. `cbtrail publish` counts them itself and says so
/// in one line; `RUST_LOG` can still turn lapin's report back on.
fn quiet_returns(level: &str) -> String {
    format!("{level},lapin::returned_messages=off")
}
