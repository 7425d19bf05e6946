//! Causeway's seeded workload generator and benchmark helpers.

pub mod kafka;
pub mod workload;
