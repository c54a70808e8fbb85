//! `csc hash {contract|policy} FILE`.

use crate::exit;
use std::path::PathBuf;

use super::CliResult;
use crate::protocol::load;

/// What to hash.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HashKind {
    Contract,
    Policy,
}

/// Arguments of `csc hash`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Document kind.
    pub kind: HashKind,
    /// The file to hash (validated first).
    pub file: PathBuf,
}

/// Run `csc hash`.
pub fn run(args: Args) -> CliResult {
    let digest = match args.kind {
        HashKind::Contract => load::load_contract(&args.file)?.contract.sha256(),
        HashKind::Policy => load::load_policy(&args.file)?.sha256(),
    };
    outln!("{digest}");
    Ok(exit::SUCCESS)
}
