//! Fuzz target `otlp_traces_json`: see `causeway_fuzz::otlp_traces_json` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::otlp_traces_json(data));
