//! The session around `csc mcp`'s runs: noticing that the client went
//! away (stdin EOF, a read error, a failed write to stdout, or stdout
//! polling as closed) or that csc
//! was told to stop (SIGINT/SIGTERM/SIGHUP), and turning a client's
//! `notifications/cancelled` or disconnect into a [`Cancel`] of the run it
//! concerns. A cancelled run still writes its receipt.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::exec::cancel::Cancel;

/// The receipt's reason when the client cancels the request.
pub const CANCELLED: &str = "the MCP client cancelled the request (notifications/cancelled)";
/// The receipt's reason when the client goes away mid-run.
pub const DISCONNECTED: &str = "the MCP client disconnected (stdin closed or stdout broken)";
/// The receipt's reason when csc mcp itself is told to stop.
pub const INTERRUPTED: &str = "csc mcp was interrupted by a signal";

/// Why the session is ending, shared by every in-flight run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Still serving.
    No,
    /// The client went away.
    Disconnected,
    /// A signal told csc to stop.
    Interrupted,
}

/// Raise `end` once (the first cause wins).
pub fn raise(end: &watch::Sender<End>, cause: End) {
    end.send_if_modified(|e| {
        let first = *e == End::No;
        if first {
            *e = cause;
        }
        first
    });
}

/// The client's side of stdin: reading EOF or an error raises
/// [`End::Disconnected`].
pub struct Watched<T> {
    inner: T,
    end: watch::Sender<End>,
}

impl<T> Watched<T> {
    /// Wrap one half of the transport.
    pub fn new(inner: T, end: watch::Sender<End>) -> Self {
        Watched { inner, end }
    }

    fn note<R>(&self, r: &Poll<io::Result<R>>) {
        if matches!(r, Poll::Ready(Err(_))) {
            raise(&self.end, End::Disconnected);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(&r);
        if matches!(r, Poll::Ready(Ok(()))) && wanted && buf.filled().len() == before {
            raise(&self.end, End::Disconnected);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.note(&r);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(&r);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Turn the signals csc catches ([`crate::exec::sys::catch_interrupts`])
/// into [`End::Interrupted`] (checked every 50 ms; the capture loops of
/// running commands see the signal themselves at once).
pub async fn watch_signals(end: watch::Sender<End>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if crate::exec::sys::interrupted().is_some() {
            raise(&end, End::Interrupted);
            return;
        }
    }
}

/// Notice a client that closed its end of our stdout while no response
/// is being written (a run in flight): every 100 ms, poll stdout for
/// POLLERR/POLLHUP (a pipe without readers, a hung-up terminal) and raise
/// [`End::Disconnected`]. Returns once the session ends.
pub async fn watch_stdout(end: watch::Sender<End>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ended = end.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ended.wait_for(|e| *e != End::No) => return,
        }
        let stdout = io::stdout();
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
        let gone = poll(&mut fds, PollTimeout::ZERO).is_ok()
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        if gone {
            raise(&end, End::Disconnected);
            return;
        }
    }
}

/// A [`Cancel`] for one run, raised when the request is cancelled
/// (`request` is the request's cancellation future) or the session ends.
/// Abort the returned task once the run is over.
pub fn cancel_for_run(
    request: impl Future<Output = ()> + Send + 'static,
    mut end: watch::Receiver<End>,
) -> (Cancel, tokio::task::JoinHandle<()>) {
    let cancel = Cancel::new();
    let raised = cancel.clone();
    let peek = end.clone();
    let why = |e: End| match e {
        End::No => CANCELLED,
        End::Interrupted => INTERRUPTED,
        End::Disconnected => DISCONNECTED,
    };
    let task = tokio::spawn(async move {
        // When the session ends, csc and the SDK cancel every request too:
        // the session's cause wins, the client's own cancellation counts
        // only while the session lives.
        tokio::select! {
            biased;
            Ok(e) = end.wait_for(|e| *e != End::No) => raised.cancel(why(*e)),
            () = request => raised.cancel(why(*peek.borrow())),
        }
    });
    (cancel, task)
}
