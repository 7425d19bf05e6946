//! Causeway's seeded workload generator and benchmark helpers.

pub mod workload;
