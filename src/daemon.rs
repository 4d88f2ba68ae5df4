//! `cbtrail run`: the daemon.
//!
//! A supervisor loop keeps one bus session alive (connect → declare our queue → consume), with
//! lapin's automatic recovery inside a session and a fresh session with back-off when recovery gives
//! up. Deliveries go through the [`Pipeline`]; committed batches come back and are acknowledged. The
//! pipeline outlives sessions, so a reconnect never loses what is in flight: unacknowledged deliveries
//! are redelivered by the broker and recognised as duplicates by the store.
//!
//! Shutdown (SIGTERM/SIGINT): cancel the consumer, let the pipeline commit what it holds, acknowledge
//! it, close the connection, exit 0.

use crate::bus::window::Window;
use crate::bus::{self, BusError};
use crate::config::{ConfigError, Settings};
use crate::metrics;
use crate::model::DeliveryMeta;
use crate::pipeline::{
    self, AckHandle, BatchOptions, Incoming, Pipeline, PipelineError, Totals, WriterControl,
};
use crate::shutdown::{self, Request, Shutdown};
use crate::store::{StoreError, Writer, WriterOptions};
use futures_lite::StreamExt;
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Applies a new log filter (the binary owns the subscriber); returns an error text when invalid.
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Run until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
pub async fn run(
    settings: Settings,
    config_path: Option<PathBuf>,
    reload_log: Option<LogReloader>,
) -> Result<Totals, DaemonError> {
    let (stop_tx, stop) = Shutdown::new();
    let mut signals = shutdown::listen().map_err(DaemonError::Signals)?;
    let mut current = settings.clone();
    let live = Live::handle();
    let reloadable = live.clone();
    let signal_task = tokio::spawn(async move {
        while let Some(r) = signals.recv().await {
            match r {
                Request::Stop => {
                    tracing::info!("stop requested; finishing the batch in hand");
                    shutdown::notify_stopping();
                    let _ = stop_tx.send(true);
                }
                Request::Reload => reload(
                    &mut current,
                    config_path.as_deref(),
                    &reload_log,
                    &reloadable,
                ),
            }
        }
    });
    let r = run_with(settings, stop, live).await;
    signal_task.abort();
    r
}

/// What a SIGHUP can change in a running daemon, shared between the daemon and its signal task.
#[derive(Default)]
struct Live {
    control: Option<Arc<WriterControl>>,
    exports: Option<ExportWorker>,
}

type LiveHandle = Arc<std::sync::Mutex<Live>>;

impl Live {
    fn handle() -> LiveHandle {
        Arc::new(std::sync::Mutex::new(Live::default()))
    }
}

/// Apply new export settings: the writer uses them for the jobs of its next batch, and the
/// export worker restarts with them (a job in progress finishes first).
fn apply_export_settings(settings: &Settings, live: &LiveHandle) {
    let Ok(mut live) = live.lock() else { return };
    if let Some(c) = &live.control {
        c.set_job_settings(settings.exports.clone());
    }
    if let Some(old) = live.exports.take() {
        old.stop();
        live.exports = Some(ExportWorker::start(settings));
    }
}

/// Run until `stop` is raised: consume, store, acknowledge. Returns what was stored.
pub async fn run_until(settings: Settings, stop: Shutdown) -> Result<Totals, DaemonError> {
    run_with(settings, stop, Live::handle()).await
}

