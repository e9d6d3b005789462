//! The sans-IO HTTP/1.1 connection: bytes in, responses out.
//!
//! A [`Conn`] knows everything about one connection that is *not* I/O:
//! where one request ends and the next begins, which body bytes to skip,
//! whether the connection stays open, and what to answer. Every stage drives
//! it the same way:
//!
//! ```text
//! loop {
//!     let (used, step) = conn.next(&input, &site, draining, &mut out);
//!     input.drain(..used);
//!     match step {
//!         Step::NeedInput => read more bytes into `input` (or time out),
//!         Step::Respond(reply) => send `out`, then `reply.file` if any,
//!         Step::Close => close the connection,
//!     }
//! }
//! ```
//!
//! Because this logic is shared, the four HTTP stages cannot disagree about
//! HTTP: they differ only in how they wait for sockets.

use std::net::IpAddr;

use super::chunked::Decoder;
use super::parse::{self, BodyFraming, Method, Request, Status};
use super::response::Persist;
use super::site::{Reply, Site, error, respond, status_page};
use crate::logging::AccessEntry;

/// What the stage must do next.
#[derive(Debug)]
pub enum Step {
    /// The head is incomplete, or body bytes are still being skipped: read
    /// more input.
    NeedInput,
    /// A response was appended to `out`: send it, then `reply.file` if any.
    /// If `reply.keep_alive` is false, close (gracefully) after sending.
    Respond(Reply),
    /// Nothing more to send on this connection: close it.
    Close,
}

/// The per-connection state. Small (a few words), so that an idle
/// keep-alive connection costs little memory.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The client's address, for the access log.
    peer: IpAddr,
    /// Request-body bytes still to be read and discarded (a
    /// `Content-Length` body whose request was already answered).
    skip: u64,
    /// A request with a chunked body that is being read. It is answered
    /// once the body has ended, so that a malformed or oversized body gets
    /// its `400`/`413` instead of a second response. Boxed: rare, and an
    /// idle connection should not pay for it.
    chunked: Option<Box<Pending>>,
    /// A response with `Connection: close` has been produced: whatever the
    /// client sends next is ignored.
    closing: bool,
    /// The client said its request was its last (`Connection: close`, or
    /// HTTP/1.0 without keep-alive), and all of it was read: it will send
    /// nothing more, so the server may close without lingering.
    peer_done: bool,
    /// Requests answered on this connection (a `u32`: an idle connection
    /// should cost little; it stops counting at 4 billion).
    served: u32,
}

/// A request head waiting for the end of its chunked body.
#[derive(Debug, Clone)]
struct Pending {
    /// A copy of the head (the input buffer moves on while the body is
    /// decoded); it is parsed again, cheaply, when the body ends.
    head: Box<[u8]>,
    /// Where the body is.
    body: Decoder,
}

