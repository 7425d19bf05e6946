//! `causeway dispatch`: consumes `causeway_alerts` and pages through the
//! channels of the `[dispatch]` section ([`crate::alerting`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::alerting::{dispatch, DispatchOptions};

/// `causeway dispatch`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config file (TOML) with a [dispatch] section.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Exit once the topic is read to its end and quiet for time.idle_timeout.
    #[arg(long)]
    drain: bool,
}

/// Delivers alerts until stopped (or drained) and prints what it did.
pub fn main(args: Args) -> ExitCode {
    let opts = DispatchOptions {
        config: args.config,
        drain: args.drain,
        stop: None,
    };
    match dispatch(&opts) {
        Ok(s) => {
            eprintln!(
                "causeway dispatch: stopped; {} records delivered ({} suppressed, not paged), {} rejected by a channel, {} retries, {} malformed",
                s.delivered, s.suppressed, s.rejected, s.retries, s.malformed
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail("dispatch", e),
    }
}
