//! Many connections: 10,000 held idle, and the `--max-connections` limit.
//! (Slowloris, slow readers and running out of descriptors are the shared
//! abuse checks, in `tests/abuse.rs`.)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::testkit::fdlock::many_connections;
use support::{Root, get_on, read_response, start};

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
    let root = Root::create();
    let server = start(
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
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if i % 10 == 0 {
            assert_eq!(get_on(&mut s, "/index.html").0, 200, "connection {i}");
        }
        held.push(s);
    }
    let mut fresh = server.connect();
    assert_eq!(get_on(&mut fresh, "/index.html").0, 200);
    assert_eq!(get_on(&mut held[0], "/index.html").0, 200);
    assert_eq!(get_on(&mut held[N - 1], "/index.html").0, 200);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    assert!(fds > N, "the server holds every connection ({fds} fds)");
}

/// With `--max-connections 2` a third client waits in the kernel's accept
/// queue, and is served as soon as one of the two others leaves.
#[test]
fn max_connections_queues_new_clients_until_a_slot_frees() {
    let root = Root::create();
    let server = start(&root, &["--loops", "1", "--max-connections", "2"]);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(get_on(&mut a, "/index.html").0, 200);
    assert_eq!(get_on(&mut b, "/index.html").0, 200);
    let mut c = server.connect();
    c.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // A bounded check that nothing comes while the loop is full.
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = c
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
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_response(&mut c).0, 200);
    assert_eq!(get_on(&mut b, "/index.html").0, 200);
}
