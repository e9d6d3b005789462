//! One `sendfile(2)` call: what stage 2 (blocking) and stage 4
//! (non-blocking) both make to send a file's body, the kernel copying from
//! the page cache to the socket. Each stage handles "would block" and
//! interruption its own way; the one answer that needs the same care
//! everywhere is written here.

use std::io;
use std::os::fd::AsFd;

/// Sends up to `count` bytes of `file`, from byte `offset` of the file,
/// to `socket`; returns how many went, as `sendfile` does (fewer than
/// `count` on a non-blocking socket whose buffer filled up).
///
/// `sendfile` returns 0 when the file ends before `offset + count`: the
/// file shrank on disk after it was opened and its length promised in
/// `Content-Length`. Taken as "0 bytes sent", a caller would try again
/// for ever, so it is an error here (`UnexpectedEof`), and the connection
/// must close: its response can no longer be completed.
pub fn send_chunk(
    socket: impl AsFd,
    file: impl AsFd,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    let mut off = offset as nix::libc::off_t;
    match nix::sys::sendfile::sendfile(socket, file, Some(&mut off), count) {
        Ok(0) if count > 0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while sending",
        )),
        Ok(n) => Ok(n),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn sends_a_chunk_and_refuses_a_file_that_ends_early() {
        let dir = std::env::temp_dir().join(format!("sendfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"0123456789")
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        assert_eq!(send_chunk(&a, &file, 2, 5).unwrap(), 5);
        let mut got = [0u8; 5];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"23456");
        // Past the end of the file: an error, not "0 bytes sent".
        let e = send_chunk(&a, &file, 10, 5).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
