//! Every timeout of the state machine, driven by the loop's timer heap:
//! header, keep-alive and send.

use std::time::Duration;

use common::testkit::ServerProcess;
use common::testkit::abuse::stalled_download;
use common::testkit::client::Client;
use common::testkit::files::{BIG, TempDir};
use common::testkit::status;

const BIN: &str = env!("CARGO_BIN_EXE_stage4-epoll");

/// A request head that stops half-way gets `408 Request Timeout` once the
/// header timeout passes, and the connection closes.
#[test]
fn unfinished_head_gets_408_after_header_timeout() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &["--header-timeout", "0.3"]);
    let mut c = Client::connect(server.addr);
    c.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\n");
    assert_eq!(c.exact_response().status, 408);
    c.expect_closed();
}

/// A connection that never sends a byte is closed silently when the
/// header timeout passes (no 408: no request had begun).
#[test]
fn silent_connection_is_closed_quietly() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &["--header-timeout", "0.3"]);
    Client::connect(server.addr).expect_closed();
}

/// A keep-alive connection that stays idle after a response is closed
/// silently after the keep-alive timeout.
#[test]
fn idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &["--keepalive-timeout", "0.3"]);
    let mut c = Client::connect(server.addr);
    assert_eq!(c.get("/index.html").status, 200);
    assert_eq!(c.get("/index.html").status, 200);
    c.expect_closed();
}

/// A client that stops reading a large download is dropped once no write
/// made progress for the send timeout (the status page counts a send
/// timeout): it gets less than the whole file. Meanwhile other clients are
/// served.
#[test]
fn stalled_download_is_dropped_after_send_timeout() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &["--send-timeout", "0.3", "--loops", "1"]);
    // The stall is the scenario: read nothing until the server gives up.
    let mut stalled = stalled_download(server.addr);
    for _ in 0..10 {
        let mut other = Client::connect(server.addr);
        assert_eq!(other.get("/index.html").status, 200);
    }
    status::wait_for(
        server.addr,
        "a send timeout",
        Duration::from_secs(30),
        |page| {
            status::samples(page, "http_timeouts_total")
                .iter()
                .any(|&(kind, n)| kind == "kind=\"send\"" && n > 0)
        },
    );
    let (all, _) = stalled.read_until_closed();
    assert!(
        all.len() < BIG,
        "the server gave up: only {} bytes arrived",
        all.len()
    );
}
