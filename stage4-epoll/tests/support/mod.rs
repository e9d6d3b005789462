//! Helpers shared by this crate's integration tests: a document root with a
//! large file, a client with a tiny receive window, and process statistics.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::testkit::ServerProcess;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, connect, setsockopt, socket, sockopt,
};

/// Size of `big.bin`: far more than a socket's send buffer plus a small
/// receive window, so the server must stop and resume.
pub const BIG: usize = 16 << 20;

/// The byte at `i` of `big.bin`: a pattern that catches reordering and gaps.
pub fn big_byte(i: usize) -> u8 {
    ((i % 251) ^ (i >> 12)) as u8
}

/// A temporary document root with `index.html` and `big.bin`; removed on drop.
#[derive(Debug)]
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    pub fn create() -> Root {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stage4-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), b"<!DOCTYPE html>\n<p>hello</p>\n").unwrap();
        let big: Vec<u8> = (0..BIG).map(big_byte).collect();
        std::fs::write(dir.join("big.bin"), big).unwrap();
        Root { dir }
    }

    pub fn arg(&self) -> String {
        self.dir.display().to_string()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the stage 4 binary with `--root root` and `args`.
pub fn start(root: &Root, args: &[&str]) -> ServerProcess {
    let root = root.arg();
    let mut all = vec!["--root", &root, "--access-log", "off"];
    all.extend_from_slice(args);
    ServerProcess::start(env!("CARGO_BIN_EXE_stage4-epoll"), &all)
}

/// Connects with a 4 KiB receive buffer set *before* the handshake (so the
/// advertised window stays small): a client that reads slowly, or not at
/// all, stalls the server's writes quickly.
pub fn small_window_connect(addr: SocketAddr) -> TcpStream {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    use std::os::fd::AsRawFd;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)).unwrap();
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `GET path` with keep-alive and reads one response (by its
/// Content-Length); returns the status and the body.
pub fn get_on(s: &mut TcpStream, path: &str) -> (u16, Vec<u8>) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_response(s)
}

/// Reads one response with a Content-Length body.
pub fn read_response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("reading a response head");
        assert!(n > 0, "closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("Content-Length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).expect("reading a body");
        assert!(n > 0, "closed in the middle of a body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), len, "no bytes beyond the response expected");
    (status, body)
}

/// Reads until EOF or an error (a reset counts as the end); returns the
/// bytes and whether it ended cleanly.
pub fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (all, false),
        }
    }
}
