//! The `causeway` command.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway::replay::{replay, ReplayOptions, Summary};
use causeway::run::{run, RunOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "causeway",
    version,
    about = "Streaming trace correlation and traceability SLIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the jobs over input files and write sli.jsonl, service_graph.jsonl,
    /// slo.jsonl, alerts.jsonl and dlq.jsonl.
    Replay {
        /// Directory of input files named otlp_spans*, otlp_logs*, deploys*, audit* (.jsonl, .json, .pb).
        #[arg(long)]
        input: PathBuf,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Config file (TOML); see deploy/causeway.example.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Worker threads.
        #[arg(short = 'w', long, default_value_t = 1)]
        workers: usize,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Consume causeway_alerts and deliver to Alertmanager, PagerDuty and a webhook
    /// ([dispatch] in the config), committing each record after delivery.
    Dispatch {
        /// Config file (TOML) with a [dispatch] section.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Exit once the topic is read to its end and quiet for time.idle_timeout.
        #[arg(long)]
        drain: bool,
    },
    /// Write the incident scenario (a bad deploy behind a gateway, then a rollback)
    /// as replay inputs in OUT/input and its SLO config in OUT/causeway.toml.
    Scenario {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// First request, RFC 3339 (default: 2 hours ago, rounded down to the minute).
        #[arg(long)]
        start: Option<String>,
    },
    /// Write Prometheus recording and alerting rules (Sloth naming) for the SLOs of a config.
    Rules {
        /// Config file (TOML) with [[slo]] sections.
        #[arg(long)]
        config: PathBuf,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write an SLO report (report.html, report.md, report.json) for a period, from
    /// a replay output directory or from the output topics.
    Report(ReportArgs),
    /// Run the jobs on Kafka until SIGTERM/SIGINT: read the input topics, write
    /// causeway_sli, causeway_service_graph, causeway_slo, causeway_alerts and
    /// causeway_dlq, serve /metrics.
    #[command(disable_help_flag = true)]
    Run {
        /// Config file (TOML); see deploy/causeway.example.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Worker threads per process.
        #[arg(short = 'w', long, default_value_t = 1)]
        workers: usize,
        /// Number of processes in the timely cluster.
        #[arg(short = 'n', long, default_value_t = 1)]
        processes: usize,
        /// Index of this process, 0..n.
        #[arg(short = 'p', long, default_value_t = 0)]
        process: usize,
        /// Hostfile: one host:port per line, one line per process (default localhost:2101+p).
        #[arg(short = 'h', long)]
        hostfile: Option<PathBuf>,
        /// Exit once every input partition is read to its end and idle (after emitting every window).
        #[arg(long)]
        drain: bool,
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["input", "from_kafka"])))]
#[command(group(clap::ArgGroup::new("span").args(["period", "calendar"])))]
struct ReportArgs {
    /// Config file (TOML) with the [[slo]] sections (and [kafka] for --from-kafka).
    #[arg(long)]
    config: PathBuf,
    /// A `causeway replay` output directory (sli.jsonl, slo.jsonl, alerts.jsonl, ...).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Read causeway_sli, causeway_slo, causeway_alerts, causeway_evidence and
    /// causeway_service_graph (names from [kafka.topics]) up to their current end.
    #[arg(long)]
    from_kafka: bool,
    /// Rolling period ending at --end (default 28d).
    #[arg(long)]
    period: Option<String>,
    /// Calendar period holding --end instead: month or week (UTC).
    #[arg(long)]
    calendar: Option<String>,
    /// End of the report, RFC 3339 (default: the end of the newest SLI window).
    #[arg(long)]
    end: Option<String>,
    /// Only this service (repeatable).
    #[arg(long = "service")]
    services: Vec<String>,
    /// Only this SLO (repeatable).
    #[arg(long = "slo")]
    slos: Vec<String>,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
}

fn print_summary(s: &Summary) {
    let st = &s.stats;
    eprintln!("causeway replay: {} input files", s.files);
    eprintln!("  messages read    {}", st.messages);
    eprintln!(
        "  records read     {} = accepted {} + rejected {}",
        st.records,
        st.accepted_total(),
        st.rejected_total()
    );
    let accepted: Vec<String> = st
        .accepted
        .iter()
        .map(|(t, n)| format!("{} {n}", t.default_name()))
        .collect();
    eprintln!(
        "  accepted         {}",
        if accepted.is_empty() {
            "none".into()
        } else {
            accepted.join(", ")
        }
    );
    let mut by_reason: std::collections::BTreeMap<&str, u64> = Default::default();
    for ((_, r), n) in &st.rejected {
        *by_reason.entry(r.as_str()).or_default() += n;
    }
    let rejected: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    eprintln!(
        "  rejected         {}",
        if rejected.is_empty() {
            "none".into()
        } else {
            rejected.join(", ")
        }
    );
    eprintln!(
        "  late             {}",
        by_reason.get("late").copied().unwrap_or(0)
    );
    eprintln!(
        "  windows emitted  {} ({} SLI records, {} service-graph edges)",
        s.windows, s.sli_records, s.edge_records
    );
    eprintln!(
        "  alerts           {} records (alerts.jsonl; burn rates in slo.jsonl)",
        s.alert_records
    );
}

