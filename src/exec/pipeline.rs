//! Local pipelines: real OS pipes between segments, every segment in one
//! process group (led by the first), all segments' stderr on the shared
//! capture pipe. The pipeline fails if any segment fails; its status is the
//! first failing segment's (contract order). [`LocalLauncher`] is local
//! mode's [`Launcher`]; single segments are started by [`super::spawn`].

use std::io;
use std::os::fd::OwnedFd;
use std::process::Child;

use super::spawn::{Input, launch_error, spawn_segment};
use super::sys::{self, Ended, Signal};
use super::{LaunchError, LaunchSpec, Launcher, Status, Supervised};

/// Launches commands directly on the host (local mode, unconfined).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalLauncher;

impl Launcher for LocalLauncher {
    fn launch(
        &self,
        spec: &LaunchSpec,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Box<dyn Supervised>, LaunchError> {
        let group = spawn_pipeline(spec, stdout, stderr)?;
        Ok(Box::new(group))
    }
}

/// A running local command: its direct children and their process group.
#[derive(Debug)]
pub struct LocalGroup {
    children: Vec<Child>,
    names: Vec<String>,
    ended: Vec<Option<Ended>>,
    pgid: u32,
    reaped: bool,
}

/// Spawn every segment of `spec`, wired together.
pub fn spawn_pipeline(
    spec: &LaunchSpec,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> Result<LocalGroup, LaunchError> {
    let internal = |e: io::Error| LaunchError {
        code: crate::exit::COMMAND_FAILED,
        message: format!("cannot set up pipes: {e}"),
    };
    let mut group = LocalGroup {
        children: Vec::new(),
        names: Vec::new(),
        ended: Vec::new(),
        pgid: 0,
        reaped: false,
    };
    let last = spec.segments.len().saturating_sub(1);
    let mut stdout = Some(stdout);
    let mut input = Input::Null;
    for (i, seg) in spec.segments.iter().enumerate() {
        let (out, next) = if i == last {
            let fd = stdout
                .take()
                .ok_or_else(|| internal(io::Error::other("no stdout")))?;
            (fd, None)
        } else {
            let (r, w) = sys::pipe().map_err(internal)?;
            (w, Some(r))
        };
        let err = stderr.try_clone().map_err(internal)?;
        let stdin = std::mem::replace(&mut input, Input::Null);
        match spawn_segment(spec, seg, stdin, out, err, group.pgid) {
            Ok(child) => {
                if i == 0 {
                    group.pgid = child.id();
                }
                group.children.push(child);
                group
                    .names
                    .push(seg.argv.first().cloned().unwrap_or_default());
                group.ended.push(None);
            }
            Err(e) => {
                // `group` is dropped here: already started segments are killed and reaped.
                return Err(launch_error(&e, i, seg));
            }
        }
        if let Some(r) = next {
            input = Input::Pipe(r);
        }
    }
    if group.children.is_empty() {
        return Err(LaunchError {
            code: crate::exit::COMMAND_FAILED,
            message: "command has no segments".to_owned(),
        });
    }
    Ok(group)
}

impl LocalGroup {
    fn status(&self) -> Option<Status> {
        let mut first_bad = None;
        for (i, e) in self.ended.iter().enumerate() {
            match e {
                None => return None,
                Some(Ended::Exited(0)) => {}
                Some(bad) if first_bad.is_none() => first_bad = Some((i, *bad)),
                Some(_) => {}
            }
        }
        Some(match first_bad {
            None => Status::ok(),
            Some((i, ended)) => {
                let (code, how) = match ended {
                    Ended::Exited(c) => (c, format!("exited with status {c}")),
                    Ended::Signaled(s) => (
                        crate::exit::signaled(s),
                        format!("was killed by signal {s}"),
                    ),
                };
                let who = if self.children.len() > 1 {
                    format!("pipeline segment {i} ({:?})", self.names[i])
                } else {
                    format!("{:?}", self.names[i])
                };
                Status {
                    code,
                    detail: Some(format!("{who} {how}")),
                }
            }
        })
    }

    fn peek_all(&mut self, block: bool) -> io::Result<()> {
        for (child, ended) in self.children.iter().zip(self.ended.iter_mut()) {
            if ended.is_none() {
                *ended = sys::peek_exit(child.id(), block)?;
            }
        }
        Ok(())
    }

    fn reap(&mut self) -> io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        // Every direct child has ended but is not reaped: the leader's
        // zombie keeps the group id reserved, so this reaches only strays.
        sys::kill_group(self.pgid, Signal::Kill)?;
        for child in &mut self.children {
            child.wait()?;
        }
        self.reaped = true;
        Ok(())
    }
}

impl Supervised for LocalGroup {
    fn poll_exit(&mut self) -> io::Result<Option<Status>> {
        self.peek_all(false)?;
        Ok(self.status())
    }

    fn signal(&mut self, sig: Signal) -> io::Result<()> {
        if self.reaped || self.pgid == 0 {
            return Ok(());
        }
        sys::kill_group(self.pgid, sig)
    }

    fn wait(&mut self) -> io::Result<Status> {
        self.peek_all(true)?;
        let status = self.status().unwrap_or(Status {
            code: crate::exit::COMMAND_FAILED,
            detail: Some("lost track of a child process".to_owned()),
        });
        self.reap()?;
        Ok(status)
    }
}

impl Drop for LocalGroup {
    fn drop(&mut self) {
        if !self.reaped && self.pgid != 0 {
            let _ = sys::kill_group(self.pgid, Signal::Kill);
            for child in &mut self.children {
                let _ = child.wait();
            }
        }
    }
}