async fn run_with(
    settings: Settings,
    stop: Shutdown,
    live: LiveHandle,
) -> Result<Totals, DaemonError> {
    if !settings.metrics.listen.is_empty() {
        let addr = settings
            .metrics
            .listen
            .parse()
            .map_err(|_| ConfigError::Key {
                key: "metrics.listen".into(),
                message: format!("`{}` is not an address", settings.metrics.listen),
            })?;
        metrics::install(addr)?;
    }
    let writer = Writer::open_with(
        &settings.store.path,
        WriterOptions {
            synchronous: settings.store.synchronous,
            jobs: settings.exports.clone(),
            ..WriterOptions::default()
        },
    )?;
    tracing::info!(db = %settings.store.path.display(), "database open");
    let opts = BatchOptions::new(
        settings.store.batch_size,
        settings.store.batch_max_records,
        Duration::from_millis(settings.store.batch_max_latency_ms),
    );
    let pipeline = Pipeline::start(writer, opts, settings.amqp.prefetch as usize);
    let liveness = pipeline.liveness.clone();
    let control = pipeline.control.clone();
    let (input, mut committed, threads) = pipeline.into_parts();
    let db_path = settings.store.path.clone();
    let acker = tokio::spawn(async move {
        let mut totals = Totals::default();
        let mut last_size: Option<std::time::Instant> = None;
        while let Some(c) = committed.recv().await {
            metrics::batch_committed(&c.stats, c.deliveries, c.commit_latency);
            totals.add(&c);
            let deliveries = c.deliveries;
            let (_ok, failed) = pipeline::acknowledge(c.acks).await;
            metrics::acks_failed(failed);
            metrics::unacked_sub(deliveries);
            if last_size.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                metrics::database_size(&db_path);
                last_size = Some(std::time::Instant::now());
            }
        }
        totals
    });
    let watchdog = shutdown::spawn_watchdog(liveness);
    if let Ok(mut l) = live.lock() {
        l.control = Some(control);
        l.exports = Some(ExportWorker::start(&settings));
    }
    let retention = Retention::start(&settings);

    let open = supervise(&settings, &input, stop).await;
    // Stop feeding the pipeline; it commits what it holds and hands back the last acks.
    drop(input);
    let totals = acker.await;
    // Only now: the channel's deliveries have just been acknowledged on it.
    if let Some(open) = open {
        let _ = open.channel.close(200, "cbtrail stopping".into()).await;
        let _ = open.conn.close(200, "cbtrail stopping".into()).await;
    }
    metrics::connection_up(false);
    if let Some(w) = watchdog {
        w.abort();
    }
    tokio::task::spawn_blocking(move || {
        let exports = live.lock().ok().and_then(|mut l| l.exports.take());
        if let Some(w) = exports {
            w.stop();
        }
        retention.stop();
    })
    .await
    .map_err(|_| PipelineError::Panicked("export worker"))?;
    let joined = tokio::task::spawn_blocking(move || threads.join())
        .await
        .map_err(|_| PipelineError::Panicked("pipeline"))?;
    let totals = totals.map_err(|_| PipelineError::Panicked("ack"))?;
    joined?;
    tracing::info!(
        deliveries = totals.deliveries,
        events = totals.stats.events,
        "stopped"
    );
    Ok(totals)
}

/// Keep a bus session up until a stop is requested; returns the open connection then, so the
/// final acknowledgements can still go out on it.
async fn supervise(
    settings: &Settings,
    input: &mpsc::Sender<Vec<Incoming>>,
    mut stop: Shutdown,
) -> Option<OpenBus> {
    let mut backoff = Duration::from_millis(500);
    let mut ready_sent = false;
    // What the window learned of the traffic outlives a session: a reconnect starts where it was.
    let mut window = Window::new(settings.amqp.prefetch, settings.amqp.prefetch_bytes);
    loop {
        if stop.is_requested() {
            return None;
        }
        match session(settings, input, &mut stop, &mut ready_sent, &mut window).await {
            Ok(conn) => return conn,
            Err(e) => {
                metrics::connection_up(false);
                metrics::reconnect();
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "bus session ended");
                shutdown::notify_status(&format!("bus unavailable: {e}"));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.requested() => return None,
                }
                backoff = (backoff * 2).min(settings.reconnect_max());
            }
        }
    }
}

/// The pipeline stopped taking deliveries (its writer failed for good).
struct PipelineGone;

/// Hand a burst to the pipeline, counting it and letting the window see its sizes.
async fn forward(
    input: &mpsc::Sender<Vec<Incoming>>,
    window: &mut Window,
    burst: Vec<Incoming>,
) -> Result<(), PipelineGone> {
    metrics::deliveries(burst.iter().map(|i| (&i.meta, i.body.len())));
    window.observe(burst.iter().map(|i| i.body.len()));
    input.send(burst).await.map_err(|_| PipelineGone)
}

/// One subscription of our queue: its consumer and the tag that cancels it.
struct Subscription {
    consumer: lapin::Consumer,
    tag: String,
    generation: u64,
}