impl Conn {
    /// A new connection from `peer`.
    pub fn new(peer: IpAddr) -> Conn {
        Conn {
            peer,
            skip: 0,
            chunked: None,
            closing: false,
            peer_done: false,
            served: 0,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Marks the connection for closing after what was produced, for a
    /// response the stage wrote itself (stage 4's reverse proxy).
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        u64::from(self.served)
    }

    /// True once the connection is to be closed after what was produced.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// True once the client has said its request was its last and the
    /// whole request (head and body) has been read: closing now cannot
    /// cross anything the client still sends, so there is nothing to
    /// linger for (nginx's `lingering_close on` makes the same call).
    pub fn peer_done(&self) -> bool {
        self.peer_done
    }

    /// True while request-body bytes are still expected (a request has
    /// begun: the stage waits with the header timeout, not the keep-alive
    /// one).
    pub fn skipping_body(&self) -> bool {
        self.skip > 0 || self.chunked.is_some()
    }

    /// The head of the request whose chunked body is being read, if any
    /// (it is answered when the body ends).
    pub fn pending_head(&self) -> Option<&[u8]> {
        self.chunked.as_deref().map(|p| &p.head[..])
    }

    // ANCHOR: conn_next
    /// Consumes from `input` what it can and decides the next step. Returns
    /// the number of bytes of `input` used up (the caller drops them). With
    /// `draining` (the server is shutting down) the next response says
    /// `Connection: close`.
    pub fn next(
        &mut self,
        input: &[u8],
        site: &Site,
        draining: bool,
        out: &mut Vec<u8>,
    ) -> (usize, Step) {
        if self.closing {
            return (input.len(), Step::Close);
        }
        let mut used = 0;
        if self.skip > 0 {
            let n = self.skip.min(input.len() as u64);
            self.skip -= n;
            used = n as usize;
            if self.skip > 0 {
                return (used, Step::NeedInput);
            }
        }
        if self.chunked.is_some() {
            return self.read_chunked(input, used, site, draining, out);
        }
        let buf = &input[used..];
        match parse::parse(buf, &site.limits) {
            Ok(Status::Partial) => (used, Step::NeedInput),
            Err(e) => {
                let reply = self.fail(site, e.status(), false, first_line(buf), out);
                (input.len(), Step::Respond(reply))
            }
            Ok(Status::Complete(req)) => {
                let mut keep_alive = req.wants_keep_alive() && !draining;
                let after_head = (buf.len() - req.head_len) as u64;
                let mut consumed = req.head_len as u64;
                match req.body {
                    BodyFraming::Length(n) if n <= after_head => consumed += n,
                    BodyFraming::Length(n) => {
                        consumed += after_head;
                        self.skip = n - after_head;
                        // A client waiting for `100 Continue` will not send
                        // the body at all: do not wait for it.
                        if req.expect_continue {
                            keep_alive = false;
                        }
                    }
                    // The same for a chunked body that has not begun.
                    BodyFraming::Chunked if req.expect_continue && after_head == 0 => {
                        keep_alive = false;
                    }
                    // Otherwise the body is read first and the request
                    // answered when it ends.
                    BodyFraming::Chunked => {
                        self.chunked = Some(Box::new(Pending {
                            head: buf[..req.head_len].into(),
                            body: Decoder::new(site.limits.max_body, site.limits.max_head),
                        }));
                        return self.read_chunked(input, used + req.head_len, site, draining, out);
                    }
                }
                self.peer_done = !req.wants_keep_alive() && self.skip == 0;
                let reply = self.answer(&req, site, keep_alive, first_line(buf), out);
                (used + consumed as usize, Step::Respond(reply))
                // ANCHOR_END: conn_next
            }
        }
    }

    /// Feeds `input[used..]` to the pending chunked body; once it ends,
    /// answers the request it belongs to.
    fn read_chunked(
        &mut self,
        input: &[u8],
        used: usize,
        site: &Site,
        draining: bool,
        out: &mut Vec<u8>,
    ) -> (usize, Step) {
        let Some(mut pending) = self.chunked.take() else {
            return (used, Step::NeedInput);
        };
        match pending.body.feed(&input[used..]) {
            Ok((n, false)) => {
                self.chunked = Some(pending);
                (used + n, Step::NeedInput)
            }
            Err(e) => {
                // The answer to a HEAD has no body, even an error's.
                let head_only = matches!(
                    parse::parse(&pending.head, &site.limits),
                    Ok(Status::Complete(req)) if req.method == Method::Head
                );
                let reply = self.fail(site, e.status(), head_only, first_line(&pending.head), out);
                (input.len(), Step::Respond(reply))
            }
            Ok((n, true)) => {
                // The head parsed before it was copied, so it parses again.
                let reply = match parse::parse(&pending.head, &site.limits) {
                    Ok(Status::Complete(req)) => {
                        let keep_alive = req.wants_keep_alive() && !draining;
                        self.answer(&req, site, keep_alive, first_line(&pending.head), out)
                    }
                    _ => self.fail(site, 500, false, first_line(&pending.head), out),
                };
                (used + n, Step::Respond(reply))
            }
        }
    }

    /// Answers a complete request (and its body, if any, is behind it).
    fn answer(
        &mut self,
        req: &Request<'_>,
        site: &Site,
        keep_alive: bool,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Reply {
        let reply = match &site.status {
            // The status page is answered to loopback clients only,
            // unless configured otherwise; to others it does not exist.
            // It is not rate-limited: monitoring must see an overload.
            Some(page) if req.path == page.path && page.allows(self.peer) => {
                status_page(req, site, page, keep_alive, out)
            }
            _ => match self.rate_limited(site) {
                Some(retry_after) => {
                    let persist = Persist::new(req.version, keep_alive);
                    let retry = retry_after.to_string();
                    let head_only = req.method == Method::Head;
                    site.counters.limited();
                    super::site::write_error(
                        site,
                        429,
                        persist,
                        head_only,
                        &[("Retry-After", &retry)],
                        out,
                    )
                }
                None => respond(req, site, keep_alive, out),
            },
        };
        self.log(site, line, Some(req), &reply);
        self.served = self.served.saturating_add(1);
        if !reply.keep_alive {
            self.closing = true;
        }
        reply
    }

    /// `--rate-limit`: `Some(seconds to wait)` if this client has used up
    /// its requests for now.
    fn rate_limited(&self, site: &Site) -> Option<u32> {
        use super::ratelimit::Verdict;
        match site
            .rate_limit
            .as_ref()?
            .check(self.peer, std::time::Instant::now())
        {
            Verdict::Allow => None,
            Verdict::Limit { retry_after_secs } => Some(retry_after_secs),
        }
    }

    /// Answers an error that ends the connection (the request, or its
    /// body, can never be read correctly).
    fn fail(
        &mut self,
        site: &Site,
        status: u16,
        head_only: bool,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Reply {
        self.closing = true;
        let reply = error(site, status, Persist::Close, head_only, out);
        self.log(site, line, None, &reply);
        reply
    }

    /// The header-read timeout fired with `input` still unparsed: if a
    /// request had begun, answer `408` (and close); otherwise close quietly.
    pub fn timeout(&mut self, input: &[u8], site: &Site, out: &mut Vec<u8>) -> Option<Reply> {
        let begun = self.chunked.take().is_some()
            || (!self.closing && self.skip == 0 && input.iter().any(|&b| b != b'\r' && b != b'\n'));
        self.closing = true;
        if !begun {
            return None;
        }
        let reply = error(site, 408, Persist::Close, false, out);
        self.log(site, b"", None, &reply);
        Some(reply)
    }

    /// Answers a connection the server cannot take (`503` with
    /// `Retry-After`), without reading its request.
    pub fn reject_busy(&mut self, site: &Site, retry_after_secs: u32, out: &mut Vec<u8>) -> Reply {
        self.closing = true;
        let retry = retry_after_secs.to_string();
        let reply = super::site::write_error(
            site,
            503,
            Persist::Close,
            false,
            &[("Retry-After", &retry)],
            out,
        );
        self.log(site, b"", None, &reply);
        reply
    }

    /// Counts the response and writes its access-log line.
    fn log(&self, site: &Site, line: &[u8], req: Option<&Request<'_>>, reply: &Reply) {
        site.counters.response(reply.status, reply.body_len);
        site.access_log.log(&AccessEntry {
            peer: self.peer,
            request_line: line,
            status: reply.status,
            bytes: reply.body_len,
            referer: req.and_then(|r| r.referer),
            user_agent: req.and_then(|r| r.user_agent),
        });
    }
}

/// The first line of a request, as sent, for the access log (at most 1 KiB).
pub fn first_line(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(rest.len())
        .min(1024);
    let line = &rest[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::logging::AccessLog;

    /// A document root with one file, removed on drop.
    struct Root(PathBuf);

    impl Root {
        fn new(name: &str) -> (Root, Site) {
            let dir = std::env::temp_dir().join(format!(
                "conn-{}-{name}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("a.txt"), "aaaa").unwrap();
            let mut site = Site::new(&dir, "test", None, AccessLog::disabled()).unwrap();
            site.limits.max_body = 100;
            (Root(dir), site)
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Feeds `pieces` one after another, as separate reads, and returns the
    /// status codes answered and whether the connection stayed open.
    fn drive(site: &Site, pieces: &[&[u8]]) -> (Vec<u16>, bool) {
        let mut conn = Conn::new("127.0.0.1".parse().unwrap());
        let mut input = Vec::new();
        let mut statuses = Vec::new();
        for piece in pieces {
            input.extend_from_slice(piece);
            loop {
                let mut out = Vec::new();
                let (used, step) = conn.next(&input, site, false, &mut out);
                assert!(used <= input.len());
                input.drain(..used);
                match step {
                    Step::Respond(reply) => statuses.push(reply.status),
                    Step::NeedInput => break,
                    Step::Close => return (statuses, false),
                }
            }
        }
        (statuses, !conn.closing())
    }

    /// The status page's source in these tests: one line.
    #[derive(Debug)]
    struct OneLine;

    impl crate::http::StatusSource for OneLine {
        fn render(&self, out: &mut String) {
            out.push_str("up 1\n");
        }
    }

    /// What a client at `peer` gets for the status page.
    fn status_for(site: &Site, peer: &str) -> u16 {
        let mut conn = Conn::new(peer.parse().unwrap());
        let mut out = Vec::new();
        let req = b"GET /server-status HTTP/1.1\r\nHost: t\r\n\r\n";
        match conn.next(req, site, false, &mut out).1 {
            Step::Respond(reply) => reply.status,
            other => panic!("{other:?}"),
        }
    }

    /// `--status-allow`: the page goes to loopback and to the allowed
    /// networks only (a balancer's health checks, a monitoring host);
    /// any other client gets 404, as if it did not exist; with
    /// `--status-remote true`, to everyone.
    #[test]
    fn the_status_page_goes_to_loopback_and_allowed_networks_only() {
        let (_root, mut site) = Root::new("status-allow");
        let page = |allow: &[&str], remote: bool| crate::http::site::StatusPage {
            path: "/server-status".into(),
            allow_remote: remote,
            allow: allow.iter().map(|n| n.parse().unwrap()).collect(),
            source: std::sync::Arc::new(OneLine),
        };
        site.status = Some(page(&[], false));
        assert_eq!(status_for(&site, "127.0.0.1"), 200);
        assert_eq!(status_for(&site, "::1"), 200);
        assert_eq!(status_for(&site, "198.18.0.2"), 404);
        site.status = Some(page(&["198.18.0.2", "10.1.0.0/16"], false));
        assert_eq!(status_for(&site, "198.18.0.2"), 200);
        assert_eq!(status_for(&site, "::ffff:198.18.0.2"), 200);
        assert_eq!(status_for(&site, "198.18.0.3"), 404);
        assert_eq!(status_for(&site, "10.1.255.7"), 200);
        assert_eq!(status_for(&site, "10.2.0.1"), 404);
        site.status = Some(page(&[], true));
        assert_eq!(status_for(&site, "198.18.0.3"), 200);
    }

    /// `--status-allow` values: an address, `ADDRESS/BITS`, IPv6; a bad
    /// one is refused with a reason; they print back as written.
    #[test]
    fn allowed_networks_parse_and_match() {
        use crate::http::site::Net;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let n: Net = "0.0.0.0/0".parse().unwrap();
        assert!(n.contains(ip("203.0.113.9")) && !n.contains(ip("2001:db8::1")));
        let n: Net = "2001:db8::/32".parse().unwrap();
        assert!(n.contains(ip("2001:db8:1::1")) && !n.contains(ip("2001:db9::1")));
        assert_eq!(n.to_string(), "2001:db8::/32");
        assert_eq!(
            "198.18.0.2".parse::<Net>().unwrap().to_string(),
            "198.18.0.2"
        );
        for bad in ["198.18.0.2/33", "host.example", "10.0.0.0/", "::/129"] {
            assert!(bad.parse::<Net>().is_err(), "{bad}");
        }
    }

    const POST: &[u8] = b"POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n";
    const NEXT: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";

    /// `--rate-limit`: past the burst a request is answered 429 and the
    /// connection stays open; without the limit (the patch that fails the
    /// conformance check) all five are 200.
    #[test]
    fn past_the_burst_a_request_gets_429_and_the_connection_stays() {
        let (_root, mut site) = Root::new("ratelimit");
        let five = NEXT.repeat(5);
        assert_eq!(drive(&site, &[&five]), (vec![200; 5], true));
        site.rate_limit = Some(crate::http::ratelimit::RateLimit::new(1.0, 3));
        assert_eq!(
            drive(&site, &[&five]),
            (vec![200, 200, 200, 429, 429], true)
        );
        assert!(
            site.counters
                .rate_limited
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 2
        );
    }

    #[test]
    fn a_chunked_body_is_decoded_and_the_next_request_answered() {
        let (_root, site) = Root::new("next");
        let whole = [POST, NEXT].concat();
        assert_eq!(drive(&site, &[&whole]), (vec![405, 200], true));
    }

    #[test]
    fn every_split_point_gives_the_same_answers() {
        let (_root, site) = Root::new("splits");
        let whole = [POST, NEXT].concat();
        for cut in 0..=whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(
                drive(&site, &[a, b]),
                (vec![405, 200], true),
                "cut at {cut}"
            );
        }
        // And one byte at a time.
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(drive(&site, &bytes), (vec![405, 200], true));
    }

    #[test]
    fn the_request_is_answered_only_when_its_body_ends() {
        let (_root, site) = Root::new("wait");
        let head_and_part = &POST[..POST.len() - 4];
        assert_eq!(drive(&site, &[head_and_part]), (vec![], true));
    }

    #[test]
    fn bad_and_oversized_bodies_get_400_and_413_then_close() {
        let (_root, site) = Root::new("bad");
        let head = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (body, status) in [
            (&b"x\r\n"[..], 400),
            (b"3\r\nabcd", 400),
            (b"3\nabc\r\n", 400),
            (b"65\r\n", 413),
            (b"32\r\n", 0),
        ] {
            let input = [&head[..], body, NEXT].concat();
            let (statuses, open) = drive(&site, &[&input]);
            if status == 0 {
                // 0x32 = 50 bytes is within the limit: still reading the body.
                assert_eq!((statuses, open), (vec![], true));
            } else {
                assert_eq!((statuses, open), (vec![status], false), "{body:?}");
            }
        }
    }

    #[test]
    fn a_head_request_with_a_chunked_body_gets_no_body() {
        let (_root, site) = Root::new("head");
        let mut conn = Conn::new("127.0.0.1".parse().unwrap());
        let input =
            b"HEAD /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut out = Vec::new();
        let (used, step) = conn.next(input, &site, false, &mut out);
        assert_eq!(used, input.len());
        let Step::Respond(reply) = step else {
            panic!("expected a response, got {step:?}");
        };
        assert_eq!((reply.status, reply.body_len), (200, 0));
        assert!(reply.file.is_none() && out.ends_with(b"\r\n\r\n"));
    }

    /// Found by the fuzzer: the 400 for a HEAD's malformed chunked body
    /// carried a body.
    #[test]
    fn a_head_request_with_a_bad_chunked_body_gets_a_400_without_a_body() {
        let (_root, site) = Root::new("head-bad");
        let mut conn = Conn::new("127.0.0.1".parse().unwrap());
        let input =
            b"HEAD /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX";
        let mut out = Vec::new();
        let (_, step) = conn.next(input, &site, false, &mut out);
        let Step::Respond(reply) = step else {
            panic!("expected a response, got {step:?}");
        };
        assert_eq!((reply.status, reply.body_len), (400, 0));
        assert!(
            out.ends_with(b"\r\n\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(!reply.keep_alive);
    }

    #[test]
    fn a_timeout_inside_a_chunked_body_is_a_408() {
        let (_root, site) = Root::new("timeout");
        let mut conn = Conn::new("127.0.0.1".parse().unwrap());
        let mut out = Vec::new();
        let (used, step) = conn.next(&POST[..70], &site, false, &mut out);
        assert!(matches!(step, Step::NeedInput));
        assert_eq!(used, 70, "the head and the body so far are consumed");
        assert!(conn.skipping_body() && conn.pending_head().is_some());
        let reply = conn.timeout(&[], &site, &mut out).expect("a 408");
        assert_eq!(reply.status, 408);
        assert!(conn.closing() && !conn.skipping_body());
    }

    #[test]
    fn expect_continue_with_no_body_yet_is_answered_and_closed() {
        let (_root, site) = Root::new("expect");
        let input = b"POST /a.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(drive(&site, &[input]), (vec![405], false));
    }
}
