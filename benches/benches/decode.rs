//! Decoder micro-benchmarks: one 100-span OTLP traces batch and one 100-record OTLP
//! logs batch, protobuf and JSON. `*_batch` is the compact protobuf decoding
//! ingest uses (`decode_span_batch`, `decode_log_batch`; `*_batch_memo` the
//! same through a resource memo that holds the batch's resources, as ingest's
//! does once a stream's resources repeat); the others build the model's
//! `Span` / `LogRecord`.

use causeway_benches::workload::{generate, logs_json, traces_json, WorkloadConfig};
use causeway_schemas::otlp::{
    decode_log_batch, decode_log_batch_with, decode_logs, decode_span_batch,
    decode_span_batch_with, decode_traces, ResourceMemo,
};
use causeway_schemas::{DecodeOptions, Encoding, Origin};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

fn decode(c: &mut Criterion) {
    let w = generate(&WorkloadConfig {
        traces: 200,
        late: 0.0,
        malformed: 0.0,
        duplicates: 0.0,
        ..Default::default()
    });
    let opts = DecodeOptions {
        now_ns: u64::MAX / 2,
        ..DecodeOptions::default()
    };

    let msg = &w.spans[0].1;
    let spans: usize = msg
        .resource_spans
        .iter()
        .map(|r| r.scope_spans[0].spans.len())
        .sum();
    let proto = msg.encode_to_vec();
    let json = traces_json(msg).into_bytes();
    let mut g = c.benchmark_group("decode_traces");
    g.throughput(Throughput::Elements(spans as u64));
    g.bench_function("otlp_proto_100_spans", |b| {
        b.iter(|| decode_traces(&proto, Encoding::OtlpProto, &opts))
    });
    g.bench_function("otlp_proto_100_spans_batch", |b| {
        b.iter(|| decode_span_batch(&proto, &opts).spans.len())
    });
    let mut memo = ResourceMemo::<()>::new();
    decode_span_batch_with(&proto, &opts, &mut memo);
    g.bench_function("otlp_proto_100_spans_batch_memo", |b| {
        b.iter(|| decode_span_batch_with(&proto, &opts, &mut memo).spans.len())
    });
    g.bench_function("otlp_json_100_spans", |b| {
        b.iter(|| decode_traces(&json, Encoding::OtlpJson, &opts))
    });
    g.finish();

    let msg = &w.logs[0].1;
    let records: usize = msg
        .resource_logs
        .iter()
        .map(|r| r.scope_logs[0].log_records.len())
        .sum();
    let proto = msg.encode_to_vec();
    let json = logs_json(msg).into_bytes();
    let origin = Origin::default();
    let mut g = c.benchmark_group("decode_logs");
    g.throughput(Throughput::Elements(records as u64));
    g.bench_function(format!("otlp_proto_{records}_records"), |b| {
        b.iter(|| decode_logs(&proto, Encoding::OtlpProto, origin, &opts))
    });
    g.bench_function(format!("otlp_proto_{records}_records_batch"), |b| {
        b.iter(|| decode_log_batch(&proto, &opts).logs.len())
    });
    let mut memo = ResourceMemo::<()>::new();
    decode_log_batch_with(&proto, &opts, &mut memo);
    g.bench_function(format!("otlp_proto_{records}_records_batch_memo"), |b| {
        b.iter(|| decode_log_batch_with(&proto, &opts, &mut memo).logs.len())
    });
    g.bench_function(format!("otlp_json_{records}_records"), |b| {
        b.iter(|| decode_logs(&json, Encoding::OtlpJson, origin, &opts))
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