impl Subscription {
    async fn start(
        channel: &lapin::Channel,
        queue: &str,
        generation: u64,
    ) -> Result<Subscription, BusError> {
        // A new tag per subscription: the broker may still be finishing the old one's cancel.
        let tag = format!("cbtrail-{}-{generation}", std::process::id());
        let consumer = channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::amqp(format!("consuming from {queue}")))?;
        Ok(Subscription {
            consumer,
            tag,
            generation,
        })
    }

    async fn cancel(&self, channel: &lapin::Channel) -> Result<(), BusError> {
        channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await
            .map_err(BusError::amqp("cancelling the consumer"))
    }

    /// Move to a new prefetch window. The broker fixes a consumer's window when it subscribes, so
    /// this cancels the subscription, passes on what it had already received (those deliveries stay
    /// unacknowledged on the channel and are acknowledged as usual after their commit), and
    /// subscribes again with the new window.
    async fn resize(
        &mut self,
        channel: &lapin::Channel,
        queue: &str,
        prefetch: u16,
        input: &mpsc::Sender<Vec<Incoming>>,
        window: &mut Window,
    ) -> Result<Result<(), PipelineGone>, BusError> {
        self.cancel(channel).await?;
        // After the cancel the stream yields what was already received, then ends.
        let mut burst = Vec::new();
        while let Some(next) = self.consumer.next().await {
            let d = next.map_err(BusError::amqp("draining the cancelled consumer"))?;
            burst.push(incoming(d));
            if burst.len() == MAX_BURST
                && let Err(gone) = forward(input, window, std::mem::take(&mut burst)).await
            {
                return Ok(Err(gone));
            }
        }
        if !burst.is_empty()
            && let Err(gone) = forward(input, window, burst).await
        {
            return Ok(Err(gone));
        }
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(BusError::amqp("setting prefetch"))?;
        *self = Subscription::start(channel, queue, self.generation + 1).await?;
        metrics::prefetch_window(prefetch);
        tracing::info!(
            prefetch,
            mean_body_bytes = window.mean_body_bytes() as u64,
            "prefetch window resized to the traffic"
        );
        Ok(Ok(()))
    }
}

/// The connection and consume channel of a session that ended because a stop was requested.
///
/// The channel must stay open until the pipeline has acknowledged what it holds: lapin closes a
/// channel when the last handle on it is dropped, and the broker then puts every unacknowledged
/// delivery of the channel back in the queue. Dropped with the session, it closed before the last
/// batch's acknowledgements went out, and that batch was delivered again on the next start.
struct OpenBus {
    conn: Connection,
    channel: lapin::Channel,
}

/// One connection's life. Returns `Ok(Some(_))` when a stop was requested.
async fn session(
    settings: &Settings,
    input: &mpsc::Sender<Vec<Incoming>>,
    stop: &mut Shutdown,
    ready_sent: &mut bool,
    window: &mut Window,
) -> Result<Option<OpenBus>, BusError> {
    let a = &settings.amqp;
    let target = a.display_target();
    let handshakes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let conn = tokio::select! {
        c = bus::connect(a, &a.connection_name, handshakes.clone()) => c?,
        _ = stop.requested() => return Ok(None),
    };
    let channel = conn
        .create_channel()
        .await
        .map_err(BusError::amqp("opening a channel"))?;
    bus::declare_topology(&conn, &channel, a, window.current()).await?;
    let mut sub = Subscription::start(&channel, &a.queue, 0).await?;
    metrics::prefetch_window(window.current());
    metrics::connection_up(true);
    watch_connection(&conn);
    tracing::info!(target = %target, queue = %a.queue, prefetch = window.current(), "consuming");
    let status = format!("consuming {} on {target}", a.queue);
    if *ready_sent {
        shutdown::notify_status(&status);
    } else {
        shutdown::notify_ready(&status);
        *ready_sent = true;
    }
    // lapin's recovery is invisible to the consumer stream; every recovery is a new handshake.
    let mut seen_handshakes = handshakes.load(std::sync::atomic::Ordering::SeqCst);
    let mut recovery_check = tokio::time::interval(Duration::from_secs(1));
    // What the stream yielded after a burst was cut short by it: handled before waiting again.
    let mut held: Option<Option<lapin::Result<Delivery>>> = None;
    loop {
        let next = match held.take() {
            Some(n) => n,
            None => tokio::select! {
                biased;
                _ = stop.requested() => {
                    let _ = sub.cancel(&channel).await;
                    return Ok(Some(OpenBus { conn, channel }));
                }
                _ = recovery_check.tick() => {
                    note_recoveries(&handshakes, &mut seen_handshakes);
                    continue;
                }
                d = sub.consumer.next() => d,
            },
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error; waiting for the connection to recover");
                channel
                    .wait_for_recovery(e)
                    .await
                    .map_err(BusError::amqp("recovering the connection"))?;
                continue;
            }
            None => {
                return Err(BusError::Amqp {
                    what: "the broker cancelled our consumer".into(),
                    source: lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Closed,
                        "consumer cancelled",
                    )
                    .into(),
                });
            }
        };
        note_recoveries(&handshakes, &mut seen_handshakes);
        // Take every delivery that is already here: one hand-off per burst. A short burst waits
        // for more, LINGER at a time (see LINGER).
        let mut burst = vec![incoming(delivery)];
        let mut bytes = burst[0].body.len();
        let mut lingered = 0;
        while burst.len() < MAX_BURST {
            match futures_lite::future::poll_once(sub.consumer.next()).await {
                Some(Some(Ok(d))) => {
                    bytes += d.data.len();
                    burst.push(incoming(d));
                }
                Some(other) => {
                    held = Some(other);
                    break;
                }
                None if lingered < LINGERS
                    && burst.len() < LINGER_BELOW
                    && bytes < LINGER_BELOW_BYTES =>
                {
                    lingered += 1;
                    tokio::time::sleep(LINGER).await;
                }
                None => break,
            }
        }
        if forward(input, window, burst).await.is_err() {
            // run() reports why the pipeline stopped.
            return Ok(Some(OpenBus { conn, channel }));
        }
        // Not while the old stream has something in hand (an error or its end): that is handled
        // first, on the subscription it came from.
        if held.is_none()
            && let Some(prefetch) = window.resize()
            && sub
                .resize(&channel, &a.queue, prefetch, input, window)
                .await?
                .is_err()
        {
            return Ok(Some(OpenBus { conn, channel }));
        }
    }
}

