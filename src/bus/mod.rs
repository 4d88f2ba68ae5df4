//! The RabbitMQ side: connection with automatic recovery, our own queue and its bindings, header
//! conversion, and the publisher that plays the CB server's part.
//!
//! We never declare the server's exchanges from the daemon: binding needs them to exist, and a
//! missing one is reported as a configuration problem of the CB server (see [`BusError::MissingExchange`]).

pub mod publish;
pub mod window;

use crate::config::AmqpSettings;
use crate::model::Headers;
use lapin::options::{BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("connecting to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: lapin::Error,
    },
    #[error(
        "exchange `{exchange}` does not exist on {target}; on a CB server enable it in cb.conf \
         (EnableRawSensorDataBroadcast=True for api.rawsensordata) or fix amqp.{key}"
    )]
    MissingExchange {
        exchange: String,
        target: String,
        key: &'static str,
    },
    #[error("{what}: {source}")]
    Amqp {
        what: String,
        #[source]
        source: lapin::Error,
    },
    #[error("broker URL {target}: {message}")]
    BadUrl { target: String, message: String },
    #[error("the broker refused a published message (nack)")]
    Nacked,
    #[error("reading TLS file {path}: {source}")]
    TlsFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BusError {
    pub(crate) fn amqp(what: impl Into<String>) -> impl FnOnce(lapin::Error) -> BusError {
        let what = what.into();
        move |source| BusError::Amqp { what, source }
    }
}

/// Counts the AMQP handshakes of a connection. lapin's automatic recovery is invisible to the
/// consumer; every recovery is a new handshake, and authentication is the one hook lapin calls on
/// each, so this SASL PLAIN provider counts them (the first is the initial connect).
#[derive(Clone)]
struct CountingPlainAuth {
    username: String,
    password: crate::config::Secret,
    handshakes: Arc<AtomicU64>,
}

impl lapin::auth::AuthProvider for CountingPlainAuth {
    fn mechanism(&self) -> ShortString {
        "PLAIN".into()
    }

    fn auth_starter(&self) -> Result<LongString, String> {
        self.handshakes.fetch_add(1, Ordering::SeqCst);
        Ok(format!("\0{}\0{}", self.username, self.password.expose()).into())
    }
}

/// Open a connection with lapin's automatic recovery on, named so operators (and fault tests) can
/// find it in `rabbitmqctl list_connections`. `handshakes` counts the initial connect and every
/// recovery.
pub async fn connect(
    settings: &AmqpSettings,
    name: &str,
    handshakes: Arc<AtomicU64>,
) -> Result<Connection, BusError> {
    let uri = settings.uri()?;
    let target = settings.display_target();
    let parsed: lapin::uri::AMQPUri = uri.parse().map_err(|message: String| BusError::BadUrl {
        target: target.clone(),
        // amq-protocol's message names the part that failed, never the credentials.
        message,
    })?;
    let auth = CountingPlainAuth {
        username: parsed.authority.userinfo.username.clone(),
        password: crate::config::Secret::new(parsed.authority.userinfo.password.clone()),
        handshakes,
    };
    let props = ConnectionProperties::default()
        .enable_auto_recover()
        .with_auth_provider(auth)
        .with_connection_name(name.into());
    let tls = tls_config(settings)?;
    let runtime = lapin::runtime::default_runtime().map_err(|source| BusError::Connect {
        target: target.clone(),
        source,
    })?;
    Connection::connect_with_config(&uri, props, tls, runtime)
        .await
        .map_err(|source| BusError::Connect { target, source })
}

/// TLS settings: the CA to trust (default: the system roots) and an optional client identity. Server
/// certificates are always verified, unlike the reference consumer.
fn tls_config(settings: &AmqpSettings) -> Result<OwnedTLSConfig, BusError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| BusError::TlsFile {
            path: p.to_path_buf(),
            source,
        })
    };
    let mut tls = OwnedTLSConfig::default();
    if let Some(ca) = &settings.ca_cert {
        tls.cert_chain = Some(String::from_utf8_lossy(&read(ca)?).into_owned());
    }
    if let (Some(cert), Some(key)) = (&settings.client_cert, &settings.client_key) {
        tls.identity = Some(OwnedIdentity::PKCS8 {
            pem: read(cert)?,
            key: read(key)?,
        });
    }
    Ok(tls)
}

