//! Fuzz target `otlp_logs_json`: see `causeway_fuzz::otlp_logs_json` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::otlp_logs_json(data));
