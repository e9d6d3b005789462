//! Black-box tests of what the pool adds to stage 2: fairness between
//! keep-alive connections, backpressure, panic isolation and a graceful
//! shutdown that finishes queued work. Real sockets on 127.0.0.1, port 0.
//!
//! Every wait has an upper bound (a socket read timeout or a deadline), and
//! no test sleeps hoping that something happened meanwhile: each step waits
//! for an observable event (a response, an EOF) before the next.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::testkit::ServerProcess;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_stage3-threadpool");

/// A response as the tests look at it.
#[derive(Debug)]
struct Response {
    /// The status line and headers, as text.
    head: String,
    /// The body (`Content-Length` bytes).
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// A header's value (names compared case-insensitively).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response: the head up to the blank line, then
/// `Content-Length` body bytes. Panics on EOF or the socket's timeout.
fn read_response(s: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            Ok(_) => panic!(
                "EOF inside a response head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Err(e) => panic!("reading a response head: {e}"),
        }
    }
    let head = String::from_utf8(buf).expect("an ASCII head");
    let mut r = Response {
        head,
        body: Vec::new(),
    };
    let len: usize = r
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    r.body.resize(len, 0);
    s.read_exact(&mut r.body).expect("the whole body");
    r
}

/// Asserts that the server closed `s` without sending anything more.
fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "expected a close, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("expected a close, got {e}"),
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// A fresh document root in the temp directory.
fn temp_root(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stage3-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), b"<h1>hello</h1>\n").unwrap();
    dir
}

/// Raises this test process's own open-files limit so that it can hold
/// hundreds of client sockets.
fn raise_own_fd_limit(want: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).unwrap();
    }
}

/// The server's thread count, from `/proc/PID/task`.
fn threads_of(server: &ServerProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .count()
}

/// Fairness: 500 keep-alive connections over 8 workers all get their
/// answer, long before a single keep-alive timeout (30 s) could pass.
/// Without the fairness policy the first 8 connections would each hold a
/// worker for 30 s after their response, and everyone else would wait.
#[test]
fn five_hundred_keepalive_clients_share_eight_workers() {
    const CLIENTS: usize = 500;
    raise_own_fd_limit(2 * CLIENTS as u64 + 64);
    for queue in ["mutex", "crossbeam"] {
        let server = ServerProcess::start(
            BIN,
            &[
                "--threads",
                "8",
                "--queue",
                queue,
                "--keepalive-timeout",
                "30",
                "--access-log",
                "off",
            ],
        );
        let start = Instant::now();
        let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
        for c in &mut clients {
            c.write_all(&get("/")).unwrap();
        }
        let mut closed_by_policy = 0;
        // Each client closes its socket once it has its answer, as an HTTP
        // client told `Connection: close` does (the server's lingering
        // close waits for that).
        for mut c in clients {
            let r = read_response(&mut c);
            assert_eq!(r.status(), 200, "{queue}: {}", r.head);
            if r.header("Connection") == Some("close") {
                closed_by_policy += 1;
            }
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_secs(20),
            "{queue}: {CLIENTS} clients took {elapsed:?}"
        );
        assert!(
            closed_by_policy > 0,
            "{queue}: no response ended keep-alive"
        );
        eprintln!(
            "{queue}: {CLIENTS} clients answered in {elapsed:?}, {closed_by_policy} told to close"
        );
    }
}

/// The fairness policy closes an idle keep-alive connection as soon as
/// another connection waits for its worker: with one worker and a 30 s
/// keep-alive timeout, the second client is answered at once and the first
/// sees its connection closed.
#[test]
fn an_idle_keepalive_connection_makes_room() {
    let server = ServerProcess::start(BIN, &["--threads", "1", "--keepalive-timeout", "30"]);
    let mut a = server.connect();
    a.write_all(&get("/")).unwrap();
    let r = read_response(&mut a);
    assert_eq!(r.status(), 200);
    assert_ne!(r.header("Connection"), Some("close"), "{}", r.head);
    // `a` now idles on the only worker.
    let start = Instant::now();
    let mut b = server.connect();
    b.write_all(&get("/")).unwrap();
    assert_eq!(read_response(&mut b).status(), 200);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_closed(&mut a);
}

