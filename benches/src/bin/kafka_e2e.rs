//! Throughput of `causeway run` through a Kafka-protocol broker, against the
//! broker's own ceiling, and what a restart costs.
//!
//!     cargo build --release -p causeway -p causeway-benches
//!     target/release/kafka_e2e [TRACES] [--brokers tansu,mock] [--repeat N] [--no-restart] [--hold]
//!                              [--partitions N] [--no-dead-letters] [--causeway LABEL=PATH]...
//!
//! Generates a seeded workload (OTLP protobuf, 100-span batches, 4 partitions
//! per topic unless `--partitions N`)
//! and, for each broker (tansu 0.6, and librdkafka's mock cluster hosted in this
//! process), produces it once and measures, on the same topics:
//!
//! - **bare consumer** ×1 and ×2 threads: a child process (this binary, `bare`)
//!   with rdkafka consumers built from `causeway run`'s own consumer settings
//!   (`kafka::consumer_config`: `fetch.wait.max.ms`, committed reads,
//!   statistics, ...), the input partitions discovered and dealt round-robin to
//!   the threads as `run` deals them to workers, read from the beginning with
//!   `poll`, counting messages and payload bytes: no copy, no decoding. It
//!   stops when every partition has given the messages produced to it, and
//!   closes its consumers as `run` does;
//! - **`causeway run --drain -w 1` and `-w 2`** with a fresh consumer group.
//!   `--drain` exits only after every partition has been idle for
//!   `idle_timeout`; `run` reports how long it waited at the end (after its last
//!   message, dataflow caught up: `causeway run: drained; waited X s ...`), and
//!   that wait is subtracted from the wall time;
//! - the ratio run / bare for 1 and 2 workers/threads.
//!
//! The workload has late and malformed records (about 1 %), dead-lettered
//! with their message's bytes, once per message and reason;
//! `--no-dead-letters` generates none.
//!
//! The mock cluster keeps at most 5 MiB per partition (older messages are
//! deleted, as by retention), so it is measured only when every input file is
//! smaller: 100 000 traces need `--partitions 20`.
//!
//! Every figure is spans/s = the workload's spans / (wall time from spawning the
//! child to its exit, minus the drain wait for `run`), so process start-up,
//! metadata and (for `run`) the checkpoint read-back count against both. Peak
//! RSS is the child's VmHWM. With `--repeat N` the four measurements run N times
//! interleaved and the median is shown (the machine may be shared).
//!
//! Then (tansu only, unless `--no-restart`) it kills a non-draining run with
//! SIGKILL once it has checkpointed an emitted window, and times the restart.
//! `--hold` stops after producing to each broker, prints a config for
//! `causeway run` and waits for Enter (for profiling). `--causeway LABEL=PATH` (repeatable)
//! measures other builds of `causeway` in the same run, interleaved (for
//! before/after comparisons); by default the `causeway` next to this binary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway::config::Config;
use causeway::kafka::{close, consumer_config, discover, CheckpointRecord, Health};
use causeway_benches::kafka::{
    create_topic, create_topics, partition_counts, produce_inputs, read_topic, Tansu,
};
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const IDLE_S: u64 = 2;

/// What librdkafka's mock cluster keeps of a partition (it deletes older
/// messages beyond it).
const MOCK_PARTITION_BYTES: u64 = 5 << 20;

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
            assert!(status.success(), "child failed: {status}");
            return (started.elapsed(), peak);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One measurement: wall time, time to subtract, peak RSS.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: Duration,
    wait: Duration,
    peak_kib: u64,
}

impl Sample {
    fn busy(&self) -> Duration {
        self.wall.saturating_sub(self.wait)
    }
}

/// `causeway run --drain -w workers` with a fresh group; the drain wait is the
/// one the process reports.
fn run_drain(bin: &Path, dir: &Path, brokers: &str, group: &str, workers: usize) -> Sample {
    let cfg = config(dir, brokers, group);
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["run", "--drain", "-w", &workers.to_string(), "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("causeway (build it with cargo build --release -p causeway)");
    let wait = Arc::new(Mutex::new(None));
    let stderr = child.stderr.take().expect("stderr");
    let w = wait.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("causeway run: drained; waited ") {
                let secs: Option<f64> = rest.split_whitespace().next().and_then(|s| s.parse().ok());
                *w.lock().unwrap() = secs.map(Duration::from_secs_f64);
            } else if std::env::var_os("KAFKA_E2E_VERBOSE").is_some() {
                eprintln!("  [run] {line}");
            }
        }
    });
    let (wall, peak_kib) = watch(child, started);
    reader.join().expect("stderr reader");
    let wait = wait.lock().unwrap().unwrap_or_else(|| {
        eprintln!("causeway run did not report its drain wait; subtracting {IDLE_S} s");
        Duration::from_secs(IDLE_S)
    });
    Sample {
        wall,
        wait,
        peak_kib,
    }
}

