//! Passing an open socket to another process: `SCM_RIGHTS`.
//!
//! A file descriptor is only a number in one process's table; sending the
//! number to another process means nothing. But over a Unix-domain socket,
//! `sendmsg(2)` can carry *ancillary data* of type `SCM_RIGHTS`: the kernel
//! then installs a new descriptor in the receiver's table that refers to the
//! same open file — here, the same TCP connection. The sender closes its copy
//! afterwards; the connection lives on in the receiver.
//!
//! Each message carries one descriptor and one byte of ordinary data (a
//! message with only ancillary data is not portable, and the byte lets the
//! receiver tell "no more connections" — end of stream — from a message).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::cmsg_space;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

// ANCHOR: send_fd
/// Sends `fd` over `channel`. The caller still owns its copy and should
/// close it once this returns.
pub fn send_fd(channel: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
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
/// Receives one descriptor from `channel`, as a `TcpStream`. `Ok(None)`
/// means the sender closed the channel. `MSG_CMSG_CLOEXEC` marks the new
/// descriptor close-on-exec atomically, as `accept4(SOCK_CLOEXEC)` would.
#[allow(
    unsafe_code,
    reason = "SCM_RIGHTS: the kernel installs a descriptor that only this code may take ownership of"
)]
pub fn recv_stream(channel: &UnixStream) -> io::Result<Option<TcpStream>> {
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = match recvmsg::<()>(
            channel.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if msg.bytes == 0 {
            return Ok(None);
        }
        // MSG_CTRUNC: the kernel could not install the descriptor (this
        // process is out of descriptors, EMFILE) and closed it. That
        // connection is lost; the channel is fine: wait for the next one.
        let Ok(cmsgs) = msg.cmsgs() else {
            log::warn!("a passed connection was dropped: out of file descriptors");
            continue;
        };
        let mut received = None;
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just installed `fd` in our table for
                    // this message (SCM_RIGHTS); nothing else in the process
                    // knows the number, so we are its only owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if received.is_none() {
                        received = Some(TcpStream::from(owned));
                    }
                    // Any extra descriptor (never sent by our master) is
                    // closed here by dropping `owned`.
                }
            }
        }
        if let Some(stream) = received {
            return Ok(Some(stream));
        }
        // A byte without a descriptor: nothing to serve; wait for the next.
    }
}
// ANCHOR_END: recv_fd

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    /// A connection accepted on one side of a socket pair is usable from the
    /// other side after the sender closed its copy.
    #[test]
    fn a_socket_crosses_a_unix_socket_pair() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let (master, worker) = UnixStream::pair().unwrap();
        send_fd(&master, accepted.as_fd()).unwrap();
        drop(accepted);
        let mut served = recv_stream(&worker).unwrap().expect("a stream");
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        served.write_all(b"pong").unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        drop(master);
        assert!(
            recv_stream(&worker).unwrap().is_none(),
            "closing the channel is end-of-stream"
        );
    }
}