/// Declare our durable queue, bind it, and set the prefetch window (`prefetch` deliveries) on
/// `channel` for the consumer created next.
///
/// Bindings are made on a separate short-lived channel: a missing exchange closes the channel it was
/// named on, and we want a clear error rather than a dead consume channel. One channel serves them
/// all, since the first failure ends the session anyway: a channel of its own per binding (opened
/// and closed for each) made the ten default bindings take about 130 ms of every (re)connection.
pub async fn declare_topology(
    conn: &Connection,
    channel: &Channel,
    settings: &AmqpSettings,
    prefetch: u16,
) -> Result<(), BusError> {
    channel
        .queue_declare(
            settings.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(BusError::amqp(format!(
            "declaring queue {}",
            settings.queue
        )))?;
    let mut binds: Vec<(&str, &str, &'static str)> = settings
        .routing_keys
        .iter()
        .map(|k| {
            (
                settings.events_exchange.as_str(),
                k.as_str(),
                "events_exchange",
            )
        })
        .collect();
    if !settings.raw_exchange.is_empty() {
        binds.push((settings.raw_exchange.as_str(), "", "raw_exchange"));
    }
    let setup = conn
        .create_channel()
        .await
        .map_err(BusError::amqp("opening a channel"))?;
    for (exchange, key, setting) in binds {
        let r = setup
            .queue_bind(
                settings.queue.as_str().into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        match r {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {
                return Err(BusError::MissingExchange {
                    exchange: exchange.to_string(),
                    target: settings.display_target(),
                    key: setting,
                });
            }
            Err(e) => {
                return Err(BusError::Amqp {
                    what: format!("binding {} to {exchange} with `{key}`", settings.queue),
                    source: e,
                });
            }
        }
    }
    let _ = setup.close(200, "bound".into()).await;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(BusError::amqp("setting prefetch"))?;
    Ok(())
}

fn is_not_found(e: &lapin::Error) -> bool {
    let text = e.to_string();
    text.contains("NOT_FOUND") || text.contains("404")
}

/// AMQP headers → JSON values (what decode and the quarantine table see).
pub fn headers_to_json(table: Option<&FieldTable>) -> Headers {
    let mut out = Headers::new();
    if let Some(t) = table {
        for (k, v) in t.inner() {
            out.insert(k.as_str().to_string(), amqp_to_json(v));
        }
    }
    out
}

fn amqp_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => (*i).into(),
        AMQPValue::ShortShortUInt(i) => (*i).into(),
        AMQPValue::ShortInt(i) => (*i).into(),
        AMQPValue::ShortUInt(i) => (*i).into(),
        AMQPValue::LongInt(i) => (*i).into(),
        AMQPValue::LongUInt(i) => (*i).into(),
        AMQPValue::LongLongInt(i) => (*i).into(),
        AMQPValue::Timestamp(i) => (*i).into(),
        AMQPValue::Float(f) => serde_json::Number::from_f64(f64::from(*f))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AMQPValue::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AMQPValue::DecimalValue(d) => Value::String(format!("{d:?}")),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(headers_to_json(Some(t)).into_iter().collect()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::Void => Value::Null,
    }
}

/// JSON header values → an AMQP table (the publisher; integers as signed 64-bit like the server's
/// Python/Java clients send them).
pub fn headers_to_amqp(headers: &Headers) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in headers {
        t.insert(ShortString::from(k.as_str()), json_to_amqp(v));
    }
    t
}

fn json_to_amqp(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        Value::Array(a) => {
            AMQPValue::FieldArray(a.iter().map(json_to_amqp).collect::<Vec<_>>().into())
        }
        Value::Object(o) => {
            let h: Headers = o.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            AMQPValue::FieldTable(headers_to_amqp(&h))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut h = Headers::new();
        h.insert("sensorId".into(), 7.into());
        h.insert("sensorHostName".into(), "WIN-1".into());
        h.insert("nested".into(), serde_json::json!({"a": [1, "b"]}));
        let back = headers_to_json(Some(&headers_to_amqp(&h)));
        assert_eq!(back, h);
    }
}
