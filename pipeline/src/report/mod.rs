//! `causeway report`: an SLO report for a period, as `report.html` (charts),
//! `report.md` (tables) and `report.json` (every number behind both).
//!
//! Inputs are the final records of a `replay` output directory or of the output
//! topics of `causeway run` ([`input`]); the period is rolling or calendar
//! ([`period`]); [`model`] computes the numbers (exact sums of SLI records, merged
//! HDR histograms, SPEC §4 budgets); [`tables`], [`markdown`], [`charts`] and
//! [`html`] only present them.

pub mod charts;
pub mod html;
pub mod input;
pub mod markdown;
pub mod model;
pub mod period;
pub mod tables;

use std::path::PathBuf;

use causeway_schemas::time::parse_rfc3339;

use crate::config::{parse_duration, Config, ConfigError};
use model::{Report, Scope};
use period::{Calendar, Period, PeriodSpec};

/// The rolling period when neither `--period` nor `--calendar` is given (SPEC §6).
pub const DEFAULT_PERIOD: &str = "28d";

/// What `causeway report` was asked for.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Config file (SLOs, `[kafka]`).
    pub config: PathBuf,
    /// A `replay` output directory.
    pub input: Option<PathBuf>,
    /// Read the output topics instead.
    pub from_kafka: bool,
    /// Rolling period, e.g. `28d`.
    pub period: Option<String>,
    /// Calendar unit: `month` or `week`.
    pub calendar: Option<String>,
    /// End of the report, RFC 3339 (default: the end of the newest SLI window).
    pub end: Option<String>,
    /// Only these services.
    pub services: Vec<String>,
    /// Only these SLOs.
    pub slos: Vec<String>,
    /// Output directory.
    pub out: PathBuf,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad command-line arguments.
    #[error("{0}")]
    Usage(String),
    /// Input directory or file problem.
    #[error("{0}")]
    Input(String),
    /// A record that cannot be read.
    #[error("{at}: {detail}")]
    Record {
        /// File and line, or topic, partition and offset.
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// Kafka could not be read.
    #[error("{0}")]
    Kafka(String),
    /// `--slo` names no SLO of the config.
    #[error("no SLO named {name:?} in the config; configured SLOs: {known}")]
    UnknownSlo {
        /// The name given.
        name: String,
        /// The names configured.
        known: String,
    },
    /// `--service` names a service without records in the period.
    #[error("service {name:?} has no SLI record in the period; services with records: {known}")]
    UnknownService {
        /// The name given.
        name: String,
        /// Services with records.
        known: String,
    },
    /// Nothing to report on.
    #[error("{0}")]
    EmptyPeriod(String),
    /// A chart could not be drawn.
    #[error("cannot draw a chart: {0}")]
    Chart(String),
    /// Output cannot be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug)]
pub struct ReportSummary {
    /// The report.
    pub report: Report,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The period asked for.
pub fn period_spec(opts: &ReportOptions) -> Result<PeriodSpec, ReportError> {
    match (&opts.period, &opts.calendar) {
        (Some(_), Some(_)) => Err(ReportError::Usage(
            "give either --period (rolling) or --calendar, not both".into(),
        )),
        (None, Some(c)) => Calendar::parse(c).map(PeriodSpec::Calendar).ok_or_else(|| {
            ReportError::Usage(format!("--calendar {c:?}: use \"month\" or \"week\""))
        }),
        (p, None) => {
            let p = p.as_deref().unwrap_or(DEFAULT_PERIOD);
            match parse_duration(p) {
                Some(ns) if ns >= 1_000_000_000 && ns % 1_000_000_000 == 0 => {
                    Ok(PeriodSpec::Rolling(ns / 1_000_000_000, p.to_string()))
                }
                _ => Err(ReportError::Usage(format!(
                    "--period {p:?}: use a whole number of seconds or more with a unit, e.g. 28d, 7d, 12h"
                ))),
            }
        }
    }
}

/// Reads the records, computes the report and writes the three files.
pub fn report(opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    let mut config = Config::load(Some(&opts.config))?;
    let settings = config.settings()?;
    if opts.from_kafka {
        config.kafka.read_secrets(&crate::secret::process_env)?;
    }
    let spec = period_spec(opts)?;
    let end = opts
        .end
        .as_deref()
        .map(|e| {
            parse_rfc3339(e)
                .map(|ns| ns / 1_000_000_000)
                .ok_or_else(|| {
                    ReportError::Usage(format!(
                        "--end {e:?} is not RFC 3339, e.g. 2026-11-20T10:00:00Z"
                    ))
                })
        })
        .transpose()?;
    let (records, source) = match (&opts.input, opts.from_kafka) {
        (Some(dir), false) => (input::from_dir(dir)?, format!("files in {}", dir.display())),
        (None, true) => (
            input::from_kafka(&config.kafka)?,
            format!(
                "Kafka at {}, topics {}, {}, {}, {}, {}",
                config.kafka.brokers,
                config.kafka.topics.sli,
                config.kafka.topics.slo,
                config.kafka.topics.alerts,
                config.kafka.topics.evidence,
                config.kafka.topics.service_graph
            ),
        ),
        _ => {
            return Err(ReportError::Usage(
                "give either --input DIR (a replay output directory) or --from-kafka".into(),
            ))
        }
    };
    let end = match end {
        Some(e) => e,
        None => records
            .sli
            .iter()
            .map(|r| r.window_end)
            .max()
            .ok_or_else(|| ReportError::EmptyPeriod("there are no SLI records at all".into()))?,
    };
    let period = Period::resolve(&spec, end);
    let report = model::compute(
        &records,
        &Scope {
            specs: &settings.slos,
            window_s: settings.params.window_s,
            period: &period,
            services: &opts.services,
            slos: &opts.slos,
        },
    )?;
    let html = html::render(&report, &source)?;
    let md = markdown::render(&report);
    let json = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
    std::fs::create_dir_all(&opts.out).map_err(|source| ReportError::Output {
        path: opts.out.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    for (name, text) in [
        ("report.html", html),
        ("report.md", md),
        ("report.json", json),
    ] {
        let path = opts.out.join(name);
        std::fs::write(&path, text).map_err(|source| ReportError::Output {
            path: path.display().to_string(),
            source,
        })?;
        files.push(path);
    }
    Ok(ReportSummary { report, files })
}
