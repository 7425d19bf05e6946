//! `causeway run` against a real, independent Kafka-protocol broker (tansu):
//! equal to `replay` on the same data, across `kill -9` and restart, and as a
//! two-process timely cluster.
//!
//! tansu must be installed (`bash .ci/run` does it); the tests fail, not skip,
//! when it is missing.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway::kafka::CheckpointRecord;
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_schemas::records::{DlqRecord, ServiceGraphRecord, SliRecord};
use causeway_tests::kafka::{
    assert_same, create_topic, create_topics, dead_records, header, hostfile, produce_inputs,
    produced_messages, read_topic, replay_dead_records, run_config, spawn_run, Tansu,
};
use causeway_tests::process::wait_exit;
use causeway_tests::reference::read_jsonl;

/// Short windows so that a few minutes of event time give many windows.
const TIME: &str = "[time]\nwindow = \"10s\"\ncorrelation_grace = \"10s\"\ntrace_horizon = \"30s\"\nallowed_lateness = \"10s\"\nidle_timeout = \"3s\"\n";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-kafka-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A seeded protobuf workload in 100-span batches over `partitions` partitions.
fn workload(dir: &Path, seed: u64, traces: usize, partitions: usize) -> PathBuf {
    let input = dir.join("in");
    let cfg = WorkloadConfig {
        seed,
        traces,
        duration_s: 300,
        error_traces: 0.1,
        context_loss: 0.05,
        untraced_logs: 0.2,
        duplicates: 0.05,
        late: 0.02,
        malformed: 0.02,
        batch_spans: 100,
        partitions,
        ..Default::default()
    };
    generate(&cfg)
        .write(&input, Format::Proto, partitions)
        .unwrap();
    input
}

/// What `replay` writes for `input` with the test's time settings: SLI
/// records, edges and dead letters.
fn expected(dir: &Path, input: &Path) -> (Vec<SliRecord>, Vec<ServiceGraphRecord>, Vec<DlqRecord>) {
    let config = dir.join("replay.toml");
    std::fs::write(&config, TIME).unwrap();
    let out = dir.join("replay");
    replay(&ReplayOptions {
        input: input.to_path_buf(),
        out: out.clone(),
        config: Some(config),
        workers: 1,
        progress: false,
    })
    .unwrap();
    (
        read_jsonl(&out.join("sli.jsonl")),
        read_jsonl(&out.join("service_graph.jsonl")),
        read_jsonl(&out.join("dlq.jsonl")),
    )
}

/// The tests of this file share two cores: one at a time, so that no partition
/// looks idle only because its worker was starved.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup(name: &str, seed: u64, traces: usize) -> (Tansu, PathBuf, PathBuf) {
    let dir = scratch(name);
    let input = workload(&dir, seed, traces, 3);
    let tansu = Tansu::start();
    create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
    produce_inputs(&tansu.brokers, &input);
    (tansu, dir, input)
}

fn sli_out(brokers: &str) -> Vec<SliRecord> {
    let mut got: Vec<SliRecord> = read_topic(brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    got.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    got
}

fn edges_out(brokers: &str) -> Vec<ServiceGraphRecord> {
    let mut got: Vec<ServiceGraphRecord> = read_topic(brokers, "causeway_service_graph")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    got.sort_by(|a, b| {
        (a.window_start, &a.client, &a.server).cmp(&(b.window_start, &b.client, &b.server))
    });
    got
}

fn wait_ok(mut child: Child, limit: Duration) {
    let status = wait_exit(&mut child, limit);
    assert!(status.success(), "causeway run exited with {status}");
}

#[test]
fn run_through_tansu_equals_replay_with_two_workers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tansu, dir, input) = setup("equal", 41, 3000);
    let (want, want_edges, want_dlq) = expected(&dir, &input);
    assert!(want.len() > 100, "workload too small: {}", want.len());
    let config = run_config(&dir, &input, &tansu.brokers, "equal", TIME);
    wait_ok(
        spawn_run(&config, &["-w", "2", "--drain"]),
        Duration::from_secs(120),
    );
    assert_same("causeway_sli", &sli_out(&tansu.brokers), &want);
    assert_same(
        "causeway_service_graph",
        &edges_out(&tansu.brokers),
        &want_edges,
    );

    // The dead letters stand for exactly the records replay dead-letters, and
    // a message's bytes go out once per reason, not once per record.
    let letters = read_topic(&tansu.brokers, "causeway_dlq");
    let got = dead_records(&letters);
    let want = replay_dead_records(&input, &want_dlq);
    assert!(
        want.iter().filter(|d| d.3.is_some()).count() > 100,
        "too few record rejections to test: {}",
        want.len()
    );
    assert_eq!(got, want, "dead letters: the records they stand for");
    let mut messages: Vec<_> = want.iter().map(|d| (&d.0, d.1, d.2, &d.4)).collect();
    messages.sort();
    messages.dedup();
    assert_eq!(
        letters.len(),
        messages.len(),
        "one dead letter per message and reason"
    );
    let sent = produced_messages(&input);
    for r in &letters {
        let topic = header(r, "causeway.source.topic").unwrap();
        let p: i32 = header(r, "causeway.source.partition")
            .unwrap()
            .parse()
            .unwrap();
        let offset: usize = header(r, "causeway.source.offset")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            r.value == sent[&(topic, p)][offset],
            "dead letter {}: not the message's bytes",
            r.key
        );
    }
}