/// Backpressure: one worker busy, the one queue slot taken, and the next
/// connection is answered `503` with `Retry-After` at once — it is not left
/// waiting in a queue that has no room. The queued client is served later.
#[test]
fn a_full_queue_answers_503_with_retry_after() {
    for queue in ["mutex", "crossbeam"] {
        let server = ServerProcess::start(
            BIN,
            &[
                "--threads",
                "1",
                "--queue-depth",
                "1",
                "--queue",
                queue,
                "--header-timeout",
                "30",
                "--retry-after",
                "7",
            ],
        );
        // A answers one request (so it surely holds the worker), then
        // sends half a head: the worker waits for the rest.
        let mut a = server.connect();
        a.write_all(&get("/")).unwrap();
        assert_eq!(read_response(&mut a).status(), 200);
        a.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        // B takes the only queue slot (the acceptor accepts in order)...
        let mut b = server.connect();
        b.write_all(&get("/")).unwrap();
        // ...so C finds the queue full.
        let start = Instant::now();
        let mut c = server.connect();
        c.write_all(&get("/")).unwrap();
        let r = read_response(&mut c);
        assert_eq!(r.status(), 503, "{queue}: {}", r.head);
        assert_eq!(r.header("Retry-After"), Some("7"), "{queue}: {}", r.head);
        assert_eq!(r.header("Connection"), Some("close"), "{queue}: {}", r.head);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{queue}: the 503 took {:?}",
            start.elapsed()
        );
        assert_closed(&mut c);
        // Finish A's head: A, then B, are served.
        a.write_all(b"Host: test\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut a).status(), 200, "{queue}");
        assert_eq!(read_response(&mut b).status(), 200, "{queue}");
    }
}

/// Panic isolation: a request for the hidden `--panic-path` makes its
/// worker panic. The connection is dropped without a response, but the
/// worker survives: after three panics on a two-worker pool the thread
/// count is unchanged and requests are still served.
#[test]
fn a_panicking_worker_keeps_the_pool_whole() {
    let server = ServerProcess::start(BIN, &["--threads", "2", "--panic-path", "/__panic"]);
    let threads_before = threads_of(&server);
    for _ in 0..3 {
        let mut s = server.connect();
        s.write_all(&get("/__panic")).unwrap();
        assert_closed(&mut s);
    }
    assert_eq!(threads_of(&server), threads_before);
    for _ in 0..4 {
        let mut s = server.connect();
        s.write_all(&get("/")).unwrap();
        assert_eq!(read_response(&mut s).status(), 200);
    }
    // Without the flag the path is just a missing file.
    let server = ServerProcess::start(BIN, &["--threads", "1"]);
    let mut s = server.connect();
    s.write_all(&get("/__panic")).unwrap();
    assert_eq!(read_response(&mut s).status(), 404);
}

/// Graceful shutdown: SIGTERM arrives while one large download is in
/// flight and two more connections wait in the queue. All three get
/// complete responses, the process exits 0, and it logs its stats.
#[test]
fn sigterm_finishes_in_flight_and_queued_connections() {
    const BIG: usize = 32 << 20;
    let root = temp_root("shutdown");
    std::fs::write(root.join("big.bin"), vec![7u8; BIG]).unwrap();
    let error_log = root.join("error.log");
    let mut server = ServerProcess::start(
        BIN,
        &[
            "--threads",
            "1",
            "--queue-depth",
            "2",
            "--queue",
            "crossbeam",
            "--root",
            root.to_str().unwrap(),
            "--error-log",
            error_log.to_str().unwrap(),
        ],
    );
    // A's download cannot finish before we read it: 32 MiB do not fit in
    // the socket buffers.
    let mut a = server.connect();
    a.write_all(&get("/big.bin")).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        a.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let mut first = vec![0u8; 65536];
    a.read_exact(&mut first).unwrap();
    // B and C wait in the queue; D's 503 proves both were accepted.
    let mut b = server.connect();
    b.write_all(&get("/")).unwrap();
    let mut c = server.connect();
    c.write_all(&get("/")).unwrap();
    let mut d = server.connect();
    d.write_all(&get("/")).unwrap();
    assert_eq!(read_response(&mut d).status(), 503);

    server.signal(Signal::SIGTERM);
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() + rest.len(), BIG);
    // Each queued client closes once answered (the server's lingering
    // close waits for that before it moves on).
    for mut s in [b, c] {
        let r = read_response(&mut s);
        assert_eq!(r.status(), 200, "{}", r.head);
        assert_eq!(r.header("Connection"), Some("close"), "{}", r.head);
        assert_eq!(r.body, b"<h1>hello</h1>\n");
    }
    let status = server
        .wait_timeout(Duration::from_secs(30))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&error_log).unwrap();
    assert!(
        log.contains("stats: accepted=4 rejected=1 served=3 requests=3"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