/// The bare consumer as a child process of this binary.
fn run_bare(dir: &Path, brokers: &str, group: &str, threads: usize, expect: &str) -> Sample {
    let cfg = config(dir, brokers, group);
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("bare")
        .arg(&cfg)
        .arg(threads.to_string())
        .arg(expect)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("bare consumer");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let (wall, peak_kib) = watch(child, started);
    for line in reader.join().expect("stdout reader") {
        if std::env::var_os("KAFKA_E2E_VERBOSE").is_some() {
            eprintln!("  [bare] {line}");
        }
    }
    Sample {
        wall,
        wait: Duration::ZERO,
        peak_kib,
    }
}

/// `bare CONFIG THREADS EXPECT`: consumes every input partition from the
/// beginning until each has given its expected number of messages (EXPECT:
/// `topic/partition=count,...`), with `run`'s consumer settings and partition
/// dealing, and prints what it read.
fn bare_main(args: &[String]) {
    let [cfg, threads, expect] = args else {
        panic!("usage: kafka_e2e bare CONFIG THREADS EXPECT");
    };
    let started = Instant::now();
    let threads: usize = threads.parse().expect("threads");
    let expect: BTreeMap<String, u64> = expect
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("topic/partition=count");
            (k.to_string(), v.parse().expect("count"))
        })
        .collect();
    let config = Config::load(Some(Path::new(cfg))).expect("config");
    let k = config.kafka.clone();
    let all = {
        let c: BaseConsumer<Health> = consumer_config(&k)
            .create_with_context(Health::default())
            .expect("consumer");
        let all = discover(&c, &k).expect("discover");
        close(c);
        all
    };
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let k = k.clone();
            let mine: Vec<(String, i32, u64)> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| i % threads == t)
                .map(|(_, p)| {
                    let want = expect.get(&p.name()).copied().unwrap_or(0);
                    (p.topic_name.clone(), p.partition, want)
                })
                .collect();
            std::thread::spawn(move || consume_bare(&k, &mine))
        })
        .collect();
    let (mut messages, mut bytes) = (0u64, 0u64);
    for h in handles {
        let (m, b) = h.join().expect("consumer thread");
        messages += m;
        bytes += b;
    }
    println!(
        "bare: {threads} thread(s) read {messages} messages, {bytes} payload bytes in {:.3} s",
        started.elapsed().as_secs_f64()
    );
}

/// One bare consumer thread: reads `parts` (topic, partition, messages expected)
/// from the beginning; returns (messages, payload bytes).
fn consume_bare(k: &causeway::config::KafkaConfig, parts: &[(String, i32, u64)]) -> (u64, u64) {
    let consumer: BaseConsumer<Health> = consumer_config(k)
        .create_with_context(Health::default())
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut left: BTreeMap<(String, i32), u64> = BTreeMap::new();
    for (t, p, want) in parts {
        tpl.add_partition_offset(t, *p, Offset::Beginning)
            .expect("tpl");
        if *want > 0 {
            left.insert((t.clone(), *p), *want);
        }
    }
    consumer.assign(&tpl).expect("assign");
    let (mut messages, mut bytes) = (0u64, 0u64);
    // Remaining per partition, indexed without allocating per message.
    let mut remaining: Vec<((String, i32), u64)> = left.into_iter().collect();
    let mut open = remaining.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while open > 0 {
        assert!(
            Instant::now() < deadline,
            "bare consumer timed out; messages still expected: {remaining:?}"
        );
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                eprintln!("bare consumer: {e}");
                continue;
            }
            Some(Ok(m)) => m,
        };
        messages += 1;
        bytes += m.payload_len() as u64;
        let (topic, partition) = (m.topic(), m.partition());
        if let Some((_, n)) = remaining
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
        {
            if *n > 0 {
                *n -= 1;
                if *n == 0 {
                    open -= 1;
                }
            }
        }
    }
    // As `run` closes its consumers (a plain drop waits in 100 ms steps).
    close(consumer);
    (messages, bytes)
}