/// Kills `causeway run` with SIGKILL once some but not all windows are out,
/// restarts it, and returns what `causeway_sli` holds in the end (unsorted
/// duplicates included) and how many records were out at the kill.
fn kill_and_restart(name: &str, guarantee: &str) -> (Vec<SliRecord>, Vec<SliRecord>, usize) {
    let (tansu, dir, input) = setup(name, 43, 3000);
    let (want, _, _) = expected(&dir, &input);
    let extra = format!("{TIME}\n[processing]\nguarantee = \"{guarantee}\"\n");
    let config = run_config(&dir, &input, &tansu.brokers, name, &extra);
    let mut first = spawn_run(&config, &["-w", "2"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Kill once output is out and a checkpoint past the first windows is taken,
    // so the restart really resumes mid-stream.
    let at_kill = loop {
        let n = read_topic(&tansu.brokers, "causeway_sli").len();
        let checkpointed = read_topic(&tansu.brokers, "causeway_checkpoints")
            .iter()
            .filter_map(|r| serde_json::from_slice::<CheckpointRecord>(&r.value).ok())
            .any(|c| c.checkpoint.emitted > 0 && c.offset > 0);
        if n > 0 && checkpointed {
            break n;
        }
        assert!(Instant::now() < deadline, "no output within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    first.kill().unwrap(); // SIGKILL
    let _ = first.wait();
    assert!(
        at_kill < want.len(),
        "the kill should land mid-stream: {at_kill} of {} records were out",
        want.len()
    );
    wait_ok(
        spawn_run(&config, &["-w", "2", "--drain"]),
        Duration::from_secs(120),
    );
    let all: Vec<SliRecord> = read_topic(&tansu.brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    (all, want, at_kill)
}

#[test]
fn kill_9_and_restart_exactly_once_equals_uninterrupted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut all, want, _) = kill_and_restart("kill-eo", "exactly_once");
    all.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    // No window missing, none twice.
    assert_same("causeway_sli after kill -9", &all, &want);
}

#[test]
fn kill_9_and_restart_at_least_once_repeats_only_identical_records() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut all, want, _) = kill_and_restart("kill-alo", "at_least_once");
    all.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let before = all.len();
    all.dedup_by(|a, b| {
        if a.sort_key() == b.sort_key() {
            assert_eq!(a, b, "a repeated key must carry the same record");
            true
        } else {
            false
        }
    });
    assert!(before >= all.len());
    assert_same("causeway_sli after kill -9, keys deduplicated", &all, &want);
}

#[test]
fn two_process_cluster_equals_replay() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tansu, dir, input) = setup("cluster", 47, 2000);
    let (want, want_edges, _) = expected(&dir, &input);
    let config = run_config(&dir, &input, &tansu.brokers, "cluster", TIME);
    let hostfile = hostfile(&dir, 2);
    let h = hostfile.to_str().unwrap();
    let p0 = spawn_run(&config, &["-n", "2", "-p", "0", "-h", h, "--drain"]);
    let p1 = spawn_run(&config, &["-n", "2", "-p", "1", "-h", h, "--drain"]);
    wait_ok(p0, Duration::from_secs(120));
    wait_ok(p1, Duration::from_secs(120));
    assert_same(
        "causeway_sli (2 processes)",
        &sli_out(&tansu.brokers),
        &want,
    );
    assert_same(
        "causeway_service_graph (2 processes)",
        &edges_out(&tansu.brokers),
        &want_edges,
    );
}
