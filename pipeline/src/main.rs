//! The `causeway` command: parses the command line and hands over to
//! [`causeway::commands`].

use std::process::ExitCode;

use causeway::commands::{demo, dispatch, replay, report, rules, run, scenario};
use clap::{Parser, Subcommand};

/// mimalloc: see ARCHITECTURE.md, "The allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the main job on an embedded Kafka broker: a seeded story with a bad
    /// deploy, its page and the SLO report, shown live.
    Demo(demo::Args),
    /// Run the jobs over input files and write sli.jsonl, service_graph.jsonl,
    /// slo.jsonl, alerts.jsonl and dlq.jsonl.
    Replay(replay::Args),
    /// Consume causeway_alerts and deliver to Alertmanager, PagerDuty and a webhook
    /// ([dispatch] in the config), committing each record after delivery.
    Dispatch(dispatch::Args),
    /// Write the incident scenario (a bad deploy behind a gateway, then a rollback)
    /// as replay inputs in OUT/input and its SLO config in OUT/causeway.toml.
    Scenario(scenario::Args),
    /// Write Prometheus recording and alerting rules (Sloth naming) for the SLOs of a config.
    Rules(rules::Args),
    /// Write an SLO report (report.html, report.md, report.json) for a period, from
    /// a replay output directory or from the output topics.
    Report(report::Args),
    /// Run the jobs on Kafka until SIGTERM/SIGINT: read the input topics, write
    /// causeway_sli, causeway_service_graph, causeway_slo, causeway_alerts and
    /// causeway_dlq, serve /metrics.
    #[command(disable_help_flag = true)]
    Run(run::Args),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo(a) => demo::main(a),
        Command::Replay(a) => replay::main(a),
        Command::Dispatch(a) => dispatch::main(a),
        Command::Scenario(a) => scenario::main(a),
        Command::Rules(a) => rules::main(a),
        Command::Report(a) => report::main(a),
        Command::Run(a) => run::main(a),
    }
}
