//! Hardened-mode launch: the executor's [`Launcher`] seam backed by the
//! native kernel sandbox ([`crate::sandbox`]). The whole command (one exec
//! or every pipeline segment) runs in one sandbox whose helper process is
//! the single supervised child; its exit code is the pipeline status.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use super::{LaunchError, LaunchSpec, Launcher, Signal, Status, Supervised};
use crate::engine::paths::glob_literal_prefix;
use crate::sandbox::{self, SandboxChild, SandboxConfig, SandboxExit, SandboxSpec};

/// Launches every command inside a fresh sandbox built from `config`.
#[derive(Debug, Clone)]
pub struct SandboxLauncher {
    /// Host-level sandbox configuration (operator-controlled).
    pub config: SandboxConfig,
}

/// Literal prefixes (before any glob) of declared scopes, as host paths.
/// An empty prefix (a scope that is a bare glob) cannot be confined.
fn literal_prefixes(scopes: &[String], field: &str) -> Result<Vec<PathBuf>, LaunchError> {
    scopes
        .iter()
        .map(|s| match glob_literal_prefix(s) {
            "" => Err(LaunchError {
                code: 1,
                message: format!("{field} entry {s:?} has no literal prefix to confine to"),
            }),
            p => Ok(PathBuf::from(p)),
        })
        .collect()
}

fn utf8(value: &std::ffi::OsStr, what: &str) -> Result<String, LaunchError> {
    value
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| LaunchError {
            code: 1,
            message: format!("{what} is not valid UTF-8; hardened mode refuses it"),
        })
}

/// Translate the executor's launch spec into a sandbox spec.
pub fn sandbox_spec(spec: &LaunchSpec) -> Result<SandboxSpec, LaunchError> {
    let mut segments = Vec::with_capacity(spec.segments.len());
    for seg in &spec.segments {
        let program = utf8(seg.program.as_os_str(), "resolved program path")?;
        let mut argv = vec![program];
        argv.extend(seg.argv.iter().skip(1).cloned());
        segments.push(argv);
    }
    let env = spec
        .env
        .iter()
        .map(|(k, v)| Ok((utf8(k, "environment name")?, utf8(v, "environment value")?)))
        .collect::<Result<Vec<_>, LaunchError>>()?;
    Ok(SandboxSpec {
        segments,
        cwd: spec.cwd.clone(),
        env,
        read_paths: literal_prefixes(&spec.read_paths, "read_paths")?,
        write_paths: literal_prefixes(&spec.write_paths, "write_paths")?,
        network: spec.network,
    })
}

impl Launcher for SandboxLauncher {
    fn launch(
        &self,
        spec: &LaunchSpec,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Box<dyn Supervised>, LaunchError> {
        let sandbox_spec = sandbox_spec(spec)?;
        // `spawn` is called on the executor's long-lived thread, so the
        // helper's parent-death signal stays armed for the whole run.
        let child = sandbox::spawn(&self.config, &sandbox_spec, stdout, stderr).map_err(|e| {
            LaunchError {
                code: 1,
                message: format!("hardened sandbox refused to start: {e}"),
            }
        })?;
        Ok(Box::new(Sandboxed {
            child,
            config: self.config.clone(),
        }))
    }
}

/// A running sandbox, supervised as a whole.
struct Sandboxed {
    child: SandboxChild,
    config: SandboxConfig,
}

impl Sandboxed {
    fn status(&self, exit: SandboxExit) -> Status {
        let detail = match exit.setup_error {
            Some(err) if exit.exit_code == sandbox::SETUP_FAILED_EXIT => {
                // Explain with the same words as `csc doctor`.
                let why = match sandbox::preflight(&self.config) {
                    Err(e) => format!("; {e}"),
                    Ok(_) => String::new(),
                };
                Some(format!(
                    "hardened sandbox setup failed, nothing was run: {err}{why}"
                ))
            }
            Some(err) => Some(err),
            None if exit.exit_code != 0 => Some(format!("exit code {}", exit.exit_code)),
            None => None,
        };
        Status {
            code: exit.exit_code,
            detail,
        }
    }
}

fn io_err(e: sandbox::SandboxError) -> io::Error {
    io::Error::other(e.to_string())
}

impl Supervised for Sandboxed {
    fn poll_exit(&mut self) -> io::Result<Option<Status>> {
        let exit = self.child.try_wait().map_err(io_err)?;
        Ok(exit.map(|e| self.status(e)))
    }

    fn signal(&mut self, sig: Signal) -> io::Result<()> {
        match sig {
            // SIGTERM to every process in the sandbox (through the helper
            // and init); the executor escalates to Kill after its grace.
            Signal::Term => self.child.terminate(),
            // Tear the whole pid namespace down and wait until it is gone.
            Signal::Kill => self.child.kill(),
        }
        Ok(())
    }

    fn wait(&mut self) -> io::Result<Status> {
        let exit = self.child.wait().map_err(io_err)?;
        Ok(self.status(exit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Segment;
    use crate::protocol::contract::NetworkMode;

    #[test]
    fn spec_uses_resolved_programs_and_literal_prefixes() {
        let spec = LaunchSpec {
            segments: vec![Segment {
                program: "/usr/bin/grep".into(),
                argv: vec!["grep".into(), "-r".into(), "x".into()],
            }],
            cwd: "/work".into(),
            env: vec![("PATH".into(), "/usr/bin".into())],
            read_paths: vec!["/work/src/**/*.rs".into()],
            write_paths: vec!["/work/out".into()],
            network: NetworkMode::Deny,
        };
        let s = sandbox_spec(&spec).unwrap();
        assert_eq!(s.segments, vec![vec!["/usr/bin/grep", "-r", "x"]]);
        assert_eq!(s.read_paths, vec![PathBuf::from("/work/src")]);
        assert_eq!(s.write_paths, vec![PathBuf::from("/work/out")]);
        assert_eq!(s.env, vec![("PATH".to_owned(), "/usr/bin".to_owned())]);
    }

    #[test]
    fn bare_glob_scopes_are_refused() {
        let spec = LaunchSpec {
            segments: vec![],
            cwd: "/".into(),
            env: vec![],
            read_paths: vec!["*".into()],
            write_paths: vec![],
            network: NetworkMode::Deny,
        };
        assert!(sandbox_spec(&spec).is_err());
    }
}
