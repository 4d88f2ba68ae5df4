//! Signals, the shutdown flag every task watches, and systemd notifications (ready, status,
//! watchdog, stopping).
//!
//! The watchdog is fed from the writer's progress ([`crate::pipeline::Liveness`]), not from a bare
//! timer: a writer stuck in a commit stops the pings and systemd restarts the service.

use crate::pipeline::Liveness;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// What a signal asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM / SIGINT: stop consuming, commit and ack what is in hand, exit.
    Stop,
    /// SIGHUP: re-read the configuration and apply what can change without a restart.
    Reload,
}

/// The shutdown flag: `true` once a stop was requested.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A flag and the sender that raises it.
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { rx })
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a stop was requested (at once if it already was).
    pub async fn requested(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

/// Listen for SIGTERM, SIGINT and SIGHUP and forward them as [`Request`]s.
pub fn listen() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<Request>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let r = tokio::select! {
                _ = term.recv() => Request::Stop,
                _ = int.recv() => Request::Stop,
                _ = hup.recv() => Request::Reload,
            };
            if tx.send(r).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Tell systemd we are ready (a no-op outside systemd).
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Update the status line `systemctl status` shows.
pub fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(status)]);
}

/// Tell systemd that start-up (or shutdown) takes `by` longer than its timeout, and why: a long
/// migration must not be killed half-way, only to start over on the restart.
pub fn notify_extend_timeout(status: &str, by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::ExtendTimeoutUsec(usec),
        sd_notify::NotifyState::Watchdog,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tell systemd we are stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// When systemd's watchdog is on (`WatchdogSec=`), ping it at half the period for as long as the
/// writer keeps making progress within one period. Returns `None` when the watchdog is off.
pub fn spawn_watchdog(live: Arc<Liveness>) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(watchdog_loop(
        period,
        move || live.since_last(),
        || {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        },
    )))
}

/// The watchdog policy, apart from the clock and the notify call so it can be tested: every half
/// period, ping when the writer's last progress is less than one period old.
pub async fn watchdog_loop(
    period: Duration,
    since_last_progress: impl Fn() -> Duration,
    mut ping: impl FnMut(),
) {
    let mut tick = tokio::time::interval(period / 2);
    let mut stalled = false;
    loop {
        tick.tick().await;
        let since = since_last_progress();
        if since < period {
            if stalled {
                tracing::info!("the writer is making progress again");
            }
            stalled = false;
            ping();
        } else if !stalled {
            tracing::error!(
                stalled_ms = since.as_millis() as u64,
                "the writer has made no progress for a whole watchdog period; no longer pinging systemd"
            );
            stalled = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    #[tokio::test(start_paused = true)]
    async fn watchdog_pings_only_while_the_writer_progresses() {
        let stalled_ms = Arc::new(AtomicU64::new(0));
        let pings = Arc::new(AtomicU32::new(0));
        let (s, p) = (stalled_ms.clone(), pings.clone());
        let task = tokio::spawn(watchdog_loop(
            Duration::from_secs(2),
            move || Duration::from_millis(s.load(Ordering::SeqCst)),
            move || {
                p.fetch_add(1, Ordering::SeqCst);
            },
        ));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let alive = pings.load(Ordering::SeqCst);
        assert!(
            alive >= 3,
            "pinged {alive} times while the writer progressed"
        );
        // The writer stops making progress.
        stalled_ms.store(5_000, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = pings.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            pings.load(Ordering::SeqCst),
            before,
            "pinged a stuck writer"
        );
        // It recovers.
        stalled_ms.store(0, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(pings.load(Ordering::SeqCst) > before);
        task.abort();
    }
}
