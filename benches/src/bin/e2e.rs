//! End-to-end throughput, latency and state size of `causeway replay` on a
//! seeded workload.
//!
//! `cargo run --release -p causeway-benches --bin e2e -- [traces=150000] [proto|json] [config.toml] [--state]`
//!
//! The default config is `benches/slo.toml`: SLOs on every service, so every
//! SLI, the evidence jobs and the SLO evaluator run.
//!
//! Generates the workload once (4 partitions per topic) and prints:
//! - the ceilings on one core: a bare read of the input files (framing only) and
//!   decoding every message (no dataflow);
//! - `replay` with 1 and 2 workers, each in a fresh child process so its peak RSS
//!   and CPU time are its own: spans/s (wall), CPU seconds, finalization latency
//!   p50/p99 (every worker's watermark passing a window's final time → its
//!   records written) and peak RSS, and the 2-worker scaling ratio;
//! - with `--state`: state bytes per span held, as the slope of peak RSS over
//!   the number of spans held at two trace horizons (300 s and 1200 s; 1 worker).
//!
//! The replay runs in this process, so it allocates with the allocator the
//! `causeway` binary ships with (mimalloc; ARCHITECTURE.md, "The allocator").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use causeway::commands::replay::{replay, ReplayOptions};
use causeway::sources::file::{list_inputs, open};
use causeway::sources::Topic;
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_schemas::{otlp, DecodeOptions, Origin};

