//! Response serialization into a caller-owned buffer.
//!
//! A response head is written straight into the connection's output buffer
//! (`&mut Vec<u8>`): no `Response` struct with a `HashMap` of headers, no
//! `String` per header. With a buffer that is reused across requests, a
//! response to a cached request allocates nothing.
//!
//! Header order is fixed, so that every stage gives byte-identical answers:
//! status line, `Server`, `Date`, then the headers of the response in the
//! order its builder adds them, then `Connection` when it says something.

use std::fmt::Display;
use std::io::Write;

use super::Version;

/// The reason phrase for the status codes this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// HTTP/1.1 keep-alive: the default, no header needed.
    KeepAlive11,
    /// HTTP/1.0 keep-alive: must be confirmed with `Connection: keep-alive`.
    KeepAlive10,
    /// The server closes after this response: `Connection: close`.
    Close,
}

impl Persist {
    /// The persistence a response gets, from the request's version and
    /// whether the connection stays open.
    pub fn new(version: Version, keep_alive: bool) -> Persist {
        match (keep_alive, version) {
            (false, _) => Persist::Close,
            (true, Version::Http10) => Persist::KeepAlive10,
            (true, Version::Http11) => Persist::KeepAlive11,
        }
    }

    /// True if the connection stays open.
    pub fn keep_alive(self) -> bool {
        self != Persist::Close
    }
}

/// Writes one response head into `out`.
#[derive(Debug)]
pub struct HeadWriter<'o> {
    out: &'o mut Vec<u8>,
    /// The Unix time the `Date` header shows.
    date: u64,
}

impl<'o> HeadWriter<'o> {
    /// Writes the status line, `Server` and `Date`.
    pub fn new(out: &'o mut Vec<u8>, status: u16, server: &str) -> HeadWriter<'o> {
        // Writing into a Vec cannot fail; the `let _` only drops io::Result.
        let _ = write!(
            out,
            "HTTP/1.1 {status} {}\r\nServer: {server}\r\n",
            reason(status)
        );
        let date = crate::time::with_http_date_secs(|date, secs| {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date.as_bytes());
            out.extend_from_slice(b"\r\n");
            secs
        });
        HeadWriter { out, date }
    }

    /// The Unix time the `Date` header of this response shows.
    pub fn date_secs(&self) -> u64 {
        self.date
    }

    /// Adds one header line.
    pub fn header(&mut self, name: &str, value: impl Display) -> &mut Self {
        let _ = write!(self.out, "{name}: {value}\r\n");
        self
    }

    /// Adds `Content-Type`, with `; charset=utf-8` for textual types.
    pub fn content_type(&mut self, mime: &str) -> &mut Self {
        if needs_charset(mime) {
            self.header("Content-Type", format_args!("{mime}; charset=utf-8"))
        } else {
            self.header("Content-Type", mime)
        }
    }

    /// Writes the `Connection` header if needed and the empty line; returns
    /// the buffer so a body can follow.
    pub fn finish(self, persist: Persist) -> &'o mut Vec<u8> {
        match persist {
            Persist::KeepAlive11 => {}
            Persist::KeepAlive10 => self.out.extend_from_slice(b"Connection: keep-alive\r\n"),
            Persist::Close => self.out.extend_from_slice(b"Connection: close\r\n"),
        }
        self.out.extend_from_slice(b"\r\n");
        self.out
    }
}

/// Whether a MIME type is text that should carry `charset=utf-8`.
pub fn needs_charset(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_layout() {
        let mut out = Vec::new();
        let mut h = HeadWriter::new(&mut out, 404, "test");
        h.content_type("text/html").header("Content-Length", 5);
        h.finish(Persist::Close);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nServer: test\r\nDate: "),
            "{text}"
        );
        assert!(
            text.ends_with(
                " GMT\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn persistence_header() {
        for (p, expect) in [
            (Persist::KeepAlive11, ""),
            (Persist::KeepAlive10, "Connection: keep-alive\r\n"),
            (Persist::Close, "Connection: close\r\n"),
        ] {
            let mut out = Vec::new();
            HeadWriter::new(&mut out, 200, "t").finish(p);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.ends_with(&format!("GMT\r\n{expect}\r\n")),
                "{p:?}: {text}"
            );
        }
    }
}
