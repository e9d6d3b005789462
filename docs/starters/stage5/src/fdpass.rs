//! Passing an open connection to another process.
//!
//! A descriptor is a number in one process's table, meaningless in
//! another. But a message on a Unix-domain socket can carry *ancillary
//! data*, and `SCM_RIGHTS` ancillary data makes the kernel install, in the
//! receiving process, a new descriptor for the same open socket. Each
//! message here is one byte of ordinary data (a message of ancillary data
//! alone is not portable) and one descriptor.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// Sends `fd` over `channel` in one message. The caller still owns its
/// copy, and closes it once this returns. On a non-blocking channel, a
/// full one is `WouldBlock`; one whose receiver has exited is `BrokenPipe`
/// (`MSG_NOSIGNAL`: no SIGPIPE).
#[allow(dead_code)] // the master uses it from STEP 1 on
pub fn send_fd(channel: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    // STEP 1: one `nix::sys::socket::sendmsg::<()>` on `channel`: the data
    // is one byte (`[IoSlice::new(b"c")]`), the ancillary data
    // `[ControlMessage::ScmRights(&[fd.as_raw_fd()])]`, the flags
    // `MsgFlags::MSG_NOSIGNAL`, no address (`None`). nix's `Errno` turns
    // into an `io::Error` with `?`.
    let _ = (channel, fd); // (delete this line)
    Err(io::Error::other("send_fd: not written yet (STEP 1)"))
}

/// Receives one connection from `channel`; `None` once the sender has
/// closed its end. On a non-blocking channel with nothing queued, this is
/// `WouldBlock`.
pub fn recv_fd(channel: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    // STEP 1: one `nix::sys::socket::recvmsg::<()>` into a one-byte buffer
    // (`[IoSliceMut::new(&mut byte)]`) with room for one descriptor
    // (`nix::cmsg_space!(RawFd)`) and `MsgFlags::MSG_CMSG_CLOEXEC`.
    // 0 bytes is the end of the stream: `Ok(None)`. Otherwise find the
    // `ControlMessageOwned::ScmRights(fds)` among `msg.cmsgs()?` and make
    // each number an `OwnedFd` (`unsafe { OwnedFd::from_raw_fd(fd) }`,
    // under a `// SAFETY:` comment: why is this process its only owner?).
    let _ = channel; // (delete this line)
    Err(io::Error::other("recv_fd: not written yet (STEP 1)"))
}