/// The `causeway` binary's allocator, so the figures are the shipped binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn proc_status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of this process (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn child(dir: &Path, workers: usize, config: Option<PathBuf>) {
    let out = dir.join(format!("out-{workers}"));
    let s = replay(&ReplayOptions {
        input: dir.join("in"),
        out,
        config,
        workers,
        progress: false,
    })
    .expect("replay failed");
    let mut lat = s.finalize_latency_us.clone();
    lat.sort_unstable();
    let q = |f: f64| {
        lat.get(((lat.len() as f64 - 1.0) * f).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let spans = s
        .stats
        .accepted
        .iter()
        .find(|(t, _)| t.default_name() == "otlp_spans")
        .map_or(0, |(_, n)| *n);
    println!(
        "{workers} {spans} {:.3} {:.3} {:.3} {} {:.2}",
        s.elapsed.as_secs_f64(),
        q(0.5),
        q(0.99),
        proc_status_kib("VmHWM:"),
        cpu_seconds()
    );
}

/// One child run's figures.
struct Run {
    spans: f64,
    secs: f64,
    p50: String,
    p99: String,
    rss_mib: f64,
    cpu: f64,
}

fn run_child(exe: &str, dir: &Path, workers: usize, config: Option<&Path>) -> Run {
    let out = Command::new(exe)
        .args(["--child", &dir.display().to_string(), &workers.to_string()])
        .args(config)
        .output()
        .expect("spawn child");
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 7 {
        eprintln!("child failed: {}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    Run {
        spans: f[1].parse().unwrap_or(0.0),
        secs: f[2].parse().unwrap_or(1.0),
        p50: f[3].to_string(),
        p99: f[4].to_string(),
        rss_mib: f[5].parse::<f64>().unwrap_or(0.0) / 1024.0,
        cpu: f[6].parse().unwrap_or(0.0),
    }
}

/// Reads every input message (framing only), then decodes every message; one
/// thread. Returns (spans, bytes, read seconds, decode seconds).
fn ceilings(input: &Path) -> (u64, u64, f64, f64) {
    let files = list_inputs(input).expect("inputs");
    let mut messages = Vec::new();
    let started = Instant::now();
    let mut bytes = 0u64;
    for (i, (path, topic, enc)) in files.iter().enumerate() {
        let mut p = open(path, *topic, *enc, i as u32).expect("open");
        while let Some(m) = p.reader.next_message().expect("read") {
            bytes += m.payload.len() as u64;
            messages.push((*topic, *enc, m));
        }
    }
    let read = started.elapsed().as_secs_f64();
    let opts = DecodeOptions::default();
    let started = Instant::now();
    let mut spans = 0u64;
    for (topic, enc, m) in &messages {
        match topic {
            Topic::Spans => {
                spans += otlp::decode_traces(&m.payload, *enc, &opts).records.len() as u64
            }
            Topic::Logs => {
                std::hint::black_box(otlp::decode_logs(
                    &m.payload,
                    *enc,
                    Origin::default(),
                    &opts,
                ));
            }
            _ => {}
        }
    }
    (spans, bytes, read, started.elapsed().as_secs_f64())
}

/// The median (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    (v[(n - 1) / 2] + v[n / 2]) / 2.0
}

/// A config file like `base` (or the defaults) with `trace_horizon` set.
fn with_horizon(dir: &Path, base: Option<&Path>, horizon_s: u64) -> PathBuf {
    let mut text = base
        .map(|b| std::fs::read_to_string(b).expect("read config"))
        .unwrap_or_default();
    let line = format!("trace_horizon = \"{horizon_s}s\"\n");
    if let Some(i) = text.find("[time]\n") {
        text.insert_str(i + 7, &line);
    } else {
        text = format!("[time]\n{line}\n{text}");
    }
    let path = dir.join(format!("horizon-{horizon_s}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(
            Path::new(&args[2]),
            args[3].parse().expect("workers"),
            args.get(4).map(PathBuf::from),
        );
        return;
    }
    let state = args.iter().any(|a| a == "--state");
    let repeat: usize = args.iter().position(|a| a == "--repeat").map_or(1, |i| {
        args.get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .expect("--repeat N (N >= 1)")
    });
    let args: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            *a != "--state" && *a != "--repeat" && (*i == 0 || args[i - 1] != "--repeat")
        })
        .map(|(_, a)| a)
        .collect();
    let traces: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(150_000);
    let format = if args.get(2).map(|s| s.as_str()) == Some("json") {
        Format::Json
    } else {
        Format::Proto
    };
    let config: Option<PathBuf> = Some(args.get(3).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("slo.toml"),
        PathBuf::from,
    ));
    let dir: PathBuf = std::env::temp_dir().join(format!("causeway-e2e-{}", std::process::id()));
    let cfg = WorkloadConfig {
        traces,
        duration_s: (traces as u64 / 100).max(600),
        partitions: 4,
        ..WorkloadConfig::default()
    };
    let w = generate(&cfg);
    w.write(&dir.join("in"), format, cfg.partitions)
        .expect("write workload");
    println!(
        "workload: {} traces, {} spans, {} span messages, {:?}, {} s of event time ({} spans/s of event time)",
        traces,
        w.span_count,
        w.spans.len(),
        format,
        cfg.duration_s,
        w.span_count as u64 / cfg.duration_s
    );
    drop(w);
    let (spans, bytes, read_s, decode_s) = ceilings(&dir.join("in"));
    println!(
        "ceiling (1 thread): bare read {:.0} spans/s ({:.0} MB/s), decode alone {:.0} spans/s ({:.0} MB/s, spans and logs)",
        spans as f64 / read_s,
        bytes as f64 / read_s / 1e6,
        spans as f64 / decode_s,
        bytes as f64 / decode_s / 1e6
    );
    if let Some(c) = &config {
        println!("config: {}", c.display());
    }
    println!(
        "workers      spans    seconds     spans/s   CPU s  fin.p50 ms  fin.p99 ms  peak RSS MiB"
    );
    let exe = args[0].as_str();
    // Interleaved 1- and 2-worker runs; the scaling of each repetition is the
    // ratio of its own pair, taken together on the same machine state.
    let (mut w1, mut w2, mut scaling, mut p99) = (Vec::new(), Vec::new(), Vec::new(), 0f64);
    for _ in 0..repeat {
        let mut pair = [0.0; 2];
        for (i, workers) in [1, 2].into_iter().enumerate() {
            let r = run_child(exe, &dir, workers, config.as_deref());
            pair[i] = r.spans / r.secs;
            p99 = p99.max(r.p99.parse().unwrap_or(f64::INFINITY));
            println!(
                "{:>7} {:>10} {:>10.2} {:>11.0} {:>7.2} {:>11} {:>11} {:>13.0}",
                workers,
                r.spans,
                r.secs,
                r.spans / r.secs,
                r.cpu,
                r.p50,
                r.p99,
                r.rss_mib
            );
        }
        w1.push(pair[0]);
        w2.push(pair[1]);
        scaling.push(pair[1] / pair[0]);
        println!("scaling: 2 workers / 1 worker = {:.2}x", pair[1] / pair[0]);
    }
    let mut summary = format!(
        "summary: read_spans_s={:.0} decode_spans_s={:.0} w1_spans_s={:.0} w2_spans_s={:.0} w2_spans_s_min={:.0} scaling={:.2} scaling_min={:.2} fin_p99_ms_max={p99:.1} runs={repeat}",
        spans as f64 / read_s,
        spans as f64 / decode_s,
        median(&w1),
        median(&w2),
        w2.iter().copied().fold(f64::INFINITY, f64::min),
        median(&scaling),
        scaling.iter().copied().fold(f64::INFINITY, f64::min),
    );
    if state {
        let rate = spans as f64 / cfg.duration_s as f64;
        let p = causeway_jobs::Params::default();
        // A span is held from its start until the window of start + horizon is
        // final: horizon + half a window on average + window + grace.
        let held = |h: u64| rate * (h as f64 + 1.5 * p.window_s as f64 + p.grace_s as f64);
        let mut points = Vec::new();
        for h in [300u64, 1200] {
            let c = with_horizon(&dir, config.as_deref(), h);
            let r = run_child(exe, &dir, 1, Some(&c));
            println!(
                "horizon {h:>5} s: ~{:.0} spans held, peak RSS {:.1} MiB",
                held(h),
                r.rss_mib
            );
            points.push((held(h), r.rss_mib * 1024.0 * 1024.0));
        }
        let slope = (points[1].1 - points[0].1) / (points[1].0 - points[0].0);
        println!("state: {slope:.0} bytes per span held (slope of peak RSS over spans held)");
        summary.push_str(&format!(" state_bytes_per_span={slope:.0}"));
    }
    println!("{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
