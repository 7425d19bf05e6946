//! Causeway's runtime: sources, sinks, worker setup and the CLI commands.
//!
//! The dataflow itself lives in `causeway-jobs`; this crate moves bytes in and
//! records out.

pub mod background;
pub mod config;
pub mod dataflow;
pub mod demo;
pub mod dispatch;
pub mod ingest;
pub mod metrics;
pub mod replay;
pub mod rules;
pub mod run;
pub mod scenario;
pub mod sinks;
pub mod sources;
