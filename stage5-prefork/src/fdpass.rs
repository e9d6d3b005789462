//! Passing an open socket to another process: `SCM_RIGHTS`.
//!
//! A file descriptor is only a number in one process's table; sending the
//! number to another process means nothing. But over a Unix-domain socket,
//! `sendmsg(2)` can carry *ancillary data* of type `SCM_RIGHTS`: the kernel
//! then installs a new descriptor in the receiver's table that refers to the
//! same open file — here, the same TCP connection. The sender closes its copy
//! afterwards; the connection lives on in the receiver.
//!
//! One message carries one byte of ordinary data (a message with only
//! ancillary data is not portable, and the byte lets the receiver tell "no
//! more connections", end of stream, from a message) and up to
//! [`MAX_FDS`] descriptors: the master passes a whole batch of accepted
//! connections to a worker in one `sendmsg`, and the worker takes them all
//! with one `recvmsg`.

use std::io::{self, IoSlice};
use std::mem::size_of;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// The most descriptors one `SCM_RIGHTS` message may carry: Linux's
/// `SCM_MAX_FD`. A longer list fails with `EINVAL`.
pub const MAX_FDS: usize = 253;

// ANCHOR: send_fd
/// Sends `fds` (at most [`MAX_FDS`]) over `channel` in one message. The
/// caller still owns its copies and should close them once this returns.
/// A full channel is `WouldBlock`, and then none of them was sent: the
/// one byte of the message goes with all of its descriptors or not at all.
pub fn send_fds(channel: &UnixStream, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    debug_assert!(!fds.is_empty() && fds.len() <= MAX_FDS);
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let iov = [IoSlice::new(b"c")];
    loop {
        match sendmsg::<()>(
            channel.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
// ANCHOR_END: send_fd

// ANCHOR: recv_fd
/// Receives one message from `channel` and appends the connections it
/// carries to `into`. `Ok(false)` means the sender closed the channel.
/// `MSG_CMSG_CLOEXEC` marks the new descriptors close-on-exec atomically,
/// as `accept4(SOCK_CLOEXEC)` would.
///
/// This is `recvmsg(2)` through `libc` rather than `nix`, for one case: a
/// worker out of descriptors (`EMFILE`). The kernel then installs the
/// descriptors it can, closes the rest, and flags the message `MSG_CTRUNC`;
/// `nix` refuses to read a truncated control buffer, and the installed
/// descriptors would stay open with nobody serving them. Read by hand, they
/// are served; only the ones the kernel closed are lost (their clients see
/// the connection close).
#[allow(
    unsafe_code,
    reason = "SCM_RIGHTS: reading the control buffer the kernel filled, and owning the descriptors it installed"
)]
pub fn recv_streams(channel: &UnixStream, into: &mut Vec<TcpStream>) -> io::Result<bool> {
    // A buffer with room for MAX_FDS descriptors, aligned for `cmsghdr`
    // (u64 words); CMSG_SPACE is the header plus the padded payload.
    // SAFETY: CMSG_SPACE is arithmetic on its argument, no memory access.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * size_of::<RawFd>()) as u32) } as usize;
    // On the stack: no allocation per call (the drain loop calls this at
    // least twice per wake-up). A cmsghdr is 16 bytes on 64-bit Linux; one
    // word of slack covers the payload's padding.
    const WORDS: usize = (16 + MAX_FDS * size_of::<RawFd>()) / size_of::<u64>() + 2;
    let mut control = [0u64; WORDS];
    assert!(space <= size_of_val(&control), "CMSG_SPACE fits the buffer");
    loop {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: byte.len(),
        };
        // SAFETY: an all-zero msghdr is valid (no name, no buffers); the
        // fields that matter are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points at `iov` (one byte of `byte`) and `control`
        // (`space` bytes), all alive and exclusively borrowed for the call.
        let n = unsafe { libc::recvmsg(channel.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(false);
        }
        let before = into.len();
        // SAFETY: `msg` was filled by the kernel; CMSG_FIRSTHDR and
        // CMSG_NXTHDR only walk inside msg_control/msg_controllen, and
        // return null at its end.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: a non-null pointer from CMSG_FIRSTHDR/NXTHDR points
            // at a whole header inside `control`, which is aligned for it.
            let hdr = unsafe { &*cmsg };
            if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: arithmetic only.
                let header = unsafe { libc::CMSG_LEN(0) } as usize;
                let count = (hdr.cmsg_len as usize).saturating_sub(header) / size_of::<RawFd>();
                // SAFETY: the payload of this header, `count` descriptors.
                let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
                for k in 0..count {
                    // SAFETY: `k < count`, inside the payload; it may be
                    // unaligned for RawFd, hence read_unaligned.
                    let fd = unsafe { data.add(k).read_unaligned() };
                    // SAFETY: the kernel just installed `fd` in our table
                    // for this message (SCM_RIGHTS); nothing else in the
                    // process knows the number, so we are its only owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    into.push(TcpStream::from(owned));
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            log::warn!(
                "passed connections were dropped: out of file descriptors ({} of the message received)",
                into.len() - before
            );
        }
        if into.len() > before {
            return Ok(true);
        }
        // A byte without a descriptor (all of them dropped): nothing to
        // serve; wait for the next message.
    }
}
// ANCHOR_END: recv_fd

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    /// Connections accepted on one side of a socket pair are usable from
    /// the other side after the sender closed its copies: a batch of
    /// `MAX_FDS` in one message, then one alone, then end-of-stream.
    #[test]
    fn sockets_cross_a_unix_socket_pair_in_batches() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (master, worker) = UnixStream::pair().unwrap();
        let mut clients = Vec::new();
        let mut accepted = Vec::new();
        for _ in 0..=MAX_FDS {
            clients.push(TcpStream::connect(addr).unwrap());
            accepted.push(listener.accept().unwrap().0);
        }
        let (batch, last) = accepted.split_at(MAX_FDS);
        let fds: Vec<BorrowedFd<'_>> = batch.iter().map(AsFd::as_fd).collect();
        send_fds(&master, &fds).unwrap();
        send_fds(&master, &[last[0].as_fd()]).unwrap();
        drop(fds);
        drop(accepted);

        let mut served = Vec::new();
        assert!(recv_streams(&worker, &mut served).unwrap());
        assert_eq!(served.len(), MAX_FDS, "one recvmsg takes the whole batch");
        assert!(recv_streams(&worker, &mut served).unwrap());
        assert_eq!(served.len(), MAX_FDS + 1, "and the next message alone");
        // In order: the k-th passed socket is the k-th client's connection.
        for (k, (client, conn)) in clients.iter_mut().zip(&mut served).enumerate() {
            let word = format!("{k:04}");
            client.write_all(word.as_bytes()).unwrap();
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, word.as_bytes());
            conn.write_all(b"pong").unwrap();
            client.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"pong");
        }
        drop(master);
        assert!(
            !recv_streams(&worker, &mut served).unwrap(),
            "closing the channel is end-of-stream"
        );
    }

    /// More than `SCM_MAX_FD` in one message is refused by the kernel: the
    /// limit the master's batches keep to.
    #[test]
    fn a_message_carries_at_most_max_fds() {
        let (master, _worker) = UnixStream::pair().unwrap();
        let fd = master.as_fd();
        let too_many = vec![fd; MAX_FDS + 1];
        let err = send_fds_unchecked(&master, &too_many).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    fn send_fds_unchecked(channel: &UnixStream, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        sendmsg::<()>(
            channel.as_raw_fd(),
            &[IoSlice::new(b"c")],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(io::Error::from)
    }
}
