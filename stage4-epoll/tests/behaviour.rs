//! What the event loop does with partial input, pipelining, large bodies
//! to slow readers, request bodies, and a graceful shutdown — over real
//! sockets against the real binary.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::testkit::client::Client;
use nix::sys::signal::Signal;
use support::{
    BIG, Root, big_byte, get_on, read_response, read_until_closed, small_window_connect, start,
};

/// A request head that arrives one byte per `write` (and so, most likely,
/// over many `read`s and many readiness events) is answered normally.
#[test]
fn head_trickled_byte_by_byte_is_answered() {
    let root = Root::create();
    let server = start(&root, &[]);
    let mut s = server.connect();
    for b in b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
        // Pausing makes separate segments likely; correctness never
        // depends on it.
        std::thread::sleep(Duration::from_millis(2));
    }
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(body.starts_with(b"<!DOCTYPE html>"));
}

/// Sixteen pipelined requests sent in one `write` get sixteen responses in
/// the order asked, and the last one (`Connection: close`) ends the
/// connection.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let root = Root::create();
    let server = start(&root, &[]);
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
            0 => assert_eq!((status, &body[..15]), (200, &b"<!DOCTYPE html>"[..]), "{p}"),
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
    let root = Root::create();
    let server = start(&root, &["--loops", "1"]);
    let mut slow = small_window_connect(server.addr);
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    let n = slow.read(&mut first).unwrap();
    assert!(n > 0);
    // The slow client now reads nothing; the server's send buffer fills.
    for _ in 0..20 {
        let mut s = server.connect();
        let (status, _) = get_on(&mut s, "/index.html");
        assert_eq!(status, 200);
    }
    let mut all = first[..n].to_vec();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = slow.read(&mut chunk).unwrap();
        all.extend_from_slice(&chunk[..n]);
    };
    while all.len() < head_end + BIG {
        let n = slow.read(&mut chunk).expect("the rest of the body");
        assert!(n > 0, "closed after {} body bytes", all.len() - head_end);
        all.extend_from_slice(&chunk[..n]);
    }
    let body = &all[head_end..];
    assert_eq!(body.len(), BIG);
    let bad = body.iter().enumerate().position(|(i, &b)| b != big_byte(i));
    assert_eq!(bad, None, "body differs from the file");
}

/// A request body that arrives in pieces after its response is skipped,
/// and the next request on the connection is found and answered.
#[test]
fn request_body_is_skipped_across_reads() {
    let root = Root::create();
    let server = start(&root, &[]);
    let mut s = server.connect();
    s.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n")
        .unwrap();
    let (status, _) = read_response(&mut s);
    assert_eq!(status, 200);
    for _ in 0..5 {
        s.write_all(&[b'x'; 10_000]).unwrap();
    }
    let (status, _) = get_on(&mut s, "/index.html");
    assert_eq!(status, 200);
}

/// SIGTERM closes an idle keep-alive connection at once, stops accepting,
/// lets a download in flight finish completely, and the server exits 0.
#[test]
fn sigterm_closes_idle_connections_and_finishes_downloads() {
    let root = Root::create();
    let mut server = start(&root, &["--loops", "2"]);
    let mut idle = server.connect();
    assert_eq!(get_on(&mut idle, "/index.html").0, 200);
    let mut download = small_window_connect(server.addr);
    download
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 4096];
    let n = download.read(&mut first).unwrap();
    assert!(n > 0);

    server.signal(Signal::SIGTERM);
    let (rest, _) = read_until_closed(&mut idle);
    assert!(rest.is_empty(), "the idle connection is closed silently");
    // The listeners close once both loops have seen the shutdown.
    let refused = (0..250).any(|_| {
        let r = TcpStream::connect(server.addr).is_err();
        if !r {
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    });
    assert!(refused, "new connections are refused after SIGTERM");

    let (rest, clean) = read_until_closed(&mut download);
    assert!(clean, "the download ends with a FIN, not a reset");
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let all = &all[..];
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(all.len() - head_end, BIG, "the whole file arrives");
    let status = server.wait_timeout(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status}");
}
