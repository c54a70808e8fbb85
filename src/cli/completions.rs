//! `csc completions SHELL` and `csc man`: generated from the clap
//! definitions so they never drift from the real CLI.

use crate::exit;
use clap::CommandFactory;

use super::{Cli, CliResult};

/// Shells we generate completions for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Arguments of `csc completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target shell.
    pub shell: Shell,
}

/// Print a completion script on stdout.
pub fn run(args: Args) -> CliResult {
    let mut cmd = Cli::command();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "csc", &mut std::io::stdout());
    Ok(exit::SUCCESS)
}

/// Print the csc(1) man page (roff) on stdout.
pub fn man() -> CliResult {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name: &'static str = Box::leak(format!("csc-{}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name);
        out.extend_from_slice(b"\n");
        clap_mangen::Man::new(sub).render(&mut out)?;
    }
    use std::io::Write;
    std::io::stdout().write_all(&out)?;
    Ok(exit::SUCCESS)
}
