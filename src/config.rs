//! Typed settings: a TOML file, then `CBTRAIL_*` environment overrides, validated before any work
//! starts.
//!
//! Every key is documented in `deploy/cbtrail.toml`. Unknown keys and bad values are errors that name
//! the key, so a typo never silently falls back to a default. Credentials left empty are read from the
//! CB server's own `/etc/cb/cb.conf` (`RabbitMQUser`, `RabbitMQPassword`), as the reference consumer
//! does; they never appear in logs, errors or `check-config` output.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors found while loading or validating settings. Each names the offending key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("reading CB server credentials from {path}: {message}")]
    CbConf { path: PathBuf, message: String },
}

/// A password or other secret: shown as `********` by `Debug`, `Display` and serialization.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself; only for building the connection.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"********\""
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "********" })
    }
}

/// All settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub store: StoreSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    /// Hit-triggered exports (settle, follow, output layout): see `docs/exports.md`.
    pub exports: crate::jobs::JobSettings,
}

/// The CB server's RabbitMQ bus.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// Full URL (`amqp://user:pass@host:port/vhost` or `amqps://…`). When set it wins over host, port,
    /// vhost, username and password.
    pub url: Secret,
    pub host: String,
    pub port: u16,
    pub vhost: String,
    /// Empty: read `RabbitMQUser` from `cb_conf`.
    pub username: String,
    /// Empty: read `RabbitMQPassword` from `cb_conf`.
    pub password: Secret,
    /// The CB server's configuration file holding the bus credentials.
    pub cb_conf: PathBuf,
    /// Use TLS (`amqps`). Server certificates are always verified.
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate (default: the system's roots).
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate and PKCS#8 key, for brokers that require client authentication.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Our own durable queue. Several daemons sharing one name compete for messages.
    pub queue: String,
    /// Topic exchange of JSON notifications (and `ingress.event.*` protobuf when the server is set up so).
    pub events_exchange: String,
    /// Routing-key patterns bound on `events_exchange`.
    pub routing_keys: Vec<String>,
    /// Fanout exchange of raw sensor zip bundles; empty to not bind it.
    pub raw_exchange: String,
    /// Most unacknowledged deliveries the broker may push ahead; at least the batch size.
    /// Deliveries are acknowledged only after their batch commits, so the window must hold the
    /// batch being committed, the ones filling behind it and the acknowledgements on their way: at
    /// twice the batch size the broker sat waiting for acks between batches.
    pub prefetch: u16,
    /// Body bytes the prefetch window may hold: the window is `prefetch_bytes / mean body size`,
    /// between 64 and `prefetch` deliveries, so single events get the whole `prefetch` and zip
    /// bundles (a hundred times larger) a window of their own size. Memory grows with it: every
    /// delivery in the window may be held, decoded, until its batch commits (see the README's
    /// Performance section for measured peaks).
    pub prefetch_bytes: u64,
    /// Shown in the broker's management UI and `rabbitmqctl list_connections`.
    pub connection_name: String,
    /// Longest wait between reconnect attempts.
    pub reconnect_max_secs: u64,
    /// AMQP heartbeat.
    pub heartbeat_secs: u16,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: Secret::default(),
            host: "localhost".into(),
            port: 5004,
            vhost: "/".into(),
            username: String::new(),
            password: Secret::default(),
            cb_conf: PathBuf::from("/etc/cb/cb.conf"),
            tls: false,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            queue: "cbtrail".into(),
            events_exchange: "api.events".into(),
            routing_keys: [
                "watchlist.#",
                "feed.#",
                "alert.#",
                "binaryinfo.#",
                "binarystore.#",
                "events.partition.#",
                "task.error.logged",
                "cmd.#",
                "ingress.event.#",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            raw_exchange: "api.rawsensordata".into(),
            prefetch: 40_000,
            prefetch_bytes: 16 * 1024 * 1024,
            connection_name: "cbtrail".into(),
            reconnect_max_secs: 30,
            heartbeat_secs: 30,
        }
    }
}

pub use crate::store::Synchronous;

