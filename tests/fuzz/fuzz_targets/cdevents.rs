//! Fuzz target `cdevents`: see `causeway_fuzz::cdevents` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::cdevents(data));
