//! Black-box tests of what the pool adds to stage 2: many keep-alive
//! connections on few workers (the fairness policy of the classic model,
//! the poller of the default one), backpressure, panic isolation and a
//! graceful shutdown that finishes queued work. Tests that name no `--idle`
//! run the default model, the poller. Real sockets on 127.0.0.1, port 0.
//!
//! Every wait has an upper bound (a socket read timeout or a deadline), and
//! no test sleeps hoping that something happened meanwhile: each step waits
//! for an observable event (a response, an EOF) before the next.

use std::time::{Duration, Instant};

use common::testkit::abuse::stalled_download;
use common::testkit::client::{Client, find};
use common::testkit::fdlock::many_connections;
use common::testkit::files::{INDEX_HTML, TempDir};
use common::testkit::{ServerProcess, status};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_stage3-threadpool");

const GET_ROOT: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// The server's thread count, from `/proc/PID/task`.
fn threads_of(server: &ServerProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .count()
}

/// 500 keep-alive connections over 8 workers all get their answer, long
/// before a single keep-alive timeout (30 s) could pass, in both models.
/// Classic: the fairness policy ends keep-alive (`Connection: close`) while
/// others wait; without it the first 8 connections would each hold a worker
/// for 30 s after their response, and everyone else would wait. Poller:
/// nobody is told to close, and all 500 idle connections are held at once
/// by the poller — and each answers a second request.
#[test]
fn five_hundred_keepalive_clients_share_eight_workers() {
    const CLIENTS: usize = 500;
    // A thousand descriptors, here and in the server: no other test that
    // holds many connections runs meanwhile.
    let _fds = many_connections();
    for (idle, queue) in [
        ("classic", "mutex"),
        ("classic", "crossbeam"),
        ("poller", "mutex"),
        ("poller", "crossbeam"),
    ] {
        let server = ServerProcess::start(
            BIN,
            &[
                "--idle",
                idle,
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
        let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(server.addr)).collect();
        for c in &mut clients {
            c.send(GET_ROOT);
        }
        let mut closed_by_policy = 0;
        let mut kept = Vec::new();
        // Each client told `Connection: close` closes its socket once it
        // has its answer, as an HTTP client does (the server's lingering
        // close waits for that).
        for mut c in clients {
            let r = c.exact_response();
            assert_eq!(r.status, 200, "{idle}/{queue}: {r:?}");
            if r.header("Connection") == Some("close") {
                closed_by_policy += 1;
            } else {
                kept.push(c);
            }
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_secs(20),
            "{idle}/{queue}: {CLIENTS} clients took {elapsed:?}"
        );
        if idle == "classic" {
            assert!(
                closed_by_policy > 0,
                "{idle}/{queue}: no response ended keep-alive"
            );
        } else {
            assert_eq!(closed_by_policy, 0, "{idle}/{queue}");
            // The 500 idle connections (and the status request) are
            // held, none on a worker.
            status::wait_until_at_least(
                server.addr,
                "threadpool_poller_connections",
                CLIENTS as u64,
                Duration::from_secs(20),
            );
            for c in &mut kept {
                assert_eq!(c.get("/").status, 200, "{idle}/{queue}: a second request");
            }
        }
        eprintln!(
            "{idle}/{queue}: {CLIENTS} clients answered in {elapsed:?}, {closed_by_policy} told to close"
        );
    }
}

/// Classic model: the fairness policy closes an idle keep-alive connection
/// as soon as another connection waits for its worker: with one worker and
/// a 30 s keep-alive timeout, the second client is answered at once and the
/// first sees its connection closed. Poller model: the idle connection
/// costs no worker, so both are served and both stay open.
#[test]
fn an_idle_keepalive_connection_makes_room() {
    for idle in ["classic", "poller"] {
        let server = ServerProcess::start(
            BIN,
            &[
                "--idle",
                idle,
                "--threads",
                "1",
                "--keepalive-timeout",
                "30",
            ],
        );
        let mut a = Client::connect(server.addr);
        let r = a.get("/");
        assert_eq!(r.status, 200);
        assert_ne!(r.header("Connection"), Some("close"), "{r:?}");
        // `a` now idles: on the only worker (classic), in the poller.
        let start = Instant::now();
        let mut b = Client::connect(server.addr);
        assert_eq!(b.get("/").status, 200, "{idle}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{idle}: {:?}",
            start.elapsed()
        );
        if idle == "classic" {
            a.expect_closed();
        } else {
            assert_eq!(a.get("/").status, 200, "{idle}");
            assert_eq!(b.get("/").status, 200, "{idle}");
        }
    }
}

/// Backpressure: one worker busy, the one queue slot taken, and the next
/// connection is answered `503` with `Retry-After` at once — it is not left
/// waiting in a queue that has no room. The queued client is served later.
/// The worker is kept busy by a download its client does not read (a
/// partial head would not do: the poller model holds that connection, not a
/// worker).
#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let root = TempDir::site("stage3-backpressure", common::testkit::files::BIG);
    for (idle, queue) in [
        ("classic", "mutex"),
        ("classic", "crossbeam"),
        ("poller", "mutex"),
        ("poller", "crossbeam"),
    ] {
        let server = ServerProcess::serving(
            BIN,
            &root,
            &[
                "--idle",
                idle,
                "--threads",
                "1",
                "--queue-depth",
                "1",
                "--queue",
                queue,
                "--retry-after",
                "7",
            ],
        );
        // A's download holds the only worker: its socket is full.
        let mut a = stalled_download(server.addr);
        // B takes the only queue slot (connections are taken in order)...
        let mut b = Client::connect(server.addr);
        b.send(GET_ROOT);
        // ...so C finds the queue full.
        let start = Instant::now();
        let mut c = Client::connect(server.addr);
        c.send(GET_ROOT);
        let r = c.exact_response();
        assert_eq!(r.status, 503, "{idle}/{queue}: {r:?}");
        assert_eq!(r.header("Retry-After"), Some("7"), "{idle}/{queue}: {r:?}");
        assert_eq!(
            r.header("Connection"),
            Some("close"),
            "{idle}/{queue}: {r:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{idle}/{queue}: the 503 took {:?}",
            start.elapsed()
        );
        c.expect_closed();
        // Read A's download to its end: A, then B, are served.
        assert_eq!(a.exact_response().status, 200, "{idle}/{queue}");
        assert_eq!(b.exact_response().status, 200, "{idle}/{queue}");
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
        let mut s = Client::connect(server.addr);
        s.send(b"GET /__panic HTTP/1.1\r\nHost: t\r\n\r\n");
        s.expect_closed();
    }
    assert_eq!(threads_of(&server), threads_before);
    for _ in 0..4 {
        let mut s = Client::connect(server.addr);
        assert_eq!(s.get("/").status, 200);
    }
    // Without the flag the path is just a missing file.
    let server = ServerProcess::start(BIN, &["--threads", "1"]);
    let mut s = Client::connect(server.addr);
    assert_eq!(s.get("/__panic").status, 404);
}

