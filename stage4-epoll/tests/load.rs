//! Many connections: 10,000 held idle, and the `--max-connections` limit.
//! (Slowloris, slow readers and running out of descriptors are the shared
//! abuse checks, in `tests/abuse.rs`.)

use std::io::Read;
use std::time::Duration;

use common::testkit::ServerProcess;
use common::testkit::client::Client;
use common::testkit::fdlock::many_connections;
use common::testkit::files::{BIG, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_stage4-epoll");

/// One event loop holds 10,000 idle connections (a tenth of them idle
/// keep-alive connections that were already served, the rest silent) and
/// still answers a new client at once; the oldest and the newest held
/// connections still work.
#[test]
fn ten_thousand_idle_connections_are_held_while_new_clients_are_served() {
    const N: usize = 10_000;
    // Ten thousand descriptors here and as many in the server: no other
    // test that holds many connections runs meanwhile.
    let fds = many_connections();
    let limit = fds.fd_limit;
    assert!(
        limit as usize > N + 100,
        "hard RLIMIT_NOFILE {limit} is too low"
    );
    let root = TempDir::site("stage4-load", BIG);
    let server = ServerProcess::serving(
        BIN,
        &root,
        &[
            "--loops",
            "1",
            "--header-timeout",
            "120",
            "--keepalive-timeout",
            "120",
        ],
    );
    let mut held = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = Client::connect(server.addr);
        if i % 10 == 0 {
            assert_eq!(c.get("/index.html").status, 200, "connection {i}");
        }
        held.push(c);
    }
    let mut fresh = Client::connect(server.addr);
    assert_eq!(fresh.get("/index.html").status, 200);
    assert_eq!(held[0].get("/index.html").status, 200);
    assert_eq!(held[N - 1].get("/index.html").status, 200);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    assert!(fds > N, "the server holds every connection ({fds} fds)");
}

/// With `--max-connections 2` a third client waits in the kernel's accept
/// queue, and is served as soon as one of the two others leaves.
#[test]
fn max_connections_queues_new_clients_until_a_slot_frees() {
    let root = TempDir::site("stage4-load", BIG);
    let server = ServerProcess::serving(BIN, &root, &["--loops", "1", "--max-connections", "2"]);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    assert_eq!(a.get("/index.html").status, 200);
    assert_eq!(b.get("/index.html").status, 200);
    let mut c = Client::connect(server.addr);
    c.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n");
    // A bounded check that nothing comes while the loop is full.
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = c
        .stream
        .read(&mut byte)
        .expect_err("no answer while the loop is full");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    drop(a);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(c.exact_response().status, 200);
    assert_eq!(b.get("/index.html").status, 200);
}
