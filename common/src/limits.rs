//! Limits a server with many connections needs raised: open files, and
//! the kernel's accept queue; and the bounds every stage's socket code
//! shares, defined once here.

use std::net::TcpListener;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{Backlog, listen};

/// How long a server stops accepting after `accept` fails for want of
/// descriptors (`EMFILE`): the connection stays queued and the listener
/// readable, so trying again at once would spin.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long a lingering close (our FIN first, then drain) waits for the
/// client to close its side.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// How much a lingering close reads and throws away at most.
pub const LINGER_BYTES: usize = 1 << 20;

/// Bytes handed to one `sendfile(2)` call: a large file goes out in steps,
/// between which a server can check its deadlines and yield.
pub const SENDFILE_CHUNK: usize = 1 << 20;

/// The highest soft limit asked for when the hard limit is "unlimited"
/// (Linux refuses more than `/proc/sys/fs/nr_open`, 1,048,576 by default).
const UNLIMITED_CAP: u64 = 1 << 20;

// ANCHOR: raise_fd_limit
/// Raises the soft limit on open file descriptors to the hard limit and
/// returns it. Every connection is a descriptor; the usual soft limit of
/// 1,024 would make `accept` fail with EMFILE long before the threads or
/// the memory run out. Raising the soft limit up to the hard one needs no
/// privilege.
pub fn raise_fd_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = if hard == nix::libc::RLIM_INFINITY {
        UNLIMITED_CAP.max(soft)
    } else {
        hard
    };
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    }
    Ok(target.max(soft))
}
// ANCHOR_END: raise_fd_limit

/// Sets the soft limit on open files to `want` (at most the hard limit), or
/// raises it as [`raise_fd_limit`] does when `want` is `None`. A test lowers
/// it to provoke `EMFILE`. Returns the soft limit now in force.
pub fn set_fd_limit(want: Option<u64>) -> nix::Result<u64> {
    let Some(want) = want else {
        return raise_fd_limit();
    };
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let new = want.min(hard);
    if new != soft {
        setrlimit(Resource::RLIMIT_NOFILE, new, hard)?;
    }
    Ok(new)
}

// ANCHOR: backlog
/// Sets the length of the kernel's accept queue: connections the kernel
/// has completed (SYN, SYN-ACK, ACK) that `accept` has not taken yet. The
/// standard library listens with 128; a burst of more connections than
/// that, faster than the acceptor wakes up, overflows it, and the kernel
/// drops the client's SYN: the client retries one second later. Calling
/// `listen` again on a listening socket just changes the length (Linux
/// caps it at `net.core.somaxconn`).
pub fn set_backlog(listener: &TcpListener, len: i32) -> nix::Result<()> {
    listen(listener, Backlog::new(len)?)
}
// ANCHOR_END: backlog
