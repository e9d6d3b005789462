//! Fuzz target: the request parser and the connection state machine.
//!
//! Every input is used three ways:
//!
//! 1. `parse::parse` on the whole input, as if it were one read;
//! 2. a `Conn` driven the way every stage drives it, with the whole input
//!    in the buffer at once (as `identical_to_core` in the conformance
//!    suite does);
//! 3. the same, but the bytes arrive in reads of 1–16 bytes (the size taken
//!    from the first byte), which exercises `Partial` heads and request
//!    bodies skipped across reads; the high bit of the first byte also sets
//!    `draining` (the server is shutting down). This run's site has tiny
//!    limits ([`SMALL`]), so that the 414/431/413 paths are reachable with
//!    the short inputs libFuzzer prefers (the default limits need 8–16 KiB).
//!
//! The same input is also fed, as a chunked request body, to
//! `chunked::Decoder`, whole and in pieces.
//!
//! Properties (a failed `assert!` is a crash libFuzzer reports):
//!
//! - nothing panics;
//! - the chunked decoder reaches the same outcome (the same end, or the same
//!   error) however its input is split, and never uses more than it is given;
//! - a complete head claims at least one byte and no more than it was given;
//! - `Conn::next` never uses more bytes than it was given, and makes progress
//!   whenever it answers and keeps the connection open;
//! - every response is one well-formed head (`HTTP/1.1 NNN reason`, header
//!   lines `Name: value` ended by CRLF, no bare CR or LF, an empty line)
//!   followed by exactly `body_len` body bytes, in the buffer or in the file
//!   region; `Content-Length` says the same when there is a body; a HEAD
//!   response has no body;
//! - a file region lies inside its file;
//! - no response contains the secret that sits just outside the root
//!   (unless the request itself carried its text: a redirect repeats the
//!   query string);
//! - a `Location` header is a path on this server, never `//host/...`;
//! - after a response that closes the connection, the next step is `Close`.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use common::http::chunked;
use common::http::parse::{self, Limits, Method, Status};
use common::http::{Conn, Reply, Site, Step};
use common::logging::AccessLog;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "the fixture module is shared with resolve_path")]
mod fixture;

/// Limits small enough for a fuzzer to cross each of them.
const SMALL: Limits = Limits {
    max_request_line: 48,
    max_head: 160,
    max_headers: 6,
    max_body: 64,
};

/// The site over the fixture root, with the default limits or [`SMALL`].
fn site(small: bool) -> &'static Site {
    static SITES: OnceLock<[Site; 2]> = OnceLock::new();
    let make = |limits| {
        let mut site = Site::new(
            &fixture::fixture().root,
            "fuzz",
            Some(std::path::Path::new("errors")),
            AccessLog::disabled(),
        )
        .expect("the fixture root exists");
        site.limits = limits;
        site
    };
    &SITES.get_or_init(|| [make(Limits::default()), make(SMALL)])[usize::from(small)]
}

fuzz_target!(|data: &[u8]| {
    // 1. The parser alone, with the default and the small limits.
    for limits in [Limits::default(), SMALL] {
        if let Ok(Status::Complete(req)) = parse::parse(data, &limits) {
            assert!(req.head_len > 0, "an empty complete head");
            assert!(
                req.head_len <= data.len(),
                "head_len {} > input {}",
                req.head_len,
                data.len()
            );
            assert!(
                req.head_len <= limits.max_head,
                "a head over the limit was accepted"
            );
        }
    }

    // The chunked-body decoder alone: split into pieces or whole, the input
    // decodes to the same outcome (complete at the same byte, or the same
    // error), and never claims more bytes than it was given.
    // The body is what follows the first empty line, if there is one.
    let body = find(data, b"\r\n\r\n").map_or(data, |i| &data[i + 4..]);
    check_chunked(body);

    // 2. One read holding everything, default limits.
    drive(site(false), data, data.len().max(1), false);

    // 3. Small reads, small limits.
    let first = data.first().copied().unwrap_or(0);
    drive(
        site(true),
        data,
        usize::from(first & 0x0f) + 1,
        first & 0x80 != 0,
    );
});

