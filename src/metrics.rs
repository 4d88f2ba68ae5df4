//! Prometheus metrics (placeholder until the metrics module lands).
use crate::model::DeliveryMeta;
use crate::store::BatchStats;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics listener on {addr}: {message}")]
    Install { addr: SocketAddr, message: String },
}
pub fn install(_addr: SocketAddr) -> Result<(), MetricsError> {
    Ok(())
}
pub fn delivery(_meta: &DeliveryMeta, _bytes: usize) {}
pub fn batch_committed(_s: &BatchStats, _deliveries: u64, _latency: Duration) {}
pub fn acks_failed(_n: u64) {}
pub fn unacked_sub(_n: u64) {}
pub fn database_size(_p: &Path) {}
pub fn connection_up(_up: bool) {}
pub fn reconnect() {}