/// Most deliveries handed to the pipeline at once. Bursts are what happened to be ready; the cap
/// only bounds how far a batch can run over `store.batch_size` (it takes whole bursts).
const MAX_BURST: usize = 1024;

/// How long a short burst (under `LINGER_BELOW` deliveries) waits for more before it is handed on,
/// at most `LINGERS` times.
///
/// Single events arrive one by one as the I/O loop parses them, so without it bursts averaged
/// about four deliveries and every four deliveries paid a wake-up of the decode thread and a
/// context switch of the consumer task. One wait of 500 µs made bursts of dozens, and draining
/// 200,000 single events took 3.4 to 3.7 CPU-s of the daemon instead of 4.3 to 5.3 (throughput
/// bench, `singles=200000 rounds=1`, builds run alternately). Up to four waits, for bursts of up to
/// 512, took the consumer task from 1.34-1.66 to 1.15-1.24 CPU-s and the daemon from 5.19-5.45 to
/// 4.72-4.91 (the same bench, alternately, on a slower machine). A delivery waits at most a few
/// milliseconds (the timer's resolution is one) more on its way to the database, where a batch
/// waits up to `store.batch_max_latency_ms` anyway; and none under load, when bursts are long.
/// A burst holding `LINGER_BELOW_BYTES` of bodies (a few zip bundles, milliseconds of decoding)
/// goes on at once: it is worth its hand-off, and the decode thread should not wait for it.
const LINGER: Duration = Duration::from_micros(500);
const LINGERS: u32 = 4;
const LINGER_BELOW: usize = 512;
const LINGER_BELOW_BYTES: usize = 256 * 1024;

/// A delivery as the pipeline takes it.
fn incoming(delivery: Delivery) -> Incoming {
    let meta = DeliveryMeta {
        exchange: delivery.exchange.as_str().to_string(),
        routing_key: delivery.routing_key.as_str().to_string(),
        content_type: delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_string()),
        headers: bus::headers_to_json(delivery.properties.headers().as_ref()),
    };
    Incoming {
        meta,
        body: delivery.data,
        ack: Some(AckHandle {
            delivery_tag: delivery.delivery_tag,
            acker: delivery.acker,
        }),
    }
}

/// Log and count the recoveries since the last look.
fn note_recoveries(handshakes: &std::sync::atomic::AtomicU64, seen: &mut u64) {
    let now = handshakes.load(std::sync::atomic::Ordering::SeqCst);
    if now > *seen {
        for _ in *seen..now {
            metrics::reconnect();
        }
        tracing::warn!(
            recoveries = now - *seen,
            "connection recovered; unacknowledged deliveries come again and are stored once"
        );
        metrics::connection_up(true);
        *seen = now;
    }
}

