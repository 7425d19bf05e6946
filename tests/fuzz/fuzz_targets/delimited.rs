//! Fuzz target `delimited`: see `causeway_fuzz::delimited` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::delimited(data));