/// The database and batching.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Database file. Default: `$STATE_DIRECTORY/cbtrail.db` under systemd, else `./cbtrail.db`.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Deliveries per transaction.
    pub batch_size: usize,
    /// Records (events, binaries, notifications) per transaction; a zip bundle holds hundreds.
    pub batch_max_records: usize,
    /// Longest a delivery waits for its batch to fill before it is committed (and acked).
    pub batch_max_latency_ms: u64,
    /// Keep events, notifications and quarantine rows this many days; 0 keeps everything.
    pub retention_days: u32,
    /// How often retention runs, hours.
    pub retention_interval_hours: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        let dir = std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        StoreSettings {
            path: dir.join("cbtrail.db"),
            synchronous: Synchronous::Full,
            batch_size: 10_000,
            batch_max_records: crate::pipeline::DEFAULT_BATCH_MAX_RECORDS,
            batch_max_latency_ms: 250,
            retention_days: 0,
            retention_interval_hours: 6,
        }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of the HTTP listener; empty to disable.
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug`, `trace` or a full filter (`cbtrail=debug,lapin=warn`).
    /// `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
        }
    }
}

impl Settings {
    /// Load `path` (when given), apply `CBTRAIL_*` environment overrides (`CBTRAIL_AMQP__HOST`,
    /// `CBTRAIL_STORE__BATCH_SIZE`, lists comma-separated) and validate.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_with_env(path, std::env::vars())
    }

    /// [`Settings::load`] with an explicit environment (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    message: "no such file".into(),
                });
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            // Only `CBTRAIL_<SECTION>__<KEY>`: other CBTRAIL_* variables (CBTRAIL_FIXTURES,
            // CBTRAIL_PUBLISH_AMQP) belong to tools, not to the daemon's settings.
            .filter(|(k, _)| k.starts_with("CBTRAIL_") && k.contains("__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("CBTRAIL")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("amqp.routing_keys")
                .try_parsing(true)
                .source(Some(env)),
        );
        let raw = builder.build().map_err(|e| from_config_error(path, e))?;
        let settings: Settings = raw
            .try_deserialize()
            .map_err(|e| from_config_error(path, e))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str, m: String| ConfigError::Key {
            key: k.into(),
            message: m,
        };
        let a = &self.amqp;
        if a.queue.trim().is_empty() {
            return Err(key("amqp.queue", "must not be empty".into()));
        }
        if a.routing_keys.is_empty() && a.raw_exchange.is_empty() {
            return Err(key(
                "amqp.routing_keys",
                "nothing to consume: no routing keys and no raw_exchange".into(),
            ));
        }
        if a.routing_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(key(
                "amqp.routing_keys",
                "contains an empty routing key".into(),
            ));
        }
        if a.prefetch == 0 {
            return Err(key("amqp.prefetch", "must be at least 1".into()));
        }
        if a.prefetch_bytes == 0 {
            return Err(key("amqp.prefetch_bytes", "must be at least 1".into()));
        }
        if a.url.is_empty() && a.host.trim().is_empty() {
            return Err(key("amqp.host", "must not be empty".into()));
        }
        if !a.url.is_empty() {
            let u = a.url.expose();
            if !(u.starts_with("amqp://") || u.starts_with("amqps://")) {
                return Err(key(
                    "amqp.url",
                    "must start with amqp:// or amqps://".into(),
                ));
            }
        }
        if a.client_cert.is_some() != a.client_key.is_some() {
            return Err(key(
                "amqp.client_cert",
                "client_cert and client_key go together".into(),
            ));
        }
        let s = &self.store;
        if s.batch_size == 0 {
            return Err(key("store.batch_size", "must be at least 1".into()));
        }
        if s.batch_size > a.prefetch as usize {
            return Err(key(
                "amqp.prefetch",
                format!(
                    "must be at least store.batch_size ({}), or batches never fill",
                    s.batch_size
                ),
            ));
        }
        if s.batch_max_records == 0 {
            return Err(key("store.batch_max_records", "must be at least 1".into()));
        }
        if s.batch_max_latency_ms == 0 {
            return Err(key(
                "store.batch_max_latency_ms",
                "must be at least 1".into(),
            ));
        }
        if s.retention_days > 0 && s.retention_interval_hours == 0 {
            return Err(key(
                "store.retention_interval_hours",
                "must be at least 1 when retention_days is set".into(),
            ));
        }
        if s.path.as_os_str().is_empty() {
            return Err(key("store.path", "must not be empty".into()));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(key(
                "metrics.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:9464",
                    self.metrics.listen
                ),
            ));
        }
        if let Err(e) = self.exports.validate() {
            return Err(key("exports", e.to_string()));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(key(
                "log.level",
                format!("`{}` is not a log level or filter", self.log.level),
            ));
        }
        Ok(())
    }

    /// The effective settings as TOML, secrets masked (`check-config`).
    pub fn to_masked_toml(&self) -> String {
        // Serializing through serde_json keeps the key order of the structs; the masking lives in
        // `Secret`'s Serialize.
        let v = serde_json::to_value(self).unwrap_or_default();
        let mut out = String::new();
        if let serde_json::Value::Object(sections) = v {
            for (name, section) in sections {
                out.push_str(&format!("[{name}]\n"));
                if let serde_json::Value::Object(keys) = section {
                    for (k, v) in keys {
                        if v.is_null() {
                            out.push_str(&format!("# {k} is not set\n"));
                        } else {
                            out.push_str(&format!("{k} = {v}\n"));
                        }
                    }
                }
                out.push('\n');
            }
        }
        out
    }

    /// Longest wait between reconnect attempts.
    pub fn reconnect_max(&self) -> Duration {
        Duration::from_secs(self.amqp.reconnect_max_secs.max(1))
    }
}

