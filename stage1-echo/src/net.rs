//! The socket calls both models share: opening the listener, and the two
//! `io::Error` kinds that are not really errors.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

/// How many finished handshakes the kernel queues for us before `accept`.
/// Clients past it wait in SYN retries; Linux caps it at `somaxconn`.
const BACKLOG: i32 = 128;

// ANCHOR: open_listener
/// `socket` + `setsockopt(SO_REUSEADDR)` + `bind` + `listen`, one call at a
/// time, as `strace` shows them. `std::net::TcpListener::bind` does the same
/// four calls; spelling them out is the lesson.
pub fn open_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    // SOCK_CLOEXEC: a child process (none here) would not inherit it.
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    // Without SO_REUSEADDR a restarted server fails with EADDRINUSE while
    // the previous run's connections sit in TIME_WAIT (up to a minute).
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(BACKLOG)?)?;
    // The OwnedFd becomes a std listener: accept(2) and friends from here.
    Ok(TcpListener::from(fd))
}
// ANCHOR_END: open_listener

/// A non-blocking call found nothing to do: try again after `poll`.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// A signal arrived during a blocking call: just repeat it.
pub fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

/// How long a closing connection may take to say goodbye (see
/// `event_loop.rs`'s lingering close): the same bound as the HTTP stages'.
pub use common::limits::LINGER_TIME as LINGER;

/// How long to stop accepting after `accept` fails for lack of resources
/// (`EMFILE`): the listener stays readable, and retrying at once would spin.
/// Both models back off for this long, as the HTTP stages do.
pub use common::limits::ACCEPT_PAUSE as ACCEPT_BACKOFF;

/// How long a graceful shutdown waits for goodbyes before it exits anyway.
pub const GRACE: Duration = Duration::from_secs(5);

/// A `poll(2)` timeout that ends *at or after* `d` (nix's conversion rounds
/// down to whole milliseconds, which would wake us just before a deadline).
pub fn poll_timeout(d: Option<Duration>) -> nix::poll::PollTimeout {
    use nix::poll::PollTimeout;
    match d {
        None => PollTimeout::NONE,
        Some(d) => {
            PollTimeout::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX)
        }
    }
}
