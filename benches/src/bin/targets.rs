//! Issue 9's performance targets in one command: runs the benches that measure
//! them, passes their output through, and ends with a table of each target, what
//! it requires and what this run measured.
//!
//!     cargo build --release -p causeway -p causeway-benches
//!     target/release/targets [--repeat N] [--no-8m] [--no-kafka]
//!
//! - `e2e 150000 proto --state --repeat N`: OTLP protobuf `replay` with 1 and 2
//!   workers interleaved (targets 2, 5, 6) and state per span held (target 4);
//! - `duckdb_compare --spans 1000000` and `--spans 8000000`: `replay -w 2`
//!   against DuckDB on the same SLIs with every answer checked equal (target 1),
//!   and the RSS of the 8M-span run once the horizon is full (target 4);
//! - `kafka_e2e 100000` on tansu and on librdkafka's mock cluster (20
//!   partitions, so that each fits the mock's 5 MiB): `causeway run --drain`
//!   against a bare consumer of the same topics (target 3).
//!
//! "Flat" RSS (target 4) means the fitted RSS growth of the 8M-span `-w 2` run,
//! from the moment the horizon is full to the end of its input, is within
//! ±10 % of its RSS at that moment (`duckdb_compare`'s `RssSeries`).
//!
//! Every bench runs with `benches/slo.toml` or its own equivalent config: every
//! SLI, the evidence jobs and the SLO evaluator on (target 7). Timings on a
//! shared 2-core machine swing with whatever else runs; the table shows the
//! 1-minute load average at the start of each bench. Takes about 15 minutes
//! (`--no-8m` saves about 5).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `summary:` lines a bench printed, as key → value (later lines of the
/// same bench get the key prefixed with their `broker=`).
type Summary = BTreeMap<String, String>;

fn bench(name: &str, args: &[&str]) -> (Summary, f64) {
    let exe = std::env::current_exe()
        .expect("own path")
        .with_file_name(name);
    let load = load_average();
    println!("\n=== {name} {} (load {load:.2})", args.join(" "));
    let mut child = Command::new(&exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (build it: cargo build --release -p causeway-benches)",
                exe.display()
            )
        });
    let mut summary = Summary::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        if let Some(rest) = line.strip_prefix("summary: ") {
            let pairs: Vec<(&str, &str)> = rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let prefix = pairs
                .iter()
                .find(|(k, _)| *k == "broker")
                .map_or(String::new(), |(_, b)| format!("{b}."));
            for (k, v) in pairs {
                summary.insert(format!("{prefix}{k}"), v.to_string());
            }
        }
    }
    let status = child.wait().expect("wait for bench");
    if !status.success() {
        println!("{name} FAILED ({status})");
        summary.insert("failed".into(), status.to_string());
    }
    (summary, load)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

struct Row {
    target: &'static str,
    required: &'static str,
    measured: String,
    met: Option<bool>,
}

