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

use super::parse::{self, BodyFraming, Request, Status};
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
    /// Request-body bytes still to be read and discarded.
    skip: u64,
    /// A response with `Connection: close` has been produced: whatever the
    /// client sends next is ignored.
    closing: bool,
    /// Requests answered on this connection.
    served: u64,
}

impl Conn {
    /// A new connection from `peer`.
    pub fn new(peer: IpAddr) -> Conn {
        Conn {
            peer,
            skip: 0,
            closing: false,
            served: 0,
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// True once the connection is to be closed after what was produced.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// True while request-body bytes are still expected.
    pub fn skipping_body(&self) -> bool {
        self.skip > 0
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
        let buf = &input[used..];
        match parse::parse(buf, &site.limits) {
            Ok(Status::Partial) => (used, Step::NeedInput),
            Err(e) => {
                self.closing = true;
                let reply = error(site, e.status(), Persist::Close, false, out);
                self.log(site, first_line(buf), None, &reply);
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
                    // Chunked bodies are not decoded: answer and close, so
                    // the body is never read as a request.
                    BodyFraming::Chunked => keep_alive = false,
                }
                let reply = match &site.status {
                    // The status page is answered to loopback clients only,
                    // unless configured otherwise; to others it does not exist.
                    Some(page)
                        if req.path == page.path
                            && (page.allow_remote || self.peer.is_loopback()) =>
                    {
                        status_page(&req, site, page, keep_alive, out)
                    }
                    _ => respond(&req, site, keep_alive, out),
                };
                self.log(site, first_line(buf), Some(&req), &reply);
                self.served += 1;
                if !reply.keep_alive {
                    self.closing = true;
                }
                (used + consumed as usize, Step::Respond(reply))
                // ANCHOR_END: conn_next
            }
        }
    }

    /// The header-read timeout fired with `input` still unparsed: if a
    /// request had begun, answer `408` (and close); otherwise close quietly.
    pub fn timeout(&mut self, input: &[u8], site: &Site, out: &mut Vec<u8>) -> Option<Reply> {
        let begun =
            !self.closing && self.skip == 0 && input.iter().any(|&b| b != b'\r' && b != b'\n');
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
fn first_line(buf: &[u8]) -> &[u8] {
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
