//! `csc validate {contract|policy|receipt|approval|decision} FILE...`.

use crate::exit;
use std::path::PathBuf;

use super::CliResult;
use crate::protocol::load::{self, PolicyFormat};
use crate::protocol::schema::Kind;

/// Document kinds `csc validate` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DocKind {
    Contract,
    Policy,
    Receipt,
    Approval,
    Decision,
}

impl From<DocKind> for Kind {
    fn from(k: DocKind) -> Kind {
        match k {
            DocKind::Contract => Kind::Contract,
            DocKind::Policy => Kind::Policy,
            DocKind::Receipt => Kind::Receipt,
            DocKind::Approval => Kind::Approval,
            DocKind::Decision => Kind::Decision,
        }
    }
}

/// Arguments of `csc validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Document kind.
    pub kind: DocKind,
    /// Files to validate.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Run `csc validate`: one line per file, every error listed.
pub fn run(args: Args) -> CliResult {
    let kind: Kind = args.kind.into();
    let mut bad = 0usize;
    for file in &args.files {
        let origin = crate::text::escape_control(&file.display().to_string()).into_owned();
        let problems = match load::read_for_validation(kind, file) {
            Ok(bytes) => load::validate_bytes(kind, &bytes, PolicyFormat::for_path(file), &origin),
            Err(e) => vec![e.to_string()],
        };
        if problems.is_empty() {
            println!("{origin}: valid {}", kind.as_str());
        } else {
            bad += 1;
            println!(
                "{origin}: INVALID {} ({} error(s))",
                kind.as_str(),
                problems.len()
            );
            for p in problems {
                println!("  {}", crate::text::escape_control(&p));
            }
        }
    }
    Ok(if bad == 0 {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}
