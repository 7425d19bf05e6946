//! Issue 12 part 2a: `causeway run` on tansu killed with SIGKILL at five
//! seeded moments while its outputs are being written, each time restarted,
//! gives the outputs of an uninterrupted run of the same input on a broker of
//! its own: under `exactly_once` the same records (key and value bytes) in the
//! same order on every output topic; under `at_least_once` the same after
//! dropping repeated keys (and a repeated key always carries the same bytes).
//!
//! The input is fed gradually (30 s of event time per second of wall time), as
//! a live source would, so that outputs come out over several seconds and each
//! kill lands after the k-th SLI record appeared, with more still to come. The
//! five k are drawn from a seeded generator (`CAUSEWAY_KILL_SEED`, default 12).
//!
//! A third test kills runs that wrote outputs before any checkpoint recorded
//! them (a restart must read those back too), and restarts 0 to 500 ms after
//! they were spawned.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_tests::kafka::{
    create_topic, create_topics, produce_inputs_between, read_topic, run_config, spawn_run, Record,
    Tansu,
};
use causeway_tests::process::{wait_exit, Reaper};

/// `idle_timeout` is wall-clock time: a partition whose feeder is starved that
/// long (a loaded CI machine) is marked idle in one run and not in the other,
/// which legitimately changes what is late. 10 s is far above any pause of the
/// feeder (it sends a slice every second), so both runs see the same event-time
/// progress; it costs the final `--drain` 10 s.
const TIME: &str = "[time]\nwindow = \"10s\"\ncorrelation_grace = \"10s\"\ntrace_horizon = \"30s\"\nallowed_lateness = \"10s\"\nidle_timeout = \"10s\"\n";

/// SLOs on every service, so `causeway_slo`, `causeway_alerts` and
/// `causeway_evidence` carry records too.
const SLO: &str = "[[slo]]\nname = \"availability\"\nservice = \"*\"\nsli = \"availability\"\nobjective = 0.999\n\n[[slo]]\nname = \"latency\"\nservice = \"*\"\nsli = \"latency\"\nthreshold = \"250ms\"\nobjective = 0.99\n";

/// The topics compared (dead letters are at-least-once by contract, and the
/// checkpoint topic is Causeway's own).
const COMPARED: [&str; 5] = [
    "causeway_sli",
    "causeway_service_graph",
    "causeway_evidence",
    "causeway_slo",
    "causeway_alerts",
];

const SLICE_NS: u64 = 30_000_000_000;

/// The tests of this file share two cores: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn workload(dir: &Path) -> (PathBuf, WorkloadConfig) {
    let input = dir.join("in");
    let cfg = WorkloadConfig {
        seed: 53,
        traces: 3000,
        duration_s: 300,
        error_traces: 0.1,
        context_loss: 0.05,
        untraced_logs: 0.2,
        duplicates: 0.05,
        late: 0.02,
        malformed: 0.02,
        batch_spans: 100,
        partitions: 3,
        ..Default::default()
    };
    generate(&cfg)
        .write(&input, Format::Proto, cfg.partitions)
        .unwrap();
    (input, cfg)
}

