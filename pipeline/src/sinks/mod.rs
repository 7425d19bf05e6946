//! Sinks: where final records go. One folder per connector.

pub mod file;
pub mod kafka;
