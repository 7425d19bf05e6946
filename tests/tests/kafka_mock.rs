//! `causeway run` against librdkafka's in-process mock cluster: the fast check
//! that Kafka in, Kafka out gives what `replay` gives on the same data.

use std::path::{Path, PathBuf};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway::commands::run::{run, RunOptions};
use causeway_schemas::records::{DlqRecord, SliRecord};
use causeway_tests::kafka::{
    assert_same, create_topics, dead_records, produce_inputs, read_topic, replay_dead_records,
    run_config,
};
use causeway_tests::reference::read_jsonl;
use rdkafka::mocking::MockCluster;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-kmock-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn replay_sli(input: &Path, out: &Path) -> (Vec<SliRecord>, Vec<DlqRecord>) {
    replay(&ReplayOptions {
        input: input.to_path_buf(),
        out: out.to_path_buf(),
        config: None,
        workers: 1,
        progress: false,
    })
    .unwrap();
    (
        read_jsonl(&out.join("sli.jsonl")),
        read_jsonl(&out.join("dlq.jsonl")),
    )
}

/// The golden sample plus bad input at the end of `otlp_spans-1.jsonl`: a line
/// that is not JSON, and the sample's last span message again with one trace
/// id cut to 12 bytes, so some of its spans are rejected and the rest are
/// duplicates.
fn sample_with_bad_records(dir: &Path) -> PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/sample/input");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    for e in std::fs::read_dir(&sample).unwrap() {
        let path = e.unwrap().path();
        std::fs::copy(&path, input.join(path.file_name().unwrap())).unwrap();
    }
    let spans = input.join("otlp_spans-1.jsonl");
    let mut text = std::fs::read_to_string(&spans).unwrap();
    let last = text.lines().last().unwrap().to_string();
    let at = last.find("\"traceId\":\"").unwrap() + "\"traceId\":\"".len();
    let trace = &last[at..at + 32];
    let bad = last.replace(trace, &trace[..24]);
    assert_ne!(bad, last);
    text.push_str("{\"resourceSpans\": [\n");
    text.push_str(&bad);
    text.push('\n');
    std::fs::write(&spans, text).unwrap();
    input
}

#[test]
fn run_on_the_mock_cluster_equals_replay() {
    let dir = scratch("sample");
    let input = sample_with_bad_records(&dir);
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    create_topics(&input, |t, n| cluster.create_topic(t, n, 1).unwrap());
    let produced = produce_inputs(&brokers, &input);
    assert!(produced > 10);

    let config = run_config(&dir, &input, &brokers, "mock-sample", "");
    let summary = run(&RunOptions {
        config: Some(config),
        threads: 2,
        drain: true,
        ..RunOptions::default()
    })
    .unwrap();
    assert_eq!(summary.stats.messages as usize, produced);

    let (want, want_dlq) = replay_sli(&input, &dir.join("replay"));
    let mut got: Vec<SliRecord> = read_topic(&brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    got.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    assert!(!want.is_empty());
    assert_same("causeway_sli", &got, &want);

    let dlq = read_topic(&brokers, "causeway_dlq");
    assert!(
        want_dlq.iter().filter(|d| d.record_index.is_some()).count() > 1,
        "the bad trace id rejects several spans: {want_dlq:?}"
    );
    assert_eq!(dlq.len(), 2, "one for the bad line, one for the bad spans");
    assert_eq!(
        dead_records(&dlq),
        replay_dead_records(&input, &want_dlq),
        "dead letters: the records they stand for"
    );
    for r in &dlq {
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        for h in [
            "causeway.source.topic",
            "causeway.source.partition",
            "causeway.source.offset",
            "causeway.reason",
        ] {
            assert!(
                names.contains(&h),
                "dead letter {} lacks {h}: {names:?}",
                r.key
            );
        }
        assert!(!r.value.is_empty(), "dead letter {} lost its bytes", r.key);
    }
}
