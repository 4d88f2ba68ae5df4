//! Capture files (placeholder until the capture module lands).
use crate::model::DeliveryMeta;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
#[derive(Debug, Clone, Default)]
pub struct CaptureOverrides {
    pub routing_key: Option<String>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
}
pub struct CaptureFile {
    pub path: PathBuf,
    pub meta: DeliveryMeta,
    pub body: Vec<u8>,
}
pub fn walk(_paths: &[PathBuf], _o: &CaptureOverrides) -> Result<Vec<CaptureFile>, CaptureError> {
    todo!()
}