fn median(mut xs: Vec<Sample>) -> Sample {
    xs.sort_by_key(|s| s.busy());
    xs[xs.len() / 2]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Args {
    traces: usize,
    brokers: Vec<String>,
    repeat: usize,
    restart: bool,
    hold: bool,
    partitions: usize,
    dead_letters: bool,
    /// Builds of `causeway` to measure: (label, path).
    runs: Vec<(String, PathBuf)>,
}

fn parse_args() -> Args {
    let mut a = Args {
        traces: 30_000,
        brokers: vec!["tansu".into(), "mock".into()],
        repeat: 1,
        restart: true,
        hold: false,
        partitions: 4,
        dead_letters: true,
        runs: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--brokers" => {
                a.brokers = it
                    .next()
                    .expect("--brokers tansu,mock")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            "--repeat" => a.repeat = it.next().and_then(|n| n.parse().ok()).expect("--repeat N"),
            "--no-restart" => a.restart = false,
            "--hold" => a.hold = true,
            "--no-dead-letters" => a.dead_letters = false,
            "--partitions" => {
                a.partitions = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--partitions N")
            }
            "--causeway" => {
                let v = it.next().expect("--causeway LABEL=PATH");
                let (label, path) = v.split_once('=').expect("--causeway LABEL=PATH");
                a.runs.push((label.to_string(), PathBuf::from(path)));
            }
            n => a.traces = n.parse().expect("TRACES"),
        }
    }
    if a.runs.is_empty() {
        a.runs.push(("causeway run".into(), causeway()));
    }
    a
}

/// The measurements on one broker whose topics hold the workload.
struct Bench<'a> {
    name: &'a str,
    dir: &'a Path,
    brokers: &'a str,
    expect: &'a str,
    spans: usize,
    bytes: u64,
}

