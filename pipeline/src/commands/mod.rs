//! One module per `causeway` command: its command-line arguments and what it
//! does. The library functions behind them (`replay`, `run`, the dispatcher,
//! the rules) are what the tests and benches call.

use std::process::ExitCode;

pub mod demo;
pub mod dispatch;
pub mod replay;
pub mod report;
pub mod rules;
pub mod run;
pub mod scenario;

/// Prints `causeway <command>: <error>` and returns the usage-error exit code.
fn fail(command: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("causeway {command}: {e}");
    ExitCode::from(2)
}
