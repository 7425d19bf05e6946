//! Causeway's seeded workload generator and benchmark helpers.

pub mod edge_cases;
pub mod kafka;
pub mod soak;
pub mod workload;
