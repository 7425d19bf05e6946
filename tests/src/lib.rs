//! Test support: a naive batch reference implementation of SPEC §2–§3, and the
//! Kafka harness of the `run` integration tests (TLS included).

pub mod kafka;
pub mod process;
pub mod reference;
pub mod scenario;
pub mod tls;
