//! Small reusable operators, one per file.

pub mod finalize;
pub mod join_any;