fn num(s: &Summary, key: &str) -> Option<f64> {
    s.get(key).and_then(|v| v.parse().ok())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| argv.iter().any(|a| a == f);
    let repeat = argv
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| argv.get(i + 1))
        .map_or("3".to_string(), Clone::clone);
    let slo: PathBuf = [env!("CARGO_MANIFEST_DIR"), "slo.toml"].iter().collect();
    let slo = slo.display().to_string();

    let (e2e, e2e_load) = bench(
        "e2e",
        &["150000", "proto", &slo, "--state", "--repeat", &repeat],
    );
    let (duck1, duck1_load) = bench("duckdb_compare", &["--spans", "1000000", "--repeat", "1"]);
    let duck8 = (!flag("--no-8m"))
        .then(|| bench("duckdb_compare", &["--spans", "8000000", "--repeat", "1"]));
    let kafka = (!flag("--no-kafka")).then(|| {
        let (mut tansu, load) = bench(
            "kafka_e2e",
            &[
                "100000",
                "--brokers",
                "tansu",
                "--no-restart",
                "--repeat",
                &repeat,
            ],
        );
        let (mock, _) = bench(
            "kafka_e2e",
            &[
                "100000",
                "--brokers",
                "mock",
                "--partitions",
                "20",
                "--no-restart",
                "--repeat",
                &repeat,
            ],
        );
        tansu.extend(mock);
        (tansu, load)
    });

    let mut rows = Vec::new();
    let ratio_row = |s: &Summary, load: f64, spans: &str| {
        let r = num(s, "ratio");
        Row {
            target: "1. replay -w 2 / DuckDB, same SLIs",
            required: ">= 1.5x, answers equal",
            measured: format!(
                "{spans}: {} ({}; load {load:.1})",
                r.map_or("-".into(), |r| format!("{r:.2}x")),
                s.get("answers").map_or("?", String::as_str)
            ),
            met: r.map(|r| r >= 1.5 && s.get("answers").map(String::as_str) == Some("equal")),
        }
    };
    rows.push(ratio_row(&duck1, duck1_load, "1M"));
    if let Some((d, load)) = &duck8 {
        rows.push(ratio_row(d, *load, "8M"));
    }
    let w2 = num(&e2e, "w2_spans_s");
    rows.push(Row {
        target: "2. OTLP protobuf replay -w 2",
        required: ">= 2M spans/s",
        measured: format!(
            "median {:.2}M, min {:.2}M of {} (ceilings: read {:.1}M, decode {:.1}M; load {e2e_load:.1})",
            w2.unwrap_or(0.0) / 1e6,
            num(&e2e, "w2_spans_s_min").unwrap_or(0.0) / 1e6,
            repeat,
            num(&e2e, "read_spans_s").unwrap_or(0.0) / 1e6,
            num(&e2e, "decode_spans_s").unwrap_or(0.0) / 1e6,
        ),
        met: w2.map(|w| w >= 2e6),
    });
    if let Some((k, load)) = &kafka {
        for broker in ["tansu", "mock"] {
            let get = |key: &str| num(k, &format!("{broker}.{key}"));
            let (r1, r2, run2) = (get("ratio1"), get("ratio2"), get("run2_spans_s"));
            rows.push(Row {
                target: "3. run through a broker / bare consumer",
                required: ">= 0.8; >= 1M spans/s with 2 if the broker serves it",
                measured: format!(
                    "{broker}: {} / {} (1 / 2 workers), run -w 2 {:.0}k spans/s, bare x2 {:.0}k (load {load:.1})",
                    r1.map_or("-".into(), |r| format!("{r:.2}")),
                    r2.map_or("-".into(), |r| format!("{r:.2}")),
                    run2.unwrap_or(0.0) / 1e3,
                    get("bare2_spans_s").unwrap_or(0.0) / 1e3,
                ),
                met: r1.zip(r2).map(|(a, b)| a >= 0.8 && b >= 0.8),
            });
        }
    }
    let state = num(&e2e, "state_bytes_per_span");
    rows.push(Row {
        target: "4. state per span held (RSS slope)",
        required: "<= 300 B",
        measured: state.map_or("-".into(), |b| format!("{b:.0} B")),
        met: state.map(|b| b <= 300.0),
    });
    if let Some((d, _)) = &duck8 {
        let growth = num(d, "rss_growth_after_full_pct");
        rows.push(Row {
            target: "4. RSS over the 8M run once the horizon is full",
            required: "flat",
            measured: growth.map_or("-".into(), |g| {
                format!(
                    "{g:+.1} % ({})",
                    d.get("rss_after_full").map_or("", String::as_str)
                )
            }),
            met: growth.map(|g| g.abs() <= 10.0),
        });
    }
    let scaling = num(&e2e, "scaling");
    rows.push(Row {
        target: "5. 2 workers / 1 worker (protobuf replay)",
        required: ">= 1.7x",
        measured: format!(
            "median {:.2}x, min {:.2}x of {repeat}",
            scaling.unwrap_or(0.0),
            num(&e2e, "scaling_min").unwrap_or(0.0)
        ),
        met: scaling.map(|s| s >= 1.7),
    });
    let p99 = num(&e2e, "fin_p99_ms_max");
    rows.push(Row {
        target: "6. final records after the watermark, p99",
        required: "<= 100 ms",
        measured: p99.map_or("-".into(), |p| format!("worst run {p:.1} ms")),
        met: p99.map(|p| p <= 100.0),
    });
    rows.push(Row {
        target: "7. everything on",
        required: "every SLI, evidence, SLO evaluator",
        measured: "benches/slo.toml: SLOs on every service".into(),
        met: None,
    });

    println!("\n=== issue 9 targets");
    println!("{:<48} {:<34} {:<5} measured", "target", "required", "met");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!(
            "{:<48} {:<34} {:<5} {}",
            r.target, r.required, met, r.measured
        );
    }
}
