//! Writes a seeded workload for `causeway replay`:
//! `gen DIR [traces] [proto|json] [partitions] [seed] [duration_s]` (the
//! default duration is traces / 50 s, at least 600; `e2e` uses traces / 100).

use causeway_benches::workload::{generate, Format, WorkloadConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: gen DIR [traces=2000] [proto|json] [partitions=2] [seed=7] [duration_s]");
        std::process::exit(2);
    };
    let traces = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let format = if args.get(3).map(String::as_str) == Some("json") {
        Format::Json
    } else {
        Format::Proto
    };
    let partitions = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
    let seed = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(7);
    let cfg = WorkloadConfig {
        traces,
        partitions,
        seed,
        duration_s: args
            .get(6)
            .and_then(|s| s.parse().ok())
            .unwrap_or((traces as u64 / 50).max(600)),
        ..WorkloadConfig::default()
    };
    let w = generate(&cfg);
    if let Err(e) = w.write(std::path::Path::new(dir), format, partitions) {
        eprintln!("gen: cannot write {dir}: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "gen: {} spans in {} messages, {} log messages into {dir}",
        w.span_count,
        w.spans.len(),
        w.logs.len()
    );
}