impl Bench<'_> {
    fn measure(&self, runs: &[(String, PathBuf)], repeat: usize) {
        let name = self.name;
        // rows[0]: the bare consumer; rows[1 + i]: runs[i]; per row: 1 and 2 threads.
        let mut rows: Vec<[Vec<Sample>; 2]> = vec![Default::default(); 1 + runs.len()];
        for r in 0..repeat {
            for (i, n) in [1, 2].into_iter().enumerate() {
                let group = format!("{name}-bare{n}-{r}");
                rows[0][i].push(run_bare(self.dir, self.brokers, &group, n, self.expect));
                for (j, (_, bin)) in runs.iter().enumerate() {
                    let group = format!("{name}-run{j}-w{n}-{r}");
                    rows[1 + j][i].push(run_drain(bin, self.dir, self.brokers, &group, n));
                }
            }
        }
        let rate = |s: &Sample| self.spans as f64 / s.busy().as_secs_f64();
        println!(
            "{:<7} {:<26} {:>7} {:>7} {:>7} {:>11} {:>8} {:>9}",
            "broker", "what", "wall s", "wait s", "busy s", "spans/s", "MiB/s", "peak MiB"
        );
        let mut medians: Vec<[Sample; 2]> = Vec::new();
        for (row, samples) in rows.iter().enumerate() {
            let m = [median(samples[0].clone()), median(samples[1].clone())];
            for (i, s) in m.iter().enumerate() {
                let what = match row {
                    0 => format!("bare consumer x{}", i + 1),
                    _ => format!("{} -w {}", runs[row - 1].0, i + 1),
                };
                println!(
                    "{name:<7} {what:<26} {:>7.2} {:>7.2} {:>7.2} {:>11.0} {:>8.1} {:>9.0}",
                    s.wall.as_secs_f64(),
                    s.wait.as_secs_f64(),
                    s.busy().as_secs_f64(),
                    rate(s),
                    self.bytes as f64 / (1 << 20) as f64 / s.busy().as_secs_f64(),
                    mib(s.peak_kib)
                );
            }
            medians.push(m);
        }
        for (j, (label, _)) in runs.iter().enumerate() {
            let ratio = |i: usize| rate(&medians[1 + j][i]) / rate(&medians[0][i]);
            println!(
                "{name:<7} {label} / bare: {:.2} with 1 worker, {:.2} with 2 (medians of {repeat})",
                ratio(0),
                ratio(1)
            );
            if j == 0 {
                // One machine-readable line per broker (read by `targets`).
                println!(
                    "summary: broker={name} bare1_spans_s={:.0} bare2_spans_s={:.0} run1_spans_s={:.0} run2_spans_s={:.0} ratio1={:.2} ratio2={:.2} runs={repeat}",
                    rate(&medians[0][0]),
                    rate(&medians[0][1]),
                    rate(&medians[1][0]),
                    rate(&medians[1][1]),
                    ratio(0),
                    ratio(1)
                );
            }
            if repeat > 1 {
                for (i, n) in [1, 2].into_iter().enumerate() {
                    let each: Vec<String> = rows[0][i]
                        .iter()
                        .zip(&rows[1 + j][i])
                        .map(|(b, r)| {
                            format!("{:.2}", b.busy().as_secs_f64() / r.busy().as_secs_f64())
                        })
                        .collect();
                    println!("{name:<7}   each repeat, {n} worker(s): {}", each.join(" "));
                }
            }
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("bare") {
        return bare_main(&argv[2..]);
    }
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("causeway-kafka-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let input = dir.join("in");
    let mut cfg = WorkloadConfig {
        seed: 7,
        traces: args.traces,
        duration_s: (args.traces as u64 / 100).max(60),
        batch_spans: 100,
        partitions: args.partitions,
        ..Default::default()
    };
    if !args.dead_letters {
        cfg.late = 0.0;
        cfg.malformed = 0.0;
    }
    let w = generate(&cfg);
    w.write(&input, Format::Proto, cfg.partitions)
        .expect("write workload");
    let spans = w.span_count;
    drop(w);
    let counts = partition_counts(&input);
    let expect: String = counts
        .iter()
        .map(|((t, p), n)| format!("{t}/{p}={n}"))
        .collect::<Vec<_>>()
        .join(",");
    let sizes: Vec<u64> = std::fs::read_dir(&input)
        .expect("input dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .collect();
    let input_bytes: u64 = sizes.iter().sum();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    println!(
        "workload: {spans} spans in {} messages, {:.1} MiB of input files; {} core(s), load {}",
        counts.values().sum::<usize>(),
        mib(input_bytes / 1024),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    for broker in &args.brokers {
        match broker.as_str() {
            "tansu" => {
                let tansu = Tansu::start();
                create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
                let t = Instant::now();
                let messages = produce_inputs(&tansu.brokers, &input);
                println!(
                    "produced {messages} messages to tansu in {:.2} s",
                    t.elapsed().as_secs_f64()
                );
                if args.hold {
                    hold(&dir, &tansu.brokers);
                    continue;
                }
                Bench {
                    name: "tansu",
                    dir: &dir,
                    brokers: &tansu.brokers,
                    expect: &expect,
                    spans,
                    bytes: input_bytes,
                }
                .measure(&args.runs, args.repeat);
                if args.restart {
                    for (j, (label, bin)) in args.runs.iter().enumerate() {
                        restart(label, bin, &dir, &tansu.brokers, &format!("bench-restart-{j}"));
                    }
                }
            }
            "mock" if largest >= MOCK_PARTITION_BYTES => println!(
                "mock cluster skipped: a partition holds {:.1} MiB, the mock keeps {} MiB; use more --partitions",
                mib(largest / 1024),
                MOCK_PARTITION_BYTES >> 20
            ),
            "mock" => {
                let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
                let brokers = cluster.bootstrap_servers();
                create_topics(&input, |t, n| {
                    cluster.create_topic(t, n, 1).expect("mock topic")
                });
                let t = Instant::now();
                let messages = produce_inputs(&brokers, &input);
                println!(
                    "produced {messages} messages to the mock cluster (in this process) in {:.2} s",
                    t.elapsed().as_secs_f64()
                );
                if args.hold {
                    hold(&dir, &brokers);
                    continue;
                }
                Bench {
                    name: "mock",
                    dir: &dir,
                    brokers: &brokers,
                    expect: &expect,
                    spans,
                    bytes: input_bytes,
                }
                .measure(&args.runs, args.repeat);
            }
            other => panic!("unknown broker {other:?}: tansu or mock"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--hold`: prints a config for `causeway run` against `brokers` and waits for Enter.
fn hold(dir: &Path, brokers: &str) {
    let cfg = config(dir, brokers, "hold");
    println!("holding: causeway run --drain --config {}", cfg.display());
    println!("press Enter to go on");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Restart cost: SIGKILL after the first checkpoint past the first windows,
/// then time the restart to the end.
fn restart(label: &str, bin: &Path, dir: &Path, brokers: &str, group: &str) {
    let cfg = config(dir, brokers, group);
    let mut first = Command::new(bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .expect("causeway");
    let deadline = Instant::now() + Duration::from_secs(600);
    let checkpointed = || {
        read_topic(brokers, "causeway_checkpoints")
            .iter()
            .filter(|r| r.key.starts_with(&format!("{group}|")))
            .filter_map(|r| serde_json::from_slice::<CheckpointRecord>(&r.value).ok())
            .any(|c| c.checkpoint.emitted > 0)
    };
    while !checkpointed() {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(200));
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    let s = run_drain(bin, dir, brokers, group, 1);
    println!(
        "{label}: restart after kill -9 (1 worker): {:.2} s to drain ({:.2} s without the drain wait), peak RSS {:.0} MiB",
        s.wall.as_secs_f64(),
        s.busy().as_secs_f64(),
        mib(s.peak_kib)
    );
}
