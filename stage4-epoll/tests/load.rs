//! Many connections: 10,000 held idle, a slowloris crowd, the
//! `--max-connections` limit, and running out of file descriptors.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::testkit::fdlock::many_connections;
use support::{Root, cpu_ticks, get_on, read_response, start};

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

/// 200 slowloris connections, each sending a header byte every 100 ms, do
/// not stop normal clients from being served meanwhile.
#[test]
fn slowloris_crowd_does_not_stop_normal_clients() {
    let _fds = many_connections();
    let root = Root::create();
    let server = start(&root, &["--loops", "1", "--header-timeout", "5"]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let crowd = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..200)
                .map(|_| {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
                    s
                })
                .collect();
            while !stop.load(Ordering::SeqCst) {
                for s in &mut conns {
                    // A reset means the server dropped it: fine too.
                    let _ = s.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let mut s = server.connect();
        assert_eq!(get_on(&mut s, "/index.html").0, 200);
        served += 1;
    }
    stop.store(true, Ordering::SeqCst);
    crowd.join().unwrap();
    assert!(served > 0);
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

/// Out of file descriptors (`EMFILE`), the loop pauses accepting instead of
/// retrying at 100% CPU, and accepts again once descriptors are free.
#[test]
fn running_out_of_descriptors_pauses_accepting_without_spinning() {
    let root = Root::create();
    let server = start(&root, &["--loops", "1", "--max-fds", "48"]);
    // More connections than the server has descriptors for: the kernel
    // completes every handshake, the server accepts as many as it can.
    let held: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.pid()) - before;
    // Spinning on accept would burn ~100 ticks (1 s) here.
    assert!(used < 50, "the server used {used} ticks of CPU in 1 s");
    drop(held);
    let mut s = server.connect();
    assert_eq!(get_on(&mut s, "/index.html").0, 200);
}
