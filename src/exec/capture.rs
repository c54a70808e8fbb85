//! Bounded capture of a command's stdout/stderr.
//!
//! [`pump`] is the one loop that moves bytes: given the read ends of the
//! stdout/stderr pipes and something [`Supervised`], it polls both pipes,
//! feeds each chunk into a [`Capture`] (hash + optional copy of the first
//! `cap` bytes; the rest is drained and discarded), streams the captured
//! part live, and lets [`Escalation`] decide when to signal the group.
//! Memory is one reusable 64 KiB buffer plus at most the caps.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::sys::{self, Signal};
use super::timeout::{Action, Escalation};
use super::{Status, Supervised};
use crate::canonical::hex;

/// Read buffer size (reused for the whole run).
pub const CHUNK: usize = 64 * 1024;

/// How often a running command's exit is checked while its pipes are open.
const EXIT_CHECK_EVERY: Duration = Duration::from_millis(20);

/// The result of capturing one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// `sha256:` + hex of the captured bytes.
    pub hash: String,
    /// True when the stream produced more than the cap.
    pub truncated: bool,
    /// Bytes the stream produced in total (captured or not).
    pub total_bytes: u64,
    /// The captured bytes, when the caller asked to keep them.
    pub data: Option<Vec<u8>>,
}

impl Captured {
    /// The capture of a stream that produced nothing.
    pub fn empty() -> Self {
        Capture::new(0, false).finish()
    }
}

/// An in-progress bounded capture.
#[derive(Debug)]
pub struct Capture {
    cap: u64,
    captured: u64,
    total: u64,
    hasher: Sha256,
    data: Option<Vec<u8>>,
}

impl Capture {
    /// Capture at most `cap` bytes; keep a copy of them when `keep`.
    pub fn new(cap: u64, keep: bool) -> Self {
        Capture {
            cap,
            captured: 0,
            total: 0,
            hasher: Sha256::new(),
            data: keep.then(Vec::new),
        }
    }

    /// Account for `chunk`; returns the part of it that fell within the cap.
    pub fn feed<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        self.total = self.total.saturating_add(chunk.len() as u64);
        let room = self.cap.saturating_sub(self.captured);
        let take = (chunk.len() as u64).min(room) as usize;
        let kept = &chunk[..take];
        if !kept.is_empty() {
            self.hasher.update(kept);
            self.captured += take as u64;
            if let Some(data) = &mut self.data {
                data.extend_from_slice(kept);
            }
        }
        kept
    }

    /// True once more bytes arrived than the cap allows.
    pub fn truncated(&self) -> bool {
        self.total > self.captured
    }

    /// Finish: hash, truncation flag, totals, kept bytes.
    pub fn finish(self) -> Captured {
        let truncated = self.truncated();
        Captured {
            hash: format!("sha256:{}", hex(&self.hasher.finalize())),
            truncated,
            total_bytes: self.total,
            data: self.data,
        }
    }
}

/// Where the captured part of each stream is echoed live (csc's own
/// stdout/stderr), unless quiet. A failing live write (e.g. a closed
/// terminal pipe) silently stops echoing that stream; capture goes on.
#[derive(Debug, Default)]
pub struct Live {
    out: Option<File>,
    err: Option<File>,
}

impl Live {
    /// Echo to csc's own stdout/stderr.
    pub fn stdio() -> Self {
        let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().ok().map(File::from);
        Live {
            out: dup(io::stdout().as_fd()),
            err: dup(io::stderr().as_fd()),
        }
    }

    /// Echo nothing.
    pub fn quiet() -> Self {
        Live::default()
    }

    fn write(slot: &mut Option<File>, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(f) = slot
            && f.write_all(bytes).is_err()
        {
            *slot = None;
        }
    }

    /// A note from csc on its stderr (when not quiet), e.g. that a stream
    /// hit its cap. Control characters are escaped (command ids come from
    /// the contract); a final line feed is kept.
    pub fn note(&mut self, text: &str) {
        let (body, newline) = match text.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (text, ""),
        };
        let line = format!("{}{newline}", crate::text::escape_control(body));
        Live::write(&mut self.err, line.as_bytes());
    }
}

/// What happened while pumping one launched command.
#[derive(Debug)]
pub struct Pumped {
    /// Exit status of the launched work.
    pub status: Status,
    /// The deadline passed and the group was terminated.
    pub timed_out: bool,
    /// csc was interrupted (SIGINT/SIGTERM/SIGHUP) or the run was
    /// cancelled ([`super::cancel`]), and csc terminated the group.
    pub interrupted: bool,
    /// The command exited but processes it left behind kept the output
    /// pipes open; they were killed.
    pub strays_killed: bool,
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr.
    pub stderr: Captured,
}