/// Feeds `input` in 30 s event-time slices, one a second, on a thread.
fn feed_gradually(
    brokers: String,
    input: PathBuf,
    cfg: &WorkloadConfig,
) -> std::thread::JoinHandle<()> {
    let start = cfg.start_ns;
    let slices = (cfg.duration_s * 1_000_000_000).div_ceil(SLICE_NS) + 1;
    std::thread::spawn(move || {
        for i in 0..=slices {
            let from = if i == 0 { 0 } else { start + i * SLICE_NS };
            let to = if i == slices {
                u64::MAX
            } else {
                start + (i + 1) * SLICE_NS
            };
            produce_inputs_between(&brokers, &input, from, to);
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

/// A broker with the input topics and the output topics, and a config for it.
fn broker(dir: &Path, input: &Path, name: &str, guarantee: &str) -> (Tansu, PathBuf) {
    let tansu = Tansu::start();
    create_topics(input, |t, n| create_topic(&tansu.brokers, t, n));
    let extra = format!("{TIME}\n[processing]\nguarantee = \"{guarantee}\"\n\n{SLO}");
    let config = run_config(dir, input, &tansu.brokers, name, &extra);
    (tansu, config)
}

fn topics(brokers: &str) -> Vec<(&'static str, Vec<Record>)> {
    COMPARED
        .iter()
        .map(|t| (*t, read_topic(brokers, t)))
        .collect()
}

fn distinct_keys(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| r.key.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Starts `causeway run -w 2`, SIGKILLs it once at least `k` distinct SLI
/// records are out, and returns how many were out then.
fn kill_after_sli_records(brokers: &str, config: &Path, k: usize) -> usize {
    let mut run = Reaper(spawn_run(config, &["-w", "2"]));
    let deadline = Instant::now() + Duration::from_secs(120);
    let out = loop {
        let n = distinct_keys(&read_topic(brokers, "causeway_sli"));
        if n >= k {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "{k} SLI records not out in 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    run.0.kill().unwrap(); // SIGKILL
    let _ = run.0.wait();
    out
}

/// A small seeded generator (splitmix64): the kill moments are reproducible.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The compared output topics and their records.
type Topics = Vec<(&'static str, Vec<Record>)>;

/// The output topics of an uninterrupted run of `input`, fed gradually, on a
/// broker of its own.
fn uninterrupted(
    dir: &Path,
    input: &Path,
    cfg: &WorkloadConfig,
    name: &str,
    guarantee: &str,
) -> Topics {
    let (reference, ref_config) = broker(dir, input, &format!("{name}-ref"), guarantee);
    let feeder = feed_gradually(reference.brokers.clone(), input.to_path_buf(), cfg);
    let mut run = Reaper(spawn_run(&ref_config, &["-w", "2"]));
    feeder.join().unwrap();
    run.0.kill().unwrap();
    let _ = run.0.wait();
    // --drain emits the windows the idle inputs still hold back.
    let status = wait_exit(
        &mut spawn_run(&ref_config, &["-w", "2", "--drain"]),
        Duration::from_secs(120),
    );
    assert!(status.success());
    topics(&reference.brokers)
}

/// Runs the uninterrupted reference and the killed run; returns both topic
/// sets and the SLI records out (distinct keys) at each kill.
fn five_kills(name: &str, guarantee: &str) -> (Topics, Topics, Vec<usize>) {
    let dir = scratch(name);
    let (input, cfg) = workload(&dir);
    let want = uninterrupted(&dir, &input, &cfg, name, guarantee);
    let total = distinct_keys(&want[0].1);
    assert!(total > 100, "workload too small: {total} SLI records");

    // Five kill moments: after the k-th distinct SLI record is out, k drawn
    // from 5%..90% of the total.
    let mut seed: u64 = std::env::var("CAUSEWAY_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut moments: Vec<usize> = (0..5)
        .map(|_| total * 5 / 100 + (splitmix(&mut seed) as usize) % (total * 85 / 100))
        .collect();
    moments.sort_unstable();
    eprintln!("{name}: {total} SLI records; kills after {moments:?}");

    let (tansu, config) = broker(&dir, &input, name, guarantee);
    let feeder = feed_gradually(tansu.brokers.clone(), input.clone(), &cfg);
    let mut at_kill = Vec::new();
    for k in &moments {
        at_kill.push(kill_after_sli_records(&tansu.brokers, &config, *k));
    }
    feeder.join().unwrap();
    let status = wait_exit(
        &mut spawn_run(&config, &["-w", "2", "--drain"]),
        Duration::from_secs(120),
    );
    assert!(status.success());
    assert!(
        at_kill.iter().all(|n| *n < total),
        "every kill should land while outputs were still being written: {at_kill:?} of {total}"
    );
    eprintln!("{name}: distinct SLI records out at each kill: {at_kill:?} of {total}");
    let got = topics(&tansu.brokers);
    let _ = std::fs::remove_dir_all(&dir);
    (got, want, at_kill)
}

fn bytes(records: &[Record]) -> Vec<(&str, &[u8])> {
    records
        .iter()
        .map(|r| (r.key.as_str(), r.value.as_slice()))
        .collect()
}

/// Asserts every output topic holds the same records (key and value bytes)
/// in the same order as the uninterrupted run.
fn assert_same_bytes(got: &Topics, want: &Topics, what: &str) {
    for ((topic, g), (_, w)) in got.iter().zip(want) {
        eprintln!("{topic}: {} records, uninterrupted {}", g.len(), w.len());
        let (g, w) = (bytes(g), bytes(w));
        if let Some(i) = (0..g.len().min(w.len())).find(|&i| g[i] != w[i]) {
            panic!(
                "{topic}: record {i} differs {what}\n got: {:?}\nwant: {:?}",
                g[i].0, w[i].0
            );
        }
        assert_eq!(g.len(), w.len(), "{topic}: record count {what}");
    }
}

#[test]
fn five_kills_exactly_once_equal_an_uninterrupted_run_byte_for_byte() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (got, want, at_kill) = five_kills("kill5-eo", "exactly_once");
    assert_same_bytes(&got, &want, &format!("after kills at {at_kill:?}"));
    assert!(!want[0].1.is_empty() && !want[3].1.is_empty());
}

#[test]
fn five_kills_at_least_once_equal_an_uninterrupted_run_after_dedup() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (got, want, at_kill) = five_kills("kill5-alo", "at_least_once");
    for ((topic, g), (_, w)) in got.iter().zip(&want) {
        let set = |v: &[Record]| -> std::collections::BTreeSet<(String, Vec<u8>)> {
            v.iter().map(|r| (r.key.clone(), r.value.clone())).collect()
        };
        let (gs, ws) = (set(g), set(w));
        eprintln!(
            "{topic}: {} records ({} distinct), uninterrupted {}; kills at {at_kill:?}",
            g.len(),
            gs.len(),
            w.len()
        );
        assert_eq!(ws.len(), w.len(), "{topic}: no repeats in the reference");
        // A repeat is a whole record again: no key carries other bytes than
        // the reference gives it.
        assert!(gs == ws, "{topic}: records differ after dropping repeats");
    }
}

/// Restarts of a run that wrote outputs, but no checkpoint recording them:
/// with `commit_interval = 4s`, a run checkpoints at about 4 s and 8 s with
/// nothing emitted yet (no output before `idle_timeout`, 10 s, turns the
/// empty partitions idle) and is SIGKILLed as soon as its first outputs are
/// out, before its checkpoint at 12 s. Each such kill is followed by two
/// processes SIGKILLed a seeded 0 to 500 ms after they were spawned (while
/// they read the checkpoints back, read the outputs back, or write their
/// first checkpoint). Under `exactly_once` the outputs must still equal an
/// uninterrupted run's byte for byte: a restart must read back what was
/// written after a checkpoint whose emitted frontier is still 0.
#[test]
fn restarts_after_outputs_without_a_checkpoint_equal_an_uninterrupted_run_byte_for_byte() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = "nockpt-eo";
    let dir = scratch(name);
    let (input, cfg) = workload(&dir);
    let want = uninterrupted(&dir, &input, &cfg, name, "exactly_once");
    let total = distinct_keys(&want[0].1);

    let mut seed: u64 = std::env::var("CAUSEWAY_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let (tansu, config) = broker(&dir, &input, name, "exactly_once");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("commit_interval = \"200ms\""));
    std::fs::write(
        &config,
        text.replace("commit_interval = \"200ms\"", "commit_interval = \"4s\""),
    )
    .unwrap();
    let feeder = feed_gradually(tansu.brokers.clone(), input.clone(), &cfg);
    let mut kills = Vec::new();
    // The first output, then more than half of them.
    for k in [1, total / 2] {
        let out = kill_after_sli_records(&tansu.brokers, &config, k);
        kills.push(format!("{out} SLI records out"));
        for _ in 0..2 {
            let ms = splitmix(&mut seed) % 500;
            let mut run = Reaper(spawn_run(&config, &["-w", "2"]));
            std::thread::sleep(Duration::from_millis(ms));
            run.0.kill().unwrap();
            let _ = run.0.wait();
            kills.push(format!("{ms} ms after spawning"));
        }
    }
    feeder.join().unwrap();
    let status = wait_exit(
        &mut spawn_run(&config, &["-w", "2", "--drain"]),
        Duration::from_secs(120),
    );
    assert!(status.success());
    eprintln!("{name}: kills {kills:?}");
    let got = topics(&tansu.brokers);
    let _ = std::fs::remove_dir_all(&dir);
    assert_same_bytes(&got, &want, &format!("after kills {kills:?}"));
    assert!(!want[0].1.is_empty() && !want[3].1.is_empty());
}
