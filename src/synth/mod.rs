//! Synthetic Carbon Black EDR bus traffic for demos, tests and benchmarks.

mod clock;
mod config;
mod rng;

pub use config::{SynthConfig, SynthConfigError, SynthMode};
