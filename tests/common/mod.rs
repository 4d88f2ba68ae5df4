//! Shared helpers of the integration tests: fixture location, a private RabbitMQ vhost per test, the
//! daemon as a child process, database fingerprints.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The captured bus traffic: `$CBTRAIL_FIXTURES`, else `../shared/fixtures` beside the crate. Under
/// `CI=true` a missing directory fails the test; elsewhere the test says it skipped.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CBTRAIL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.join("cb-event-forwarder").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("fixtures missing at {} (required under CI)", dir.display());
    }
    eprintln!(
        "SKIPPED: fixtures not found at {} (set CBTRAIL_FIXTURES)",
        dir.display()
    );
    None
}

/// The capture files of the fixtures.
pub fn forwarder_captures() -> Option<PathBuf> {
    fixtures().map(|d| d.join("cb-event-forwarder"))
}

pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("running rabbitmqctl (is RabbitMQ installed? .ci/run installs it)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique name for this process and call: tests run in parallel and never share broker objects.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A private vhost on the local broker, deleted on drop.
pub struct Broker {
    pub vhost: String,
}

impl Broker {
    pub fn new(prefix: &str) -> Broker {
        let broker = Broker::without_exchanges(prefix);
        broker.declare_server_exchanges();
        broker
    }

    /// A vhost holding only the broker's default exchanges, as before a CB server first starts.
    pub fn without_exchanges(prefix: &str) -> Broker {
        let vhost = unique(&format!("cbtrail-test-{prefix}"));
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        Broker { vhost }
    }

    /// Create `api.events` and `api.rawsensordata` as a CB server does: the daemon only binds to them.
    pub fn declare_server_exchanges(&self) {
        let url = self.url();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = cbtrail::bus::publish::Publisher::connect(&url, &unique("declare"), None)
                .await
                .expect("declaring the CB server's exchanges");
            p.finish().await.unwrap();
        });
    }

    /// URL of the vhost, guest/guest on 127.0.0.1:5672.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.vhost)
    }

    /// (messages ready, messages unacknowledged, consumers) of `queue`, if it exists.
    pub fn queue_state(&self, queue: &str) -> Option<(u64, u64, u64)> {
        let out = rabbitmqctl(&[
            "list_queues",
            "-p",
            &self.vhost,
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
            "--no-table-headers",
            "-q",
        ]);
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 4 && f[0] == queue {
                Some((f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    }

    /// Close the broker connections whose client-given name is `name` (and only those).
    pub fn close_connection(&self, name: &str) -> usize {
        let out = rabbitmqctl(&["list_connections", "pid", "client_properties", "-q"]);
        let mut closed = 0;
        for line in out.lines() {
            if (line.contains(&format!("\"{name}\"")) || line.contains(&format!("<<\"{name}\">>")))
                && let Some(pid) = line.split_whitespace().next()
            {
                rabbitmqctl(&["close_connection", pid, "cbtrail fault test"]);
                closed += 1;
            }
        }
        closed
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cbtrail")
}

/// Run `cbtrail` to completion; panics with its output on failure.
pub fn cbtrail(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("running cbtrail");
    assert!(
        out.status.success(),
        "cbtrail {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The daemon as a child process with its own config, queue and database.
pub struct Daemon {
    pub child: Child,
    pub config: PathBuf,
    pub log: PathBuf,
    pub queue: String,
    pub connection_name: String,
}

impl Daemon {
    /// Write a config for `broker` and start `cbtrail run`. `extra` is appended to the TOML.
    pub fn start(broker: &Broker, dir: &Path, db: &Path, extra: &str) -> Daemon {
        Daemon::start_with_keys(broker, dir, db, "", "", extra)
    }

    /// [`Daemon::start`] with more keys for the `[amqp]` and `[store]` tables this helper writes
    /// itself (a second `[amqp]` in `extra` would be a TOML error).
    pub fn start_with_keys(
        broker: &Broker,
        dir: &Path,
        db: &Path,
        amqp: &str,
        store: &str,
        extra: &str,
    ) -> Daemon {
        let queue = unique("cbtrail-q");
        let connection_name = unique("cbtrail-daemon");
        let config = dir.join(format!("{connection_name}.toml"));
        // No metrics listener unless the test asks for one (tests run in parallel).
        let metrics = if extra.contains("[metrics]") {
            ""
        } else {
            "[metrics]\nlisten = \"\"\n"
        };
        // Exports stay in the test's directory unless the test places them itself.
        let exports = if extra.contains("[exports]") {
            String::new()
        } else {
            format!(
                "[exports]\noutput_dir = \"{}\"\n",
                dir.join(format!("{connection_name}-exports")).display()
            )
        };
        // Short batches keep the tests quick, unless the test sets its own latency.
        let latency = if store.contains("batch_max_latency_ms") {
            ""
        } else {
            "batch_max_latency_ms = 20\n"
        };
        std::fs::write(
            &config,
            format!(
                "[amqp]\nurl = \"{}\"\nqueue = \"{queue}\"\nconnection_name = \"{connection_name}\"\n\
                 reconnect_max_secs = 2\n{amqp}\n\n[store]\npath = \"{}\"\n{latency}\
                 {store}\n\n{metrics}{exports}\n{extra}\n",
                broker.url(),
                db.display(),
            ),
        )
        .unwrap();
        Daemon::start_with_config(config, queue, connection_name, dir)
    }

    pub fn start_with_config(
        config: PathBuf,
        queue: String,
        connection_name: String,
        dir: &Path,
    ) -> Daemon {
        let log = dir.join(format!("{}.{}.log", connection_name, unique("run")));
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "cbtrail=debug,info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting cbtrail run");
        Daemon {
            child,
            config,
            log,
            queue,
            connection_name,
        }
    }

    /// Start again with the same config (after a kill).
    pub fn restart(&mut self, dir: &Path) {
        let d = Daemon::start_with_config(
            self.config.clone(),
            self.queue.clone(),
            self.connection_name.clone(),
            dir,
        );
        *self = d;
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Wait until the daemon says it is consuming (its queue exists and is bound).
    pub fn wait_consuming(&mut self) {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if self.log_text().contains("consuming") {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("daemon exited early ({st}):\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon never started consuming:\n{}", self.log_text());
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("-TERM");
        let until = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "daemon did not stop within {within:?} of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; the daemon must exit 0 with every delivery of its queue acknowledged (nothing ready,
    /// nothing in flight).
    pub fn stop_with_everything_acknowledged(&mut self, broker: &Broker) {
        let st = self.terminate(Duration::from_secs(15));
        assert!(st.success(), "exit status {st}:\n{}", self.log_text());
        assert_eq!(
            broker.queue_state(&self.queue),
            Some((0, 0, 0)),
            "{}",
            self.log_text()
        );
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub type Fingerprint = BTreeMap<String, (u64, u128)>;

pub fn fingerprint(db: &Path) -> Option<Fingerprint> {
    let conn = cbtrail::store::open_read_only(db).ok()?;
    cbtrail::store::fingerprint(&conn).ok()
}

/// Rows in `table` (0 while the database does not exist yet).
pub fn count(db: &Path, table: &str) -> u64 {
    let Ok(conn) = cbtrail::store::open_read_only(db) else {
        return 0;
    };
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .unwrap_or(0)
}

/// Poll until `db`'s fingerprint equals `expected`; on timeout, fail with both.
pub fn wait_for_fingerprint(
    db: &Path,
    expected: &Fingerprint,
    within: Duration,
    log: &dyn Fn() -> String,
) {
    let until = Instant::now() + within;
    let mut last = None;
    while Instant::now() < until {
        last = fingerprint(db);
        if last.as_ref() == Some(expected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "database never matched the replay.\nexpected: {expected:?}\ngot:      {last:?}\ndaemon log:\n{}",
        log()
    );
}

/// Poll `cond` until true or fail after `within`.
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}
