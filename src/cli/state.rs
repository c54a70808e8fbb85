//! `csc state migrate` (RFC 0014): versioned schema migrations of the
//! state store, run explicitly.

use std::path::PathBuf;

use super::{CliResult, Error};
use crate::exit;
use crate::state::Location;

/// Arguments of `csc state`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub verb: Verb,
}

/// The state verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Apply pending schema migrations (PostgreSQL; a local store is
    /// created or upgraded in place).
    Migrate {
        /// PostgreSQL state store (`postgres://…`; also CSC_STATE_URL).
        #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
        state_url: Option<String>,
        /// Local state directory [default: $XDG_STATE_HOME/csc or ~/.local/state/csc].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

/// Run `csc state`.
pub fn run(args: Args) -> CliResult {
    match args.verb {
        Verb::Migrate {
            state_url,
            state_dir,
        } => {
            let location = Location::resolve(state_url.as_deref(), state_dir.as_deref())
                .map_err(Error::Failed)?;
            match &location {
                Location::Url(url) => {
                    let (before, after) = crate::state::postgres::migrate(url)?;
                    if before == after {
                        outln!(
                            "state store {}: schema version {after}, up to date",
                            location.shown()
                        );
                    } else {
                        outln!(
                            "state store {}: migrated schema version {before} -> {after}",
                            location.shown()
                        );
                    }
                }
                Location::Dir(dir) => {
                    crate::approval::store::Store::open(dir)?;
                    outln!("state store {}: up to date", location.shown());
                }
            }
            Ok(exit::SUCCESS)
        }
    }
}
