//! End-to-end throughput and latency of `causeway replay` on a seeded workload.
//!
//! `cargo run --release -p causeway-benches --bin e2e -- [traces=150000] [proto|json] [config.toml]`
//!
//! With a config holding `[[slo]]` sections the run includes the SLO evaluator,
//! exemplars and alerts.
//!
//! Generates the workload once (4 partitions per topic), then replays it with 1
//! and 2 workers, each in a fresh child process so peak RSS is its own, and prints
//! spans/s, finalization latency p50/p99 (watermark passing a window's final time
//! → its records written) and peak RSS.

use std::path::{Path, PathBuf};
use std::process::Command;

use causeway::replay::{replay, ReplayOptions};
use causeway_benches::workload::{generate, Format, WorkloadConfig};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
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
        "{workers} {spans} {:.3} {:.3} {:.3} {}",
        s.elapsed.as_secs_f64(),
        q(0.5),
        q(0.99),
        peak_rss_kib()
    );
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
    let traces: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(150_000);
    let format = if args.get(2).map(String::as_str) == Some("json") {
        Format::Json
    } else {
        Format::Proto
    };
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
        "workload: {} traces, {} spans, {} span messages, {:?}, {} s of event time ({} traces/s)",
        traces,
        w.span_count,
        w.spans.len(),
        format,
        cfg.duration_s,
        traces as u64 / cfg.duration_s
    );
    println!("workers      spans    seconds     spans/s  fin.p50 ms  fin.p99 ms  peak RSS MiB");
    let config: Vec<String> = args.get(3).cloned().into_iter().collect();
    if let Some(c) = config.first() {
        println!("config: {c}");
    }
    for workers in [1, 2] {
        let out = Command::new(&args[0])
            .args(["--child", &dir.display().to_string(), &workers.to_string()])
            .args(&config)
            .output()
            .expect("spawn child");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 6 {
            eprintln!("child failed: {}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        let spans: f64 = f[1].parse().unwrap_or(0.0);
        let secs: f64 = f[2].parse().unwrap_or(1.0);
        let rss: f64 = f[5].parse::<f64>().unwrap_or(0.0) / 1024.0;
        println!(
            "{:>7} {:>10} {:>10.2} {:>11.0} {:>11} {:>11} {:>13.0}",
            workers,
            spans,
            secs,
            spans / secs,
            f[3],
            f[4],
            rss
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
