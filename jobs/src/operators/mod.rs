//! Small reusable operators, one per file.

pub mod finalize;
