//! What the event loop does with partial input, pipelining, large bodies
//! to slow readers, request bodies, and a graceful shutdown — over real
//! sockets against the real binary.

use std::net::TcpStream;
use std::time::Duration;

use common::testkit::abuse::stalled_download;
use common::testkit::client::{Client, find};
use common::testkit::files::{BIG, INDEX_HTML, TempDir, big_byte};
use common::testkit::{ServerProcess, eventually};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_stage4-epoll");

/// A request head that arrives one byte per `write` (and so, most likely,
/// over many `read`s and many readiness events) is answered normally.
#[test]
fn head_trickled_byte_by_byte_is_answered() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &[]);
    let mut c = Client::connect(server.addr);
    for b in b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n" {
        c.send(&[*b]);
        // Pausing makes separate segments likely; correctness never
        // depends on it.
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = c.exact_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, INDEX_HTML);
}

/// Sixteen pipelined requests sent in one `write` get sixteen responses in
/// the order asked, and the last one (`Connection: close`) ends the
/// connection.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &[]);
    let mut c = Client::connect(server.addr);
    let paths: Vec<String> = (0..16)
        .map(|i| match i % 3 {
            0 => "/index.html".to_string(),
            1 => format!("/missing-{i}"),
            _ => format!("/api/add?a={i}&b=1"),
        })
        .collect();
    let mut batch = String::new();
    for (i, p) in paths.iter().enumerate() {
        let close = if i == 15 { "Connection: close\r\n" } else { "" };
        batch.push_str(&format!("GET {p} HTTP/1.1\r\nHost: t\r\n{close}\r\n"));
    }
    c.send(batch.as_bytes());
    for (i, p) in paths.iter().enumerate() {
        let r = c.response(false);
        let (status, body) = (r.status, r.body);
        match i % 3 {
            0 => assert_eq!((status, &body[..]), (200, INDEX_HTML), "{p}"),
            1 => assert_eq!(status, 404, "{p}"),
            _ => {
                assert_eq!(status, 200, "{p}");
                let text = String::from_utf8_lossy(&body);
                assert!(text.contains(&(i + 1).to_string()), "{p}: {text}");
            }
        }
    }
    assert!(c.closed(), "nothing after the last response");
}

/// A client that reads a 16 MiB file through a 4 KiB window forces many
/// partial `sendfile`s; while it stalls, other clients of the same loop are
/// served; when it reads on, it gets every byte in order.
#[test]
fn slow_reader_of_a_large_file_does_not_block_others() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &["--loops", "1"]);
    // The slow client now reads nothing; the server's send buffer fills.
    let mut slow = stalled_download(server.addr);
    for _ in 0..20 {
        let mut c = Client::connect(server.addr);
        assert_eq!(c.get("/index.html").status, 200);
    }
    let r = slow.response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), BIG);
    let bad = r
        .body
        .iter()
        .enumerate()
        .position(|(i, &b)| b != big_byte(i));
    assert_eq!(bad, None, "body differs from the file");
}

/// A request body that arrives in pieces after its response is skipped,
/// and the next request on the connection is found and answered.
#[test]
fn request_body_is_skipped_across_reads() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &[]);
    let mut c = Client::connect(server.addr);
    c.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n");
    assert_eq!(c.exact_response().status, 200);
    for _ in 0..5 {
        c.send(&[b'x'; 10_000]);
    }
    assert_eq!(c.get("/index.html").status, 200);
}

/// SIGTERM closes an idle keep-alive connection (once `--last-request`,
/// 1 s by default, has passed without a request), stops accepting,
/// lets a download in flight finish completely, and the server exits 0.
#[test]
fn sigterm_closes_idle_connections_and_finishes_downloads() {
    let root = TempDir::site("stage4", BIG);
    let mut server = ServerProcess::serving(BIN, &root, &["--loops", "2"]);
    let mut idle = Client::connect(server.addr);
    assert_eq!(idle.get("/index.html").status, 200);
    let mut download = stalled_download(server.addr);

    server.signal(Signal::SIGTERM);
    // The idle connection is closed silently.
    idle.expect_closed();
    // The listeners close once both loops have seen the shutdown.
    eventually(
        "new connections are refused after SIGTERM",
        Duration::from_secs(5),
        || TcpStream::connect(server.addr).is_err(),
    );

    let (all, end) = download.read_until_closed();
    assert!(end.is_ok(), "the download ends with a FIN, not {end:?}");
    let head_end = find(&all, b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&all[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(all.len() - head_end, BIG, "the whole file arrives");
    let status = server.wait_timeout(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status}");
}

/// A client that says `Connection: close` sends nothing after its request,
/// so once the answer is out the server closes at once, without the
/// lingering close (a FIN, then reading until the client's FIN or two
/// seconds): the client still holds its socket open here, and the server's
/// connection is gone long before the linger time. A server that asked
/// for the close itself (pipelined bytes unread, a keep-alive client) still
/// lingers, which the conformance suite's pipelining cases hold it to.
#[test]
fn a_client_that_said_close_is_let_go_without_lingering() {
    let root = TempDir::site("stage4", BIG);
    let server = ServerProcess::serving(BIN, &root, &[]);
    let mut c = Client::connect(server.addr);
    c.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.exact_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, INDEX_HTML);
    c.expect_closed();
    // Only the status request's own connection is open; with a lingering
    // close, `c`'s would be for common::limits::LINGER_TIME (2 s).
    let bound = common::limits::LINGER_TIME - Duration::from_millis(500);
    common::testkit::status::wait_for(
        server.addr,
        "only the scrape's connection open",
        bound,
        |page| common::testkit::status::value(page, "http_connections_active") == Some(1),
    );
    drop(c);
}