/// Graceful shutdown: SIGTERM arrives while one large download is in
/// flight and two more connections wait in the queue. All three get
/// complete responses, the process exits 0, and it logs its stats.
#[test]
fn sigterm_finishes_in_flight_and_queued_connections() {
    const BIG: usize = 32 << 20;
    let root = TempDir::site("stage3-shutdown", BIG);
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
            root.arg(),
            "--error-log",
            error_log.to_str().unwrap(),
        ],
    );
    // A's download has begun, and cannot finish before we read it: 32 MiB
    // do not fit in the socket buffers, and A's receive window is small.
    let mut a = stalled_download(server.addr);
    // B and C wait in the queue; D's 503 proves both were accepted.
    let mut b = Client::connect(server.addr);
    b.send(GET_ROOT);
    let mut c = Client::connect(server.addr);
    c.send(GET_ROOT);
    let mut d = Client::connect(server.addr);
    d.send(GET_ROOT);
    assert_eq!(d.exact_response().status, 503);

    server.signal(Signal::SIGTERM);
    let (all, end) = a.read_until_closed();
    end.expect("A's download ends with a FIN");
    let body_at = find(&all, b"\r\n\r\n").expect("a response head") + 4;
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&all[..body_at])
    );
    assert_eq!(all.len() - body_at, BIG);
    // Each queued client closes once answered (the server's lingering
    // close waits for that before it moves on).
    for mut s in [b, c] {
        let r = s.exact_response();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
        assert_eq!(r.body, INDEX_HTML);
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
}

/// At SIGTERM an idle keep-alive connection is not closed under its
/// client, who may have sent its next request already: a request sent once
/// the shutdown has begun (the listener is closed) is answered, with
/// `Connection: close`, within `--last-request`. With `--last-request 0`
/// the worker closes the same connection as soon as it sees the shutdown,
/// unasked: the failing case, and what stage 3 did before.
#[test]
fn an_idle_connection_gets_one_last_request_at_shutdown() {
    let server = ServerProcess::start(BIN, &["--threads", "2", "--last-request", "10"]);
    let mut c = Client::connect(server.addr);
    assert_eq!(c.get("/").status, 200);
    server.signal(Signal::SIGTERM);
    common::testkit::eventually("the listener is closed", Duration::from_secs(10), || {
        std::net::TcpStream::connect(server.addr).is_err()
    });
    let last = c.get("/");
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(last.header("Connection"), Some("close"), "{last:?}");

    let server = ServerProcess::start(BIN, &["--threads", "2", "--last-request", "0"]);
    let mut c = Client::connect(server.addr);
    assert_eq!(c.get("/").status, 200);
    server.signal(Signal::SIGTERM);
    c.expect_closed();
}
