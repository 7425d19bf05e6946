//! Fuzz target `otlp_traces_proto`: see `causeway_fuzz::otlp_traces_proto` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::otlp_traces_proto(data));
