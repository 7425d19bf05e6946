//! Throughput of `causeway run` through a real Kafka-protocol broker (tansu),
//! and what a restart costs.
//!
//!     cargo build --release -p causeway -p causeway-benches
//!     target/release/kafka_e2e [TRACES]
//!
//! Generates a seeded workload (OTLP protobuf, 100-span batches, 4 partitions),
//! produces it to a fresh tansu, then for 1 and 2 workers runs
//! `causeway run --drain` with a fresh consumer group and prints spans/s, the
//! wall time, and the child's peak RSS. `--drain` ends after every partition has
//! been idle for `idle_timeout` (2 s here); that wait is subtracted and shown.
//! Finally it kills a non-draining run with SIGKILL once it has checkpointed an
//! emitted window, and times the restart until every window is out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use causeway::sources::kafka::CheckpointRecord;
use causeway_benches::kafka::{create_topic, create_topics, produce_inputs, read_topic, Tansu};
use causeway_benches::workload::{generate, Format, WorkloadConfig};

const IDLE_S: u64 = 2;

fn causeway() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.with_file_name("causeway")
}

fn config(dir: &Path, brokers: &str, group: &str) -> PathBuf {
    let path = dir.join(format!("{group}.toml"));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{group}\"\n\n[time]\nidle_timeout = \"{IDLE_S}s\"\n\n[metrics]\nbind = \"\"\n"
        ),
    )
    .expect("write config");
    path
}

/// Peak resident set of a running process, KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits for `child`, sampling its peak RSS; returns (elapsed, peak KiB).
fn watch(mut child: Child, started: Instant) -> (Duration, u64) {
    let mut peak = 0;
    loop {
        if let Some(rss) = peak_rss_kib(child.id()) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "causeway run failed: {status}");
            return (started.elapsed(), peak);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let traces: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30_000);
    let dir = std::env::temp_dir().join(format!("causeway-kafka-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let input = dir.join("in");
    let cfg = WorkloadConfig {
        seed: 7,
        traces,
        duration_s: (traces as u64 / 100).max(60),
        batch_spans: 100,
        partitions: 4,
        ..Default::default()
    };
    let w = generate(&cfg);
    w.write(&input, Format::Proto, cfg.partitions)
        .expect("write workload");
    let spans = w.span_count;
    let tansu = Tansu::start();
    create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
    let t = Instant::now();
    let messages = produce_inputs(&tansu.brokers, &input);
    println!(
        "produced {messages} messages ({spans} spans) to tansu in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    for workers in [1, 2] {
        let group = format!("bench-w{workers}");
        let cfg = config(&dir, &tansu.brokers, &group);
        let started = Instant::now();
        let child = Command::new(causeway())
            .args(["run", "--drain", "-w", &workers.to_string(), "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .expect("causeway (build it with cargo build --release -p causeway)");
        let (elapsed, peak) = watch(child, started);
        let busy = elapsed.saturating_sub(Duration::from_secs(IDLE_S));
        println!(
            "{workers} worker(s): {:.2} s wall ({:.2} s without the {IDLE_S} s idle wait), {:.0} spans/s, peak RSS {} MiB",
            elapsed.as_secs_f64(),
            busy.as_secs_f64(),
            spans as f64 / busy.as_secs_f64(),
            peak / 1024
        );
    }

    // Restart cost: SIGKILL after the first checkpoint past the first windows,
    // then time the restart to the end.
    let group = "bench-restart";
    let cfg = config(&dir, &tansu.brokers, group);
    let mut first = Command::new(causeway())
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .expect("causeway");
    let deadline = Instant::now() + Duration::from_secs(600);
    let checkpointed = || {
        read_topic(&tansu.brokers, "causeway_checkpoints")
            .iter()
            .filter(|r| r.key.starts_with("bench-restart|"))
            .filter_map(|r| serde_json::from_slice::<CheckpointRecord>(&r.value).ok())
            .any(|c| c.checkpoint.emitted > 0)
    };
    while !checkpointed() {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(200));
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    let started = Instant::now();
    let child = Command::new(causeway())
        .args(["run", "--drain", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .expect("causeway");
    let (elapsed, peak) = watch(child, started);
    println!(
        "restart after kill -9 (1 worker): {:.2} s to drain ({:.2} s without the idle wait), peak RSS {} MiB",
        elapsed.as_secs_f64(),
        elapsed.saturating_sub(Duration::from_secs(IDLE_S)).as_secs_f64(),
        peak / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
}
