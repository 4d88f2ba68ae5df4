//! Synthetic Carbon Black EDR bus traffic for demos, tests and benchmarks.

mod catalog;
mod clock;
mod config;
mod encode;
mod host;
mod process;
mod rng;
mod text;

pub use config::{SynthConfig, SynthConfigError, SynthMode};
pub use encode::EvKind;
pub use process::process_guid;
