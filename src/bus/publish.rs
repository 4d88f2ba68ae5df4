//! Playing the CB server's part: declare its exchanges as the server does and publish messages
//! (capture files or synthetic traffic) with publisher confirms.
//!
//! Used by `cbtrail publish` for demos, tests and benchmarks. Every message is confirmed by the broker
//! before it counts as sent; a message no queue was bound to receive is counted as unroutable, because
//! the broker silently drops those otherwise.

use super::{BusError, headers_to_amqp};
use crate::model::DeliveryMeta;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind, PublisherConfirm};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Exchange of JSON notifications and single protobuf events on a CB server (topic).
pub const EVENTS_EXCHANGE: &str = "api.events";
/// Exchange of raw sensor bundles on a CB server (fanout).
pub const RAW_EXCHANGE: &str = "api.rawsensordata";

/// Confirms kept in flight before waiting for the oldest: enough to keep the broker busy.
const CONFIRM_WINDOW: usize = 1024;

/// AMQP delivery modes.
const TRANSIENT: u8 = 1;
const PERSISTENT: u8 = 2;

/// Totals of one publishing run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub messages: u64,
    pub bytes: u64,
    /// Confirmed, but no queue was bound to receive them.
    pub unroutable: u64,
}

/// A confirming publisher on its own connection.
pub struct Publisher {
    conn: Connection,
    channel: Channel,
    pending: VecDeque<PublisherConfirm>,
    report: PublishReport,
    rate: Option<f64>,
    started: Instant,
    delivery_mode: u8,
}

impl Publisher {
    /// Connect to `uri`, declare `api.events` (topic, durable) and `api.rawsensordata` (fanout,
    /// durable) as the CB server does, and enable confirms. `rate` limits messages per second.
    pub async fn connect(uri: &str, name: &str, rate: Option<f64>) -> Result<Publisher, BusError> {
        let props = lapin::ConnectionProperties::default()
            .enable_auto_recover()
            .with_connection_name(name.into());
        let conn = Connection::connect(uri, props)
            .await
            .map_err(|source| BusError::Connect {
                target: crate::config::redact_uri(uri),
                source,
            })?;
        let channel = conn
            .create_channel()
            .await
            .map_err(BusError::amqp("opening a channel"))?;
        for (name, kind) in [
            (EVENTS_EXCHANGE, ExchangeKind::Topic),
            (RAW_EXCHANGE, ExchangeKind::Fanout),
        ] {
            channel
                .exchange_declare(
                    name.into(),
                    kind,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(BusError::amqp(format!("declaring exchange {name}")))?;
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BusError::amqp("enabling publisher confirms"))?;
        Ok(Publisher {
            conn,
            channel,
            pending: VecDeque::new(),
            report: PublishReport::default(),
            rate: rate.filter(|r| *r > 0.0),
            started: Instant::now(),
            delivery_mode: TRANSIENT,
        })
    }

    /// Mark the messages persistent (delivery mode 2), so that a durable queue keeps them across a
    /// broker restart. The CB server does not: its messages are transient (delivery mode 1, as the
    /// captured properties of its zip bundles show), and so are ours unless this is asked for. It
    /// matters beyond restarts: a persistent message costs the broker writes to its message store
    /// and queue index, which compete with the consumer's own database writes for the disk.
    pub fn set_persistent(&mut self, persistent: bool) {
        self.delivery_mode = if persistent { PERSISTENT } else { TRANSIENT };
    }

    /// Publish one message as the server would: its exchange, routing key, content type, headers,
    /// and (unless [`Publisher::set_persistent`]) its transient delivery mode.
    pub async fn publish(&mut self, meta: &DeliveryMeta, body: &[u8]) -> Result<(), BusError> {
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(self.report.messages as f64 / rate);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(self.delivery_mode)
            .with_headers(headers_to_amqp(&meta.headers));
        if let Some(ct) = &meta.content_type {
            props = props.with_content_type(ct.as_str().into());
        }
        loop {
            let r = self
                .channel
                .basic_publish(
                    meta.exchange.as_str().into(),
                    meta.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    props.clone(),
                )
                .await;
            match r {
                Ok(confirm) => {
                    self.pending.push_back(confirm);
                    break;
                }
                Err(e) => self
                    .channel
                    .wait_for_recovery(e)
                    .await
                    .map_err(BusError::amqp("publishing"))?,
            }
        }
        self.report.messages += 1;
        self.report.bytes += body.len() as u64;
        while self.pending.len() >= CONFIRM_WINDOW {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), BusError> {
        let Some(confirm) = self.pending.pop_front() else {
            return Ok(());
        };
        match confirm
            .await
            .map_err(BusError::amqp("awaiting a publisher confirm"))?
        {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_returned)) => {
                self.report.unroutable += 1;
                Ok(())
            }
            Confirmation::Nack(_) => Err(BusError::Nacked),
        }
    }

    /// Wait for every outstanding confirm, close the connection and return the totals.
    pub async fn finish(mut self) -> Result<PublishReport, BusError> {
        while !self.pending.is_empty() {
            self.settle_one().await?;
        }
        let _ = self.conn.close(200, "done".into()).await;
        Ok(self.report)
    }
}