fn act(child: &mut dyn Supervised, action: Action) -> io::Result<bool> {
    match action {
        Action::None => Ok(false),
        Action::Term => child.signal(Signal::Term).map(|_| false),
        Action::Kill => child.signal(Signal::Kill).map(|_| false),
        Action::Abandon => Ok(true),
    }
}

/// Pump `stdout`/`stderr` (our read ends) until both reach EOF, the
/// escalation gives up on them, and the child has been waited for.
pub fn pump(
    child: &mut dyn Supervised,
    stdout: OwnedFd,
    stderr: OwnedFd,
    mut escalation: Escalation,
    mut out: Capture,
    mut err: Capture,
    live: &mut Live,
) -> io::Result<Pumped> {
    sys::set_nonblocking(stdout.as_fd())?;
    sys::set_nonblocking(stderr.as_fd())?;
    let mut streams: [Option<File>; 2] = [Some(File::from(stdout)), Some(File::from(stderr))];
    let mut buf = vec![0u8; CHUNK];
    let mut exited = false;
    let mut last_check = Instant::now();
    let mut noted = [false; 2];

    while streams.iter().any(Option::is_some) {
        let now = Instant::now();
        if sys::interrupted().is_some() || escalation.cancelled() {
            act(child, escalation.interrupt(now))?;
        }
        if !exited && now.duration_since(last_check) >= EXIT_CHECK_EVERY {
            exited = child.poll_exit()?.is_some();
            last_check = now;
        }
        if act(child, escalation.on_tick(now, exited))? {
            break;
        }
        let wait = escalation.next_wake(now).min(EXIT_CHECK_EVERY);
        let ready = sys::poll_readable(
            [
                streams[0].as_ref().map(|f| f.as_fd()),
                streams[1].as_ref().map(|f| f.as_fd()),
            ],
            wait,
        )?;
        for (slot, r) in ready.iter().enumerate() {
            if r.readable || r.hangup {
                let cap = if slot == 0 { &mut out } else { &mut err };
                drain(
                    slot,
                    &mut streams[slot],
                    &mut buf,
                    cap,
                    live,
                    &mut noted[slot],
                )?;
            }
        }
    }
    drop(streams);
    wait_exit(child, &mut escalation)?;
    let status = child.wait()?;
    Ok(Pumped {
        status,
        timed_out: escalation.timed_out(),
        interrupted: escalation.interrupted(),
        strays_killed: escalation.strays_killed(),
        stdout: out.finish(),
        stderr: err.finish(),
    })
}

/// Read what stream `slot` (0 stdout, 1 stderr) has now into `cap` and
/// the live echo; bounded, so one stream cannot starve the other or the
/// deadline check. At EOF the stream is dropped from `stream`.
fn drain(
    slot: usize,
    stream: &mut Option<File>,
    buf: &mut [u8],
    cap: &mut Capture,
    live: &mut Live,
    noted: &mut bool,
) -> io::Result<()> {
    for _ in 0..16 {
        let Some(file) = stream.as_mut() else {
            break;
        };
        match file.read(buf) {
            Ok(0) => {
                *stream = None;
                break;
            }
            Ok(n) => {
                let kept = cap.feed(&buf[..n]);
                Live::write(
                    if slot == 0 {
                        &mut live.out
                    } else {
                        &mut live.err
                    },
                    kept,
                );
                if cap.truncated() && !*noted {
                    *noted = true;
                    let name = if slot == 0 { "stdout" } else { "stderr" };
                    live.note(&format!(
                        "\ncsc: {name} reached its capture cap; the rest is drained and discarded\n"
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Pipes are closed (or abandoned): wait for the exit, still under the
/// deadline (the caller reaps).
fn wait_exit(child: &mut dyn Supervised, escalation: &mut Escalation) -> io::Result<()> {
    let mut nap = Duration::from_micros(50);
    while child.poll_exit()?.is_none() {
        let now = Instant::now();
        if sys::interrupted().is_some() || escalation.cancelled() {
            act(child, escalation.interrupt(now))?;
        }
        match escalation.on_tick(now, false) {
            Action::None => {}
            Action::Term => child.signal(Signal::Term)?,
            // After SIGKILL the direct children cannot linger: wait below.
            Action::Kill | Action::Abandon => {
                child.signal(Signal::Kill)?;
                break;
            }
        }
        std::thread::sleep(
            nap.min(escalation.next_wake(now))
                .max(Duration::from_micros(50)),
        );
        nap = (nap * 2).min(Duration::from_millis(10));
    }
    Ok(())
}
