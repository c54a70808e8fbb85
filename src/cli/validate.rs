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
    /// Print one JSON report on stdout: {"kind", "valid", "files": [{"file",
    /// "valid", "error"}]}, each error as `csc check --json` prints one.
    #[arg(long)]
    pub json: bool,
}

/// Run `csc validate`: one line per file, every error listed.
pub fn run(args: Args) -> CliResult {
    let kind: Kind = args.kind.into();
    if args.json {
        return json_report(kind, &args.files);
    }
    let mut bad = 0usize;
    for file in &args.files {
        let origin = crate::text::escape_control(&file.display().to_string()).into_owned();
        let problems = match load::read_for_validation(kind, file) {
            Ok(bytes) => load::validate_bytes(kind, &bytes, PolicyFormat::for_path(file), &origin),
            Err(e) => vec![e.to_string()],
        };
        if problems.is_empty() {
            outln!("{origin}: valid {}", kind.as_str());
        } else {
            bad += 1;
            outln!(
                "{origin}: INVALID {} ({} error(s))",
                kind.as_str(),
                problems.len()
            );
            for p in problems {
                outln!("  {}", crate::text::escape_control(&p));
            }
        }
    }
    Ok(if bad == 0 {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

/// `csc validate --json`: one report for every file.
fn json_report(kind: Kind, files: &[PathBuf]) -> CliResult {
    let mut all_valid = true;
    let mut rows = Vec::with_capacity(files.len());
    for file in files {
        let origin = file.display().to_string();
        let result = load::read_for_validation(kind, file).and_then(|bytes| {
            load::validate_document(kind, &bytes, PolicyFormat::for_path(file), &origin)
        });
        all_valid &= result.is_ok();
        rows.push(serde_json::json!({
            "file": origin,
            "valid": result.is_ok(),
            "error": result.err().map(|e| super::error::load_error_body(&e)),
        }));
    }
    let report = serde_json::json!({"kind": kind.as_str(), "valid": all_valid, "files": rows});
    outln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if all_valid {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}
