//! `causeway scenario`: writes the incident scenario ([`crate::scenario`]) as
//! `replay` inputs with its SLO config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `causeway scenario`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// First request, RFC 3339 (default: 2 hours ago, rounded down to the minute).
    #[arg(long)]
    start: Option<String>,
}

/// Writes the scenario and says how to replay it.
pub fn main(args: Args) -> ExitCode {
    match write(&args.out, args.start.as_deref()) {
        Ok(msg) => {
            eprintln!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => super::fail("scenario", e),
    }
}

fn write(out: &Path, start: Option<&str>) -> Result<String, String> {
    use causeway_schemas::time::{now_ns, parse_rfc3339};
    let start = match start {
        Some(s) => {
            parse_rfc3339(s).ok_or_else(|| {
                format!("--start {s:?} is not RFC 3339, e.g. 2026-11-20T10:00:00Z")
            })? / 1_000_000_000
        }
        None => (now_ns() / 1_000_000_000 - 7200) / 60 * 60,
    };
    let s = crate::scenario::Scenario::standard(start);
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
