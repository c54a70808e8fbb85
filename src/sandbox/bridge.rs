//! Egress bridge (network `allowlisted`): inside the sandbox's network
//! namespace a listening socket on `127.0.0.1:PORT`, and a small process
//! forked by init that accepts connections and passes each accepted
//! socket to csc's proxy over an inherited unix socketpair
//! (`SCM_RIGHTS`). No TCP listener and no unix socket path exists on the
//! host side. See `src/egress/`.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};

use super::sys;

use super::error::{StepResult, failed};

/// Send a descriptor to the proxy.
pub fn send_fd(channel: &OwnedFd, fd: &impl AsRawFd) -> std::io::Result<()> {
    sys::send_fd(channel.as_raw_fd(), fd.as_raw_fd())
}

/// Receive the next accepted connection; `None` once every sender is gone.
pub fn recv_fd(channel: &OwnedFd) -> std::io::Result<Option<OwnedFd>> {
    sys::recv_fd(channel.as_raw_fd())
}

/// A connected `SOCK_SEQPACKET` unix socketpair (close-on-exec).
pub fn channel() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(std::io::Error::from)
}

/// Bind and listen on `127.0.0.1:port` (inside the sandbox's namespace,
/// before Landlock restricts binding).
pub(crate) fn listen(port: u16) -> StepResult<TcpListener> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .map_err(failed(format!("egress bridge: listen on 127.0.0.1:{port}")))
}

/// The bridge loop: accept, pass, close our copy. Returns when the proxy
/// side is gone.
pub(crate) fn serve(listener: TcpListener, channel: OwnedFd) -> i32 {
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                if let Err(e) = send_fd(&channel, &conn)
                    && matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNREFUSED))
                {
                    return 0;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(_) => return 1,
        }
    }
}