fn scenario(out: &std::path::Path, start: Option<&str>) -> Result<String, String> {
    use causeway_schemas::time::{now_ns, parse_rfc3339};
    let start = match start {
        Some(s) => {
            parse_rfc3339(s).ok_or_else(|| {
                format!("--start {s:?} is not RFC 3339, e.g. 2026-11-20T10:00:00Z")
            })? / 1_000_000_000
        }
        None => (now_ns() / 1_000_000_000 - 7200) / 60 * 60,
    };
    let s = causeway::scenario::Scenario::standard(start);
    let input = out.join("input");
    let spans = s
        .write(&input)
        .map_err(|e| format!("cannot write {}: {e}", input.display()))?;
    let config = out.join("causeway.toml");
    std::fs::write(&config, s.config_toml())
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    Ok(format!(
        "causeway scenario: {spans} spans, bad deploy at {}, rollback at {}\n  try: causeway replay --input {} --config {} --out {}",
        causeway_schemas::time::format_rfc3339(s.bad_deploy_at),
        causeway_schemas::time::format_rfc3339(s.rollback_at),
        input.display(),
        config.display(),
        out.join("out").display()
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dispatch { config, drain } => {
            match causeway::dispatch::dispatch(&causeway::dispatch::DispatchOptions {
                config,
                drain,
            }) {
                Ok(s) => {
                    eprintln!(
                        "causeway dispatch: stopped; {} records delivered ({} suppressed, not paged), {} rejected by a channel, {} retries, {} malformed",
                        s.delivered, s.suppressed, s.rejected, s.retries, s.malformed
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("causeway dispatch: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Scenario { out, start } => match scenario(&out, start.as_deref()) {
            Ok(msg) => {
                eprintln!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("causeway scenario: {e}");
                ExitCode::from(2)
            }
        },
        Command::Report(a) => {
            let opts = causeway::report::ReportOptions {
                config: a.config,
                input: a.input,
                from_kafka: a.from_kafka,
                period: a.period,
                calendar: a.calendar,
                end: a.end,
                services: a.services,
                slos: a.slos,
                out: a.out,
            };
            match causeway::report::report(&opts) {
                Ok(s) => {
                    let p = &s.report.period;
                    eprintln!(
                        "causeway report: {} {} from {} to {}, {} SLO targets, {} services",
                        p.method,
                        p.length,
                        p.start,
                        p.as_of,
                        s.report.slos.len(),
                        s.report.services.len()
                    );
                    for f in &s.files {
                        eprintln!("  wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("causeway report: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Rules { config, out } => {
            let config = match causeway::config::Config::load(Some(&config)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("causeway rules: {e}");
                    return ExitCode::from(2);
                }
            };
            let yaml = causeway::rules::rules_yaml(&config);
            let written = match out {
                Some(path) => std::fs::write(&path, yaml)
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => {
                    print!("{yaml}");
                    Ok(())
                }
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("causeway rules: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            config,
            workers,
            processes,
            process,
            hostfile,
            drain,
            help: _,
        } => {
            let opts = RunOptions {
                config,
                threads: workers,
                processes,
                process,
                hostfile,
                drain,
            };
            match run(&opts) {
                Ok(s) => {
                    let rejected: Vec<String> = s
                        .stats
                        .rejected
                        .iter()
                        .map(|((t, r), n)| format!("{} {} {n}", t.default_name(), r.as_str()))
                        .collect();
                    eprintln!(
                        "causeway run: stopped; {} partitions, {} messages, {} records ({} accepted, {} rejected{}{})",
                        s.partitions,
                        s.stats.messages,
                        s.stats.records,
                        s.stats.accepted_total(),
                        s.stats.rejected_total(),
                        if rejected.is_empty() { "" } else { ": " },
                        rejected.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("causeway run: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Replay {
            input,
            out,
            config,
            workers,
            quiet,
        } => {
            let opts = ReplayOptions {
                input,
                out,
                config,
                workers,
                progress: !quiet,
            };
            match replay(&opts) {
                Ok(summary) => {
                    print_summary(&summary);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("causeway replay: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