/// Feeds `data` to a fresh `Conn` in reads of `chunk` bytes and checks every
/// step, until the connection wants input that is not there or closes.
fn drive(site: &Site, data: &[u8], chunk: usize, draining: bool) {
    // A request may carry the secret's text itself (the fuzzer finds it in
    // the comparison operands), and a redirect repeats the query string:
    // the buffer is then allowed to contain it. File regions never are.
    let sent_secret = find(data, fixture::SECRET).is_some();
    let mut conn = Conn::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut input: Vec<u8> = Vec::new();
    let mut rest = data;
    let mut closed_after_response = false;
    // Each round either uses a byte, reads a chunk, or ends the loop, so
    // this bound is never reached unless `next` stops making progress.
    let max_rounds = 2 * data.len() + 8;
    for _ in 0..max_rounds {
        // Whether the next response answers a HEAD: the request the Conn
        // is about to parse, or the one whose chunked body it is reading.
        let head_request = match conn.pending_head() {
            Some(head) => is_head_request(head, &site.limits),
            None => !conn.skipping_body() && is_head_request(&input, &site.limits),
        };
        // ANCHOR: drive
        let mut out = Vec::new();
        let (used, step) = conn.next(&input, site, draining, &mut out);
        assert!(used <= input.len(), "used {used} of {} bytes", input.len());
        if closed_after_response {
            assert!(
                matches!(step, Step::Close),
                "a step other than Close after Connection: close: {step:?}"
            );
            return;
        }
        input.drain(..used);
        match step {
            Step::Respond(reply) => {
                check_response(&out, &reply, head_request, sent_secret);
                if reply.keep_alive {
                    assert!(used > 0, "a keep-alive response that used no input");
                } else {
                    closed_after_response = true;
                }
            }
            Step::NeedInput => {
                assert!(out.is_empty(), "NeedInput wrote {} bytes", out.len());
                if rest.is_empty() {
                    return;
                }
                let n = chunk.min(rest.len());
                input.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            Step::Close => {
                assert!(out.is_empty(), "Close wrote {} bytes", out.len());
                return;
            }
        }
        // ANCHOR_END: drive
    }
    panic!("Conn::next made no progress in {max_rounds} rounds");
}

/// Feeds `data` to a chunked-body decoder whole, then in pieces of 1–8
/// bytes, and compares.
fn check_chunked(data: &[u8]) {
    let whole = chunked::Decoder::new(SMALL.max_body, SMALL.max_head).feed(data);
    if let Ok((used, _)) = whole {
        assert!(used <= data.len(), "the decoder used more than it was given");
    }
    let mut d = chunked::Decoder::new(SMALL.max_body, SMALL.max_head);
    let step = usize::from(data.first().copied().unwrap_or(0) % 8) + 1;
    let mut used = 0;
    let mut split = Ok((0, false));
    for piece in data.chunks(step) {
        match d.feed(piece) {
            Ok((n, true)) => {
                split = Ok((used + n, true));
                break;
            }
            Ok((n, false)) => {
                assert_eq!(n, piece.len(), "a partial body uses all its input");
                used += n;
                split = Ok((used, false));
            }
            Err(e) => {
                split = Err(e);
                break;
            }
        }
    }
    assert_eq!(whole, split, "splitting changed the outcome");
}

/// Whether `input` starts with a complete HEAD request head.
fn is_head_request(input: &[u8], limits: &Limits) -> bool {
    matches!(
        parse::parse(input, limits),
        Ok(Status::Complete(r)) if r.method == Method::Head
    )
}

/// Checks one response: `out` holds its head and any in-memory body, and
/// `reply` says the rest.
fn check_response(out: &[u8], reply: &Reply, head_request: bool, sent_secret: bool) {
    assert!(
        out.starts_with(b"HTTP/1.1 "),
        "response does not start with the status line: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(64)])
    );
    let head_end = find(out, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(out)))
        + 4;
    let head = &out[..head_end];
    let text = std::str::from_utf8(head)
        .unwrap_or_else(|_| panic!("the head is not UTF-8: {:?}", String::from_utf8_lossy(head)));

    // The status line and the header lines.
    let mut lines = text[..text.len() - 4].split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line.get(9..12).unwrap_or_default();
    assert_eq!(
        code,
        reply.status.to_string(),
        "status line {status_line:?} vs reply {}",
        reply.status
    );
    assert!(
        status_line.as_bytes().get(12) == Some(&b' '),
        "bad status line {status_line:?}"
    );
    let mut content_length = None;
    for line in lines {
        assert!(
            !line.contains(['\r', '\n']),
            "bare CR or LF in header line {line:?}"
        );
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("header line without ': ' {line:?}"));
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "bad header name in {line:?}"
        );
        if name.eq_ignore_ascii_case("content-length") {
            assert!(content_length.is_none(), "two Content-Length headers");
            content_length = Some(
                value
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("bad Content-Length {value:?}")),
            );
        }
        if name.eq_ignore_ascii_case("location") {
            assert!(
                value.starts_with('/') && !value.starts_with("//") && !value.starts_with("/\\"),
                "Location {value:?} is not a path on this server (open redirect)"
            );
        }
    }

    // The body: in the buffer, in a file region, or both (never both today).
    let in_buffer = (out.len() - head_end) as u64;
    let in_file = reply.file.as_ref().map_or(0, |r| r.len);
    assert_eq!(
        in_buffer + in_file,
        reply.body_len,
        "body bytes sent ({in_buffer} in buffer + {in_file} in file) != body_len {}",
        reply.body_len
    );
    if head_request {
        assert_eq!(reply.body_len, 0, "a HEAD response with a body");
    }
    if reply.body_len > 0 {
        assert_eq!(
            content_length,
            Some(reply.body_len),
            "Content-Length disagrees with the body sent"
        );
    }
    assert!(
        sent_secret || find(out, fixture::SECRET).is_none(),
        "the secret leaked into the buffer"
    );
    if let Some(region) = &reply.file {
        let size = region
            .file
            .metadata()
            .expect("fstat the region's file")
            .len();
        assert!(
            region
                .offset
                .checked_add(region.len)
                .is_some_and(|end| end <= size),
            "file region {}+{} outside a file of {size} bytes",
            region.offset,
            region.len
        );
        let mut body = vec![0; region.len as usize];
        region
            .file
            .read_exact_at(&mut body, region.offset)
            .expect("read the file region");
        assert!(
            find(&body, fixture::SECRET).is_none(),
            "the secret leaked through a file region"
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