fn from_config_error(path: Option<&Path>, e: config::ConfigError) -> ConfigError {
    // The config crate names the key in its message ("unknown field `hots`", "invalid type … for key
    // `amqp.port`"); keep its text, and say which file it came from.
    match path {
        Some(p) => ConfigError::File {
            path: p.to_path_buf(),
            message: e.to_string(),
        },
        None => ConfigError::Invalid(e.to_string()),
    }
}

/// Bus credentials: from the settings, else from the CB server's `cb.conf`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

impl AmqpSettings {
    /// Username and password, reading `cb_conf` when either is empty (as the reference consumer does).
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        if !self.username.is_empty() && !self.password.is_empty() {
            return Ok(Credentials {
                username: self.username.clone(),
                password: self.password.clone(),
            });
        }
        let text = std::fs::read_to_string(&self.cb_conf).map_err(|e| ConfigError::CbConf {
            path: self.cb_conf.clone(),
            message: format!(
                "{e} (set amqp.username and amqp.password, or make the file readable)"
            ),
        })?;
        let (user, pass) = parse_cb_conf(&text);
        let username = if self.username.is_empty() {
            user.ok_or_else(|| ConfigError::CbConf {
                path: self.cb_conf.clone(),
                message: "no RabbitMQUser".into(),
            })?
        } else {
            self.username.clone()
        };
        let password = if self.password.is_empty() {
            Secret(pass.ok_or_else(|| {
                ConfigError::CbConf {
                    path: self.cb_conf.clone(),
                    message:
                        "no RabbitMQPassword (EDR 7.7+ keeps only a RabbitMQToken there: create a \
                          dedicated bus user and set amqp.username/amqp.password)"
                            .into(),
                }
            })?)
        } else {
            self.password.clone()
        };
        Ok(Credentials { username, password })
    }

    /// The connection URI with credentials (never log it).
    pub fn uri(&self) -> Result<String, ConfigError> {
        if !self.url.is_empty() {
            return Ok(self.url.expose().to_string());
        }
        let c = self.credentials()?;
        let scheme = if self.tls { "amqps" } else { "amqp" };
        Ok(format!(
            "{scheme}://{}:{}@{}:{}/{}?heartbeat={}",
            pct(&c.username),
            pct(c.password.expose()),
            self.host,
            self.port,
            pct(&self.vhost),
            self.heartbeat_secs
        ))
    }

    /// Where we connect, without credentials (for logs).
    pub fn display_target(&self) -> String {
        if !self.url.is_empty() {
            return redact_uri(self.url.expose());
        }
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!(
            "{scheme}://{}:{}/{}",
            self.host,
            self.port,
            pct(&self.vhost)
        )
    }
}

/// `amqp://user:pass@host:port/vhost?query` → `amqp://host:port/vhost`, for logs and errors.
pub fn redact_uri(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
            let rest = rest.split('?').next().unwrap_or(rest);
            format!("{scheme}://{rest}")
        }
        None => "<url>".into(),
    }
}

/// Parse the INI-style `cb.conf`: `RabbitMQUser=…`, `RabbitMQPassword=…` in the root section.
pub fn parse_cb_conf(text: &str) -> (Option<String>, Option<String>) {
    let mut user = None;
    let mut pass = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            // Only the root section holds these keys.
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "RabbitMQUser" if !v.is_empty() => user = Some(v),
                "RabbitMQPassword" if !v.is_empty() => pass = Some(v),
                _ => {}
            }
        }
    }
    (user, pass)
}

