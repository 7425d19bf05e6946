//! Reference tests: the dataflow against the naive batch implementation, on
//! seeded random workloads with out-of-order, late, duplicate, orphan and
//! malformed input, for 1 and 4 workers.

use std::path::PathBuf;

use causeway::commands::replay::{replay, ReplayOptions};
use causeway::config::Config;
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_schemas::records::{ServiceGraphRecord, SliRecord};
use causeway_tests::reference::{compute, read_accepted, read_jsonl};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-ref-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn check(name: &str, cfg: WorkloadConfig, format: Format, config_toml: &str) {
    let dir = scratch(name);
    let input = dir.join("in");
    let w = generate(&cfg);
    w.write(&input, format, cfg.partitions).unwrap();
    let config_path = dir.join("causeway.toml");
    std::fs::write(&config_path, config_toml).unwrap();
    let settings = Config::from_toml(config_toml, std::iter::empty())
        .unwrap()
        .settings()
        .unwrap();

    let accepted = read_accepted(&input, &settings);
    let (want_sli, want_graph) = compute(&accepted, &settings);
    assert!(
        want_sli.len() > 50,
        "the workload should produce many SLI records, got {}",
        want_sli.len()
    );
    assert!(!want_graph.is_empty());

    let mut outputs = Vec::new();
    for workers in [1, 4] {
        let out = dir.join(format!("out{workers}"));
        let summary = replay(&ReplayOptions {
            input: input.clone(),
            out: out.clone(),
            config: Some(config_path.clone()),
            workers,
            progress: false,
        })
        .unwrap();
        assert_eq!(
            summary.stats.records,
            summary.stats.accepted_total() + summary.stats.rejected_total()
        );
        let got_sli: Vec<SliRecord> = read_jsonl(&out.join("sli.jsonl"));
        let got_graph: Vec<ServiceGraphRecord> = read_jsonl(&out.join("service_graph.jsonl"));
        for (i, (g, e)) in got_sli.iter().zip(&want_sli).enumerate() {
            assert_eq!(
                g, e,
                "{name}: SLI record {i} differs with {workers} workers"
            );
        }
        assert_eq!(
            got_sli.len(),
            want_sli.len(),
            "{name}: SLI record count, {workers} workers"
        );
        assert_eq!(
            got_graph, want_graph,
            "{name}: service graph, {workers} workers"
        );
        outputs.push(std::fs::read(out.join("sli.jsonl")).unwrap());
    }
    assert_eq!(
        outputs[0], outputs[1],
        "{name}: sli.jsonl must be byte-identical for 1 and 4 workers"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn default_parameters_json() {
    check(
        "json",
        WorkloadConfig {
            seed: 11,
            traces: 1500,
            ..Default::default()
        },
        Format::Json,
        "",
    );
}

#[test]
fn default_parameters_proto_noisy() {
    let cfg = WorkloadConfig {
        seed: 23,
        traces: 1500,
        context_loss: 0.1,
        error_traces: 0.2,
        untraced_logs: 0.3,
        pii: 0.05,
        duplicates: 0.1,
        late: 0.05,
        malformed: 0.05,
        partitions: 3,
        ..Default::default()
    };
    check("proto", cfg, Format::Proto, "");
}

#[test]
fn short_windows_and_horizon_exercise_eviction() {
    // A 10 s window, 5 s grace and a 20 s horizon over 20 minutes of traffic: most
    // state is evicted long before the end, and joins across the horizon fail.
    let cfg = WorkloadConfig {
        seed: 5,
        traces: 1200,
        duration_s: 1200,
        late: 0.03,
        ..Default::default()
    };
    let toml = "[time]\nwindow = \"10s\"\ncorrelation_grace = \"5s\"\ntrace_horizon = \"20s\"\nallowed_lateness = \"10s\"\n";
    check("evict", cfg, Format::Proto, toml);
}
