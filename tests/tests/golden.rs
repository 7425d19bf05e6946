//! Golden scenarios: `tests/golden/<case>/input/` replayed, compared with
//! `tests/golden/<case>/expected/`. Set `CAUSEWAY_BLESS=1` to rewrite the expected
//! files after reviewing the change.

use std::path::{Path, PathBuf};

use causeway::commands::replay::{replay, ReplayOptions, Summary};
use causeway::sources::Topic;
use causeway_schemas::records::DlqRecord;
use causeway_schemas::Skip;
use causeway_tests::reference::read_jsonl;

const OUTPUTS: [&str; 3] = ["sli.jsonl", "service_graph.jsonl", "dlq.jsonl"];

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(case)
}

fn run_case(case: &str) -> (Summary, PathBuf) {
    let dir = case_dir(case);
    let mut first: Option<(Summary, PathBuf)> = None;
    for workers in [1, 2] {
        let out = std::env::temp_dir().join(format!(
            "causeway-golden-{case}-{workers}-{}",
            std::process::id()
        ));
        let summary = replay(&ReplayOptions {
            input: dir.join("input"),
            out: out.clone(),
            config: None,
            workers,
            progress: false,
        })
        .unwrap();
        let expected = dir.join("expected");
        if std::env::var_os("CAUSEWAY_BLESS").is_some() && workers == 1 {
            std::fs::create_dir_all(&expected).unwrap();
            for f in OUTPUTS {
                std::fs::copy(out.join(f), expected.join(f)).unwrap();
            }
        }
        for f in OUTPUTS {
            let got = std::fs::read_to_string(out.join(f)).unwrap();
            let want = std::fs::read_to_string(expected.join(f)).unwrap();
            assert_eq!(
                got, want,
                "{case}: {f} differs from the golden file with {workers} workers"
            );
        }
        if first.is_none() {
            first = Some((summary, out));
        }
    }
    first.unwrap()
}

#[test]
fn public_fixtures() {
    let (s, _) = run_case("fixtures");
    // One span and one log record from opentelemetry-proto's examples, and the
    // four service deployed/upgraded/rolledback/removed CDEvents.
    assert_eq!(s.stats.accepted_total(), 1 + 1 + 4);
    // Valid input Causeway does not use is skipped, not dead-lettered: the 37
    // Kubernetes audit events are all `get` or `list`; 12 CDEvents are of other
    // types (the golden dlq.jsonl is empty).
    assert_eq!(s.stats.rejected_total(), 0);
    assert_eq!(
        s.stats.skipped.get(&(Topic::Audit, Skip::ReadOnly)),
        Some(&37)
    );
    assert_eq!(
        s.stats
            .skipped
            .get(&(Topic::Deploys, Skip::UnusedEventType)),
        Some(&12)
    );
    assert_eq!(s.stats.skipped_total(), 37 + 12);
    assert_eq!(
        s.stats.records,
        s.stats.accepted_total() + s.stats.rejected_total() + s.stats.skipped_total()
    );
}

#[test]
fn malformed_input_is_dead_lettered_not_fatal() {
    let (s, out) = run_case("malformed");
    assert_eq!(
        s.stats.records,
        s.stats.accepted_total() + s.stats.rejected_total() + s.stats.skipped_total()
    );
    let dlq: Vec<DlqRecord> = read_jsonl(&out.join("dlq.jsonl"));
    assert_eq!(dlq.len() as u64, s.stats.rejected_total());
    let reasons: Vec<&str> = dlq.iter().map(|d| d.reason.as_str()).collect();
    for reason in [
        "malformed_json",
        "malformed_protobuf",
        "invalid_trace_id",
        "missing_span_id",
        "missing_service",
        "missing_timestamp",
        "unsupported_event_type",
        "unsupported_spec_version",
        "missing_field",
    ] {
        assert!(
            reasons.contains(&reason),
            "no DLQ entry with reason {reason}: {reasons:?}"
        );
    }
    // The 48-hex trace id rejects its span only; the span after it in the same
    // message is still counted (checkout's ERROR server span).
    let bad_id = dlq
        .iter()
        .find(|d| d.reason == "invalid_trace_id" && d.source == "otlp_spans.jsonl")
        .unwrap();
    assert_eq!((bad_id.offset, bad_id.record_index), (3, Some(0)));
    assert_eq!(s.stats.accepted.values().sum::<u64>(), 6);
    // Both protobuf failures of the .pb file: a bad message and a truncated frame.
    assert_eq!(
        dlq.iter()
            .filter(|d| d.source == "otlp_spans_wire.pb")
            .count(),
        2
    );
}

#[test]
fn shipped_sample() {
    let (s, _) = run_case("sample");
    assert_eq!(
        s.stats.records,
        s.stats.accepted_total() + s.stats.rejected_total()
    );
    assert!(s.windows >= 5, "the sample spans several windows");
    // The golden file is not just what the code printed once: it equals the naive
    // reference implementation of SPEC §3 on the same input.
    let settings = causeway::config::Config::default().settings().unwrap();
    let accepted =
        causeway_tests::reference::read_accepted(&case_dir("sample").join("input"), &settings);
    let (want, _) = causeway_tests::reference::compute(&accepted, &settings);
    let got: Vec<causeway_schemas::records::SliRecord> =
        read_jsonl(&case_dir("sample").join("expected/sli.jsonl"));
    assert_eq!(got, want);
}
