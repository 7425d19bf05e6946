//! Test support: a naive batch reference implementation of SPEC §2–§3.

pub mod reference;