/// Track connection errors for the metrics and the log (recoveries are counted in `session`).
fn watch_connection(conn: &Connection) {
    let mut events = conn.events_listener();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                lapin::Event::Error(e) => {
                    tracing::warn!(error = %e, "connection error");
                    metrics::connection_up(false);
                }
                other => tracing::debug!(event = ?other, "connection event"),
            }
        }
    });
}

/// SIGHUP: re-read the file; apply the log level; name what needs a restart.
fn reload(
    current: &mut Settings,
    path: Option<&std::path::Path>,
    reload_log: &Option<LogReloader>,
    live: &LiveHandle,
) {
    let new = match Settings::load(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reload: configuration rejected; keeping the running one");
            return;
        }
    };
    if new.log.level != current.log.level {
        match reload_log.as_ref().map(|f| f(&new.log.level)) {
            Some(Ok(())) | None => {
                tracing::info!(from = %current.log.level, to = %new.log.level, "reload: log level changed");
                current.log.level = new.log.level.clone();
            }
            Some(Err(e)) => tracing::error!(error = %e, "reload: log level not applied"),
        }
    }
    if new.exports != current.exports {
        apply_export_settings(&new, live);
        tracing::info!("reload: export settings applied");
        current.exports = new.exports.clone();
    }
    let mut restart = Vec::new();
    let (old_v, new_v) = (
        serde_json::to_value(&*current).unwrap_or_default(),
        serde_json::to_value(&new).unwrap_or_default(),
    );
    if let (Some(o), Some(n)) = (old_v.as_object(), new_v.as_object()) {
        for (section, nv) in n {
            if let (Some(ov), Some(nv)) =
                (o.get(section).and_then(|v| v.as_object()), nv.as_object())
            {
                for (k, v) in nv {
                    if ov.get(k) != Some(v) {
                        restart.push(format!("{section}.{k}"));
                    }
                }
            }
        }
    }
    if restart.is_empty() {
        tracing::info!("reload: done");
    } else {
        tracing::warn!(keys = %restart.join(", "), "reload: these changes take effect after a restart");
    }
}

/// The export job worker thread (its own connection; never blocks ingest).
struct ExportWorker {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ExportWorker {
    fn start(settings: &Settings) -> ExportWorker {
        let (stop, rx) = std::sync::mpsc::channel();
        let db = settings.store.path.clone();
        let jobs = settings.exports.clone();
        let thread = std::thread::Builder::new()
            .name("cbtrail-exports".into())
            .spawn(move || {
                if let Err(e) = crate::jobs::run_worker(db, jobs, rx) {
                    tracing::error!(error = %e, "export worker stopped");
                }
            })
            .expect("spawning the export worker");
        ExportWorker { stop, thread }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Periodic retention on its own thread and connection, in small transactions.
struct Retention {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Retention {
    fn start(settings: &Settings) -> Retention {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let days = settings.store.retention_days;
        if days == 0 {
            return Retention { stop, thread: None };
        }
        let path = settings.store.path.clone();
        let every = Duration::from_secs(u64::from(settings.store.retention_interval_hours) * 3600);
        let thread = std::thread::Builder::new()
            .name("cbtrail-retention".into())
            .spawn(move || {
                let stopped = std::cell::Cell::new(false);
                loop {
                    let opts = crate::store::retention::RetentionOptions {
                        days,
                        ..Default::default()
                    };
                    let should_stop = || {
                        if !stopped.get()
                            && !matches!(rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty))
                        {
                            stopped.set(true);
                        }
                        stopped.get()
                    };
                    match crate::store::retention::run_once_with(
                        &path,
                        &opts,
                        now_ms(),
                        &should_stop,
                    ) {
                        Ok(r) => tracing::info!(
                            events = r.events_deleted,
                            notifications = r.notifications_deleted,
                            quarantine = r.quarantine_deleted,
                            processes = r.processes_deleted,
                            pages_vacuumed = r.pages_vacuumed,
                            "retention run done"
                        ),
                        Err(e) => tracing::error!(error = %e, "retention run failed"),
                    }
                    if stopped.get() {
                        break;
                    }
                    match rx.recv_timeout(every) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
            })
            .expect("spawning the retention thread");
        Retention {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
