//! Causeway's runtime: sources, sinks, worker setup and the CLI commands.
//!
//! The dataflow itself lives in `causeway-jobs`; this crate moves bytes in and
//! records out.

pub mod alerting;
pub mod background;
pub mod commands;
pub mod config;
pub mod dataflow;
pub mod demo;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod secret;
pub mod sinks;
pub mod sources;