/// Percent-encode a URI component (userinfo, vhost).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        Settings::load_with_env(
            Some(&p),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_are_valid() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.amqp.port, 5004);
        assert_eq!(s.amqp.queue, "cbtrail");
        assert!(s.amqp.prefetch as usize >= s.store.batch_size);
    }

    #[test]
    fn default_prefetch_holds_several_batches() {
        // Acks wait for commits: with room for only two batches the broker idled between them
        // (single messages: 0.51-0.80 of the null consumer against 0.66-0.82 at four, interleaved
        // bench runs). The shipped config file says the same as the defaults: see
        // `shipped_example_config_is_valid_and_complete`.
        let s = load("", &[]).unwrap();
        assert!(s.amqp.prefetch as usize >= 4 * s.store.batch_size);
    }

    #[test]
    fn zero_prefetch_bytes_is_refused() {
        let e = load("[amqp]\nprefetch_bytes = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("amqp.prefetch_bytes"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("[amqp]\nhots = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("hots"), "{e}");
        let e = load("[stor]\n", &[]).unwrap_err().to_string();
        assert!(e.contains("stor"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = load("[amqp]\nport = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("port"), "{e}");
        let e = load("[store]\nbatch_size = 50000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("amqp.prefetch"), "{e}");
        let e = load("[metrics]\nlisten = \"nowhere\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.listen"), "{e}");
        let e = load("[store]\nbatch_max_records = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.batch_max_records"), "{e}");
        let e = load("[store]\nsynchronous = \"sometimes\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sometimes"), "{e}");
    }

    #[test]
    fn environment_overrides_file() {
        let s = load(
            "[amqp]\nhost = \"a\"\n",
            &[
                ("CBTRAIL_AMQP__HOST", "b"),
                ("CBTRAIL_STORE__BATCH_SIZE", "10"),
                ("CBTRAIL_AMQP__ROUTING_KEYS", "watchlist.#,feed.#"),
                ("CBTRAIL_FIXTURES", "/somewhere"),
            ],
        )
        .unwrap();
        assert_eq!(s.amqp.host, "b");
        assert_eq!(s.store.batch_size, 10);
        assert_eq!(s.amqp.routing_keys, vec!["watchlist.#", "feed.#"]);
    }

    #[test]
    fn credentials_from_cb_conf_and_masked() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("cb.conf");
        std::fs::write(
            &conf,
            "# CB\nRabbitMQUser=cb\nRabbitMQPassword=s3cr3t/pw\n[other]\nRabbitMQUser=no\n",
        )
        .unwrap();
        let toml = format!("[amqp]\ncb_conf = {:?}\n", conf.display().to_string());
        let s = load(&toml, &[]).unwrap();
        let c = s.amqp.credentials().unwrap();
        assert_eq!(c.username, "cb");
        assert_eq!(c.password.expose(), "s3cr3t/pw");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let uri = s.amqp.uri().unwrap();
        assert!(uri.contains("s3cr3t%2Fpw"), "{uri}");
        assert!(!s.amqp.display_target().contains("s3cr3t"));
    }

    #[test]
    fn secrets_never_printed() {
        let s = load(
            "[amqp]\nusername = \"u\"\npassword = \"hunter2\"\nurl = \"amqp://u:hunter2@h:1/\"\n",
            &[],
        )
        .unwrap();
        let shown = s.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.amqp.display_target(), "amqp://h:1/");
    }

    #[test]
    fn shipped_example_config_is_valid_and_complete() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cbtrail.toml");
        let s = Settings::load_with_env(Some(&path), std::iter::empty()).unwrap();
        let d = Settings::default();
        // The example documents the defaults: loading it changes nothing.
        assert_eq!(s.to_masked_toml(), d.to_masked_toml());
        // Every key of every section is mentioned in it.
        let text = std::fs::read_to_string(&path).unwrap();
        let v = serde_json::to_value(&d).unwrap();
        for (section, keys) in v.as_object().unwrap() {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] missing"
            );
            for k in keys.as_object().unwrap().keys() {
                assert!(
                    text.contains(&format!("{k} =")) || text.contains(&format!("# {k} =")),
                    "{section}.{k} is not documented in deploy/cbtrail.toml"
                );
            }
        }
    }

    #[test]
    fn missing_cb_conf_is_explained() {
        let s = load("[amqp]\ncb_conf = \"/nonexistent/cb.conf\"\n", &[]).unwrap();
        let e = s.amqp.credentials().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cb.conf"), "{e}");
    }
}
