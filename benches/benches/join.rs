//! The correlation dataflow (dedup, parent resolution, trace-id joins, every SLI,
//! finalization) over pre-decoded records, one worker. Decoding and workload
//! generation happen outside the timed loop.

use causeway_benches::workload::{generate, WorkloadConfig};
use causeway_jobs::params::MetricParams;
use causeway_jobs::{build, Inputs, Params};
use causeway_schemas::otlp::{decode_logs, decode_traces};
use causeway_schemas::{DecodeOptions, Encoding, LogRecord, Origin, Span};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use differential_dataflow::input::Input;
use prost::Message;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::Probe;

fn records() -> (Vec<Span>, Vec<LogRecord>) {
    let w = generate(&WorkloadConfig {
        traces: 5_000,
        late: 0.0,
        malformed: 0.0,
        ..Default::default()
    });
    let opts = DecodeOptions {
        now_ns: u64::MAX / 2,
        ..DecodeOptions::default()
    };
    let spans = w
        .spans
        .iter()
        .flat_map(|(_, m)| decode_traces(&m.encode_to_vec(), Encoding::OtlpProto, &opts).records)
        .collect();
    let logs = w
        .logs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, m))| {
            let origin = Origin {
                partition: 0,
                offset: i as u64,
                index: 0,
            };
            decode_logs(&m.encode_to_vec(), Encoding::OtlpProto, origin, &opts).records
        })
        .collect();
    (spans, logs)
}

fn join(c: &mut Criterion) {
    let (mut spans, mut logs) = records();
    spans.sort_by_key(|s| s.event_time());
    logs.sort_by_key(|l| l.time);
    let mut g = c.benchmark_group("correlate");
    g.sample_size(10);
    g.throughput(Throughput::Elements(spans.len() as u64));
    // Without and with the Tempo-compatible metrics (`causeway run` serving
    // /metrics), Tempo's default buckets.
    let with_metrics = Params {
        metrics: Some(MetricParams {
            span_buckets_ns: (1..=14).map(|i| 1_000_000u64 << i).collect(),
            graph_buckets_ns: (0..8).map(|i| 100_000_000u64 << i).collect(),
        }),
        ..Params::default()
    };
    for (name, params) in [
        ("all_slis_5000_traces", Params::default()),
        ("all_slis_and_span_metrics_5000_traces", with_metrics),
    ] {
        bench(&mut g, name, &spans, &logs, params);
    }
    g.finish();
}

fn bench(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    spans: &[Span],
    logs: &[LogRecord],
    params: Params,
) {
    g.bench_function(name, |b| {
        b.iter(|| {
            let (spans, logs, params) = (spans.to_vec(), logs.to_vec(), params.clone());
            timely::execute_directly(move |worker| {
                let probe = Handle::new();
                let (mut s_in, mut l_in) = worker.dataflow::<u64, _, _>(|scope| {
                    let (s_in, s) = scope.new_collection();
                    let (l_in, l) = scope.new_collection();
                    let (_a_in, a) = scope.new_collection();
                    let (_d_in, d) = scope.new_collection();
                    let out = build(Inputs::from_events(s, l, a, d), &params);
                    out.sli.probe_with(&probe);
                    out.service_graph.probe_with(&probe);
                    out.exemplars.probe_with(&probe);
                    out.changes.probe_with(&probe);
                    out.metrics.probe_with(&probe);
                    (s_in, l_in)
                });
                // Spans and logs are inserted only: the jobs evict them.
                for s in spans {
                    s_in.update_at(s.clone(), params.span_lifetime(s.event_time()).0, 1);
                }
                for l in logs {
                    l_in.update_at(l.clone(), params.record_lifetime(l.time).0, 1);
                }
            })
        })
    });
}

criterion_group!(benches, join);
criterion_main!(benches);
