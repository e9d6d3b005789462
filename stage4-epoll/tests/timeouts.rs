//! Every timeout of the state machine, driven by the loop's timer heap:
//! header, keep-alive and send.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{BIG, Root, get_on, read_response, read_until_closed, small_window_connect, start};

/// A request head that stops half-way gets `408 Request Timeout` once the
/// header timeout passes, and the connection closes.
#[test]
fn unfinished_head_gets_408_after_header_timeout() {
    let root = Root::create();
    let server = start(&root, &["--header-timeout", "0.3"]);
    let mut s = server.connect();
    s.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let (status, _) = read_response(&mut s);
    assert_eq!(status, 408);
    let (rest, _) = read_until_closed(&mut s);
    assert!(rest.is_empty());
}

/// A connection that never sends a byte is closed silently when the
/// header timeout passes (no 408: no request had begun).
#[test]
fn silent_connection_is_closed_quietly() {
    let root = Root::create();
    let server = start(&root, &["--header-timeout", "0.3"]);
    let mut s = server.connect();
    let (bytes, _) = read_until_closed(&mut s);
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
}

/// A keep-alive connection that stays idle after a response is closed
/// silently after the keep-alive timeout.
#[test]
fn idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let root = Root::create();
    let server = start(&root, &["--keepalive-timeout", "0.3"]);
    let mut s = server.connect();
    assert_eq!(get_on(&mut s, "/index.html").0, 200);
    assert_eq!(get_on(&mut s, "/index.html").0, 200);
    let (bytes, _) = read_until_closed(&mut s);
    assert!(bytes.is_empty());
}

/// A client that stops reading a large download is dropped once no write
/// made progress for the send timeout: it gets less than the whole file.
/// Meanwhile other clients are served.
#[test]
fn stalled_download_is_dropped_after_send_timeout() {
    let root = Root::create();
    let server = start(&root, &["--send-timeout", "0.3", "--loops", "1"]);
    let mut stalled = small_window_connect(server.addr);
    stalled
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    assert!(stalled.read(&mut first).unwrap() > 0);
    // The stall is the scenario: read nothing for several send timeouts.
    for _ in 0..10 {
        let mut other = server.connect();
        assert_eq!(get_on(&mut other, "/index.html").0, 200);
        std::thread::sleep(Duration::from_millis(150));
    }
    let (rest, _) = read_until_closed(&mut stalled);
    assert!(
        rest.len() + 1024 < BIG,
        "the server gave up: only {} bytes arrived",
        rest.len()
    );
}
