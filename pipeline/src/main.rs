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
    /// Run the jobs over input files and write sli.jsonl, service_graph.jsonl and dlq.jsonl.
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
    /// Write Prometheus recording and alerting rules (Sloth naming) for the SLOs of a config.
    Rules {
        /// Config file (TOML) with [[slo]] sections.
        #[arg(long)]
        config: PathBuf,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the jobs on Kafka until SIGTERM/SIGINT: read the input topics, write
    /// causeway_sli, causeway_service_graph and causeway_dlq, serve /metrics.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
                    eprintln!(
                        "causeway run: stopped; {} partitions, {} messages, {} records ({} accepted, {} rejected)",
                        s.partitions,
                        s.stats.messages,
                        s.stats.records,
                        s.stats.accepted_total(),
                        s.stats.rejected_total()
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
