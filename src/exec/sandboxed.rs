//! Hardened-mode launch: the executor's [`Launcher`] seam backed by the
//! native kernel sandbox ([`crate::sandbox`]). The whole command (one exec
//! or every pipeline segment) runs in one sandbox whose helper process is
//! the single supervised child; its exit code is the pipeline status.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use super::{LaunchError, LaunchSpec, Launcher, Signal, Status, Supervised};
use crate::sandbox::{self, SandboxChild, SandboxConfig, SandboxExit, SandboxSpec};

/// Launches every command inside a fresh sandbox built from `config`.
#[derive(Debug, Clone)]
pub struct SandboxLauncher {
    /// Host-level sandbox configuration (operator-controlled).
    pub config: SandboxConfig,
    /// csc's own files for this run (keys, state, evidence paths): never
    /// visible inside the sandbox.
    pub hidden_paths: Vec<PathBuf>,
    /// Egress proxy reports, one slot per launch in launch order (filled
    /// when the sandbox has exited; `None` for commands without an
    /// allowlisted network or that did not start).
    pub egress: EgressReports,
}

/// Shared, launch-ordered egress reports of a [`SandboxLauncher`].
pub type EgressReports =
    std::sync::Arc<std::sync::Mutex<Vec<Option<crate::egress::proxy::ProxyReport>>>>;

fn utf8(value: &std::ffi::OsStr, what: &str) -> Result<String, LaunchError> {
    value
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| LaunchError {
            code: crate::exit::COMMAND_FAILED,
            message: format!("{what} is not valid UTF-8; hardened mode refuses it"),
        })
}

/// Translate the executor's launch spec into a sandbox spec.
pub fn sandbox_spec(
    spec: &LaunchSpec,
    hidden_paths: &[PathBuf],
) -> Result<SandboxSpec, LaunchError> {
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
        read_paths: spec.read_paths.clone(),
        write_paths: spec.write_paths.clone(),
        network: spec.network,
        hidden_paths: hidden_paths.to_vec(),
    })
}

impl Launcher for SandboxLauncher {
    fn launch(
        &self,
        spec: &LaunchSpec,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Box<dyn Supervised>, LaunchError> {
        let slot = {
            let mut v = self.egress.lock().unwrap_or_else(|p| p.into_inner());
            v.push(None);
            v.len() - 1
        };
        let sandbox_spec = sandbox_spec(spec, &self.hidden_paths)?;
        // `spawn` is called on the executor's long-lived thread, so the
        // helper's parent-death signal stays armed for the whole run.
        let child = sandbox::spawn(&self.config, &sandbox_spec, stdout, stderr).map_err(|e| {
            LaunchError {
                code: crate::exit::COMMAND_FAILED,
                message: format!("hardened sandbox refused to start: {e}"),
            }
        })?;
        Ok(Box::new(Sandboxed {
            child,
            config: self.config.clone(),
            egress: (self.egress.clone(), slot),
        }))
    }
}

/// A running sandbox, supervised as a whole.
struct Sandboxed {
    child: SandboxChild,
    config: SandboxConfig,
    egress: (EgressReports, usize),
}

impl Sandboxed {
    /// Once the sandbox has exited: stop its egress proxy, keep the report.
    fn collect_egress(&mut self) {
        if let Some(report) = self.child.egress_finish() {
            let (sink, slot) = &self.egress;
            let mut v = sink.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = v.get_mut(*slot) {
                *s = Some(report);
            }
        }
    }

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
        if exit.is_some() {
            self.collect_egress();
        }
        Ok(exit.map(|e| self.status(e)))
    }

    fn signal(&mut self, sig: Signal) -> io::Result<()> {
        match sig {
            // SIGTERM to every process in the sandbox (through the helper
            // and init); the executor escalates to Kill after its grace.
            Signal::Term => self.child.terminate(),
            // Tear the whole pid namespace down and wait until it is gone.
            Signal::Kill => {
                self.child.kill();
                self.collect_egress();
            }
        }
        Ok(())
    }

    fn wait(&mut self) -> io::Result<Status> {
        let exit = self.child.wait().map_err(io_err)?;
        self.collect_egress();
        Ok(self.status(exit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Segment;
    use crate::protocol::contract::NetworkMode;

    #[test]
    fn spec_uses_resolved_programs_and_scopes() {
        let spec = LaunchSpec {
            segments: vec![Segment {
                program: "/usr/bin/grep".into(),
                argv: vec!["grep".into(), "-r".into(), "x".into()],
            }],
            cwd: "/work".into(),
            env: vec![("PATH".into(), "/usr/bin".into())],
            read_paths: vec!["/work/src".into()],
            write_paths: vec!["/work/out".into()],
            network: NetworkMode::Deny,
        };
        let s = sandbox_spec(&spec, &[]).unwrap();
        assert_eq!(s.segments, vec![vec!["/usr/bin/grep", "-r", "x"]]);
        assert_eq!(s.read_paths, vec![PathBuf::from("/work/src")]);
        assert_eq!(s.write_paths, vec![PathBuf::from("/work/out")]);
        assert_eq!(s.env, vec![("PATH".to_owned(), "/usr/bin".to_owned())]);
    }
}
