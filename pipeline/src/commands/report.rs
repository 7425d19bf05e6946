//! `causeway report`: an SLO report for a period ([`crate::report`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::report::{report, ReportOptions};

/// `causeway report`'s arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["input", "from_kafka"])))]
#[command(group(clap::ArgGroup::new("span").args(["period", "calendar"])))]
pub struct Args {
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

/// Writes the report and says where.
pub fn main(a: Args) -> ExitCode {
    let opts = ReportOptions {
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
    match report(&opts) {
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
        Err(e) => super::fail("report", e),
    }
}
