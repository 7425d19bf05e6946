//! Fuzz target `audit`: see `causeway_fuzz::audit` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::audit(data));
