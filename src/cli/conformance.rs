//! `csc conformance DIR [--json]`.

use crate::exit;
use std::path::PathBuf;

use super::{CliResult, Error};
use crate::conformance;

/// Arguments of `csc conformance`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Suite directory (contracts/, policies/, decisions/, receipts/).
    pub dir: PathBuf,
    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `csc conformance`.
pub fn run(args: Args) -> CliResult {
    let report = conformance::run_suite(&args.dir).map_err(Error::Failed)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for r in report.results.iter().filter(|r| !r.passed) {
            let line = format!("FAIL {}: {}", r.id, r.detail);
            outln!("{}", crate::text::escape_control(&line));
        }
        outln!("{} passed, {} failed", report.passed, report.failed);
    }
    if report.passed + report.failed == 0 {
        eprintln!("csc: error: no fixtures found in {}", args.dir.display());
    }
    Ok(if report.ok() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}
