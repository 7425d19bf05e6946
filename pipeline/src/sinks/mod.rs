//! Sinks: where final outputs go.

pub mod file;
