//! The request parser: `httparse` plus the limits and framing rules of
//! RFC 9112 that `httparse` leaves to its caller.
//!
//! [`parse`] looks at the bytes received so far and answers one of:
//!
//! - `Ok(Status::Partial)`: the head is not complete yet; read more bytes and
//!   call again with the whole buffer;
//! - `Ok(Status::Complete(request))`: a complete head; `request.head_len`
//!   bytes of the buffer belong to it and `request.body` says how the body,
//!   if any, is framed;
//! - `Err(error)`: the bytes can never become a valid request; answer with
//!   `error.status()` and close the connection.
//!
//! The parser never allocates: the [`Request`] borrows from the buffer.

use std::fmt;

use super::Version;

/// The most headers a request may have, whatever the configuration says;
/// it sizes the array `httparse` fills on the stack.
pub const MAX_HEADERS: usize = 128;

/// Re-export of `httparse`'s two-state answer.
pub use httparse::Status;

/// Size limits on a request head and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version), in bytes → 414.
    pub max_request_line: usize,
    /// Longest head (request line and all header lines), in bytes → 431.
    pub max_head: usize,
    /// Most header fields → 431. At most [`MAX_HEADERS`].
    pub max_headers: usize,
    /// Largest request body the server will read and discard → 413.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 1024 * 1024,
        }
    }
}

/// Why a request head was rejected. Each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed syntax `httparse` refused (bad token, bad header line,
    /// obs-fold, whitespace before a colon, a bare CR...).
    Syntax,
    /// HTTP/1.1 without `Host`, or more than one `Host`.
    Host,
    /// Transfer-Encoding and Content-Length together, an invalid or
    /// conflicting Content-Length, a Transfer-Encoding that does not end in
    /// `chunked`, or one in an HTTP/1.0 request.
    Framing,
    /// The request line is longer than the limit.
    UriTooLong,
    /// The head, or the number of header fields, is over the limit.
    HeaderTooLarge,
    /// The declared body is larger than the limit.
    BodyTooLarge,
    /// A well-formed `HTTP/x.y` version other than 1.0 and 1.1.
    Version,
}

impl ParseError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::Syntax | ParseError::Host | ParseError::Framing => 400,
            ParseError::UriTooLong => 414,
            ParseError::HeaderTooLarge => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::Version => 505,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Syntax => "malformed request",
            ParseError::Host => "missing or repeated Host header",
            ParseError::Framing => "ambiguous or invalid message framing",
            ParseError::UriTooLong => "request line too long",
            ParseError::HeaderTooLarge => "request header fields too large",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::Version => "HTTP version not supported",
        })
    }
}

impl std::error::Error for ParseError {}

/// The request method. Only `GET` and `HEAD` are served; the other methods
/// of RFC 9110 get 405, anything else 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// A method RFC 9110 defines that a static server does not allow.
    Known,
    /// A method this server does not know at all.
    Unknown,
}

/// How the request body is framed (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length: n` (no header means 0).
    Length(u64),
    /// `Transfer-Encoding: …, chunked`. [`Conn`](super::Conn) decodes it
    /// with [`chunked::Decoder`](super::chunked::Decoder) before answering,
    /// so that the next pipelined request starts at the right byte.
    Chunked,
}

/// A parsed request head. Borrows from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'b> {
    /// The method, classified.
    pub method: Method,
    /// The method as sent (for the access log and the 405/501 answers).
    pub method_str: &'b str,
    /// The request target as sent.
    pub target: &'b str,
    /// The path part of the target (origin-form), still percent-encoded.
    /// For absolute-form targets (`http://host/path`), the path after the
    /// authority; for `*`, `"*"`.
    pub path: &'b str,
    /// The query string, without the `?`.
    pub query: Option<&'b str>,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The `Host` header.
    pub host: Option<&'b str>,
    /// `Connection: close` was sent.
    pub conn_close: bool,
    /// `Connection: keep-alive` was sent.
    pub conn_keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// How the body is framed.
    pub body: BodyFraming,
    /// `If-None-Match`.
    pub if_none_match: Option<&'b str>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'b str>,
    /// `Range`.
    pub range: Option<&'b str>,
    /// `If-Range`.
    pub if_range: Option<&'b str>,
    /// `Accept-Encoding`.
    pub accept_encoding: Option<&'b str>,
    /// `User-Agent`, raw bytes (for the access log).
    pub user_agent: Option<&'b [u8]>,
    /// `Referer`, raw bytes (for the access log).
    pub referer: Option<&'b [u8]>,
    /// Bytes of the buffer taken by the head, final empty line included.
    pub head_len: usize,
}

impl Request<'_> {
    /// Whether the client asked for the connection to stay open: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub fn wants_keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.conn_close,
            Version::Http10 => self.conn_keep_alive && !self.conn_close,
        }
    }

    /// The request line, `GET / HTTP/1.1`, for logs.
    pub fn request_line(&self) -> impl fmt::Display + '_ {
        struct Line<'a, 'b>(&'a Request<'b>);
        impl fmt::Display for Line<'_, '_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let r = self.0;
                write!(f, "{} {} {}", r.method_str, r.target, r.version.as_str())
            }
        }
        Line(self)
    }
}

/// Parses the head at the start of `buf` (see the module docs).
pub fn parse<'b>(buf: &'b [u8], limits: &Limits) -> Result<Status<Request<'b>>, ParseError> {
    // ANCHOR: parse_limits
    // 414 is decided on the request line alone, before the head is complete:
    // a client sending an endless target must not make us buffer `max_head`.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    match line.iter().position(|&b| b == b'\n') {
        Some(end) if end > limits.max_request_line => return Err(ParseError::UriTooLong),
        None if line.len() > limits.max_request_line => return Err(ParseError::UriTooLong),
        _ => {}
    }

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let max_headers = limits.max_headers.clamp(1, MAX_HEADERS);
    let mut req = httparse::Request::new(&mut headers[..max_headers]);
    let head_len = match req.parse(buf) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => {
            return if buf.len() > limits.max_head {
                Err(ParseError::HeaderTooLarge)
            } else {
                Ok(Status::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeaderTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(line)),
        Err(_) => return Err(ParseError::Syntax),
        // ANCHOR_END: parse_limits
    };
    if head_len > limits.max_head {
        return Err(ParseError::HeaderTooLarge);
    }
    // `httparse` fills these three when it returns Complete.
    let (Some(method_str), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::Syntax);
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let (path, query) = split_target(target)?;

    let mut r = Request {
        method: classify_method(method_str),
        method_str,
        target,
        path,
        query,
        version,
        host: None,
        conn_close: false,
        conn_keep_alive: false,
        expect_continue: false,
        body: BodyFraming::Length(0),
        if_none_match: None,
        if_modified_since: None,
        range: None,
        if_range: None,
        accept_encoding: None,
        user_agent: None,
        referer: None,
        head_len,
    };

    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let name = h.name;
        let value = h.value;
        let text = std::str::from_utf8(value).ok().map(str::trim);
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            r.host = text;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value)?;
            if content_length.is_some_and(|old| old != n) {
                return Err(ParseError::Framing);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Two Transfer-Encoding fields form one list; the last coding of
            // the last one is what decides the framing.
            transfer_encoding = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                r.conn_close |= token.eq_ignore_ascii_case(b"close");
                r.conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            r.expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("if-none-match") {
            r.if_none_match = r.if_none_match.or(text);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            r.if_modified_since = r.if_modified_since.or(text);
        } else if name.eq_ignore_ascii_case("range") {
            r.range = r.range.or(text);
        } else if name.eq_ignore_ascii_case("if-range") {
            r.if_range = r.if_range.or(text);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            r.accept_encoding = r.accept_encoding.or(text);
        } else if name.eq_ignore_ascii_case("user-agent") {
            r.user_agent = Some(value);
        } else if name.eq_ignore_ascii_case("referer") {
            r.referer = Some(value);
        }
    }

    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(ParseError::Host);
    }
    // ANCHOR: framing
    r.body = match (transfer_encoding, content_length) {
        (Some(_), Some(_)) => return Err(ParseError::Framing),
        (Some(_), None) if version == Version::Http10 => return Err(ParseError::Framing),
        (Some(te), None) => {
            let last = te.rsplit(|&b| b == b',').next().unwrap_or(te).trim_ascii();
            if !last.eq_ignore_ascii_case(b"chunked") {
                return Err(ParseError::Framing);
            }
            BodyFraming::Chunked
        }
        (None, Some(n)) if n > limits.max_body => return Err(ParseError::BodyTooLarge),
        (None, n) => BodyFraming::Length(n.unwrap_or(0)),
        // ANCHOR_END: framing
    };
    Ok(Status::Complete(r))
}

/// `Content-Length = 1*DIGIT`, or a list of identical values (RFC 9110 8.6).
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let mut result = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::Framing);
        }
        let n = part
            .iter()
            .try_fold(0u64, |acc, &d| {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or(ParseError::Framing)?;
        if result.is_some_and(|r| r != n) {
            return Err(ParseError::Framing);
        }
        result = Some(n);
    }
    result.ok_or(ParseError::Framing)
}

/// Splits a request target into path and query, accepting origin-form
/// (`/p?q`), absolute-form (`http://h/p?q`) and asterisk-form (`*`).
fn split_target(target: &str) -> Result<(&str, Option<&str>), ParseError> {
    let path_and_query = if target.starts_with('/') || target == "*" {
        target
    } else if let Some(rest) = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
    {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        return Err(ParseError::Syntax);
    };
    Ok(match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn classify_method(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" | "PUT" | "DELETE" | "OPTIONS" | "PATCH" | "TRACE" | "CONNECT" => Method::Known,
        _ => Method::Unknown,
    }
}

/// `httparse` says "bad version" both for `HTTP/2.0` (well-formed, not
/// supported: 505) and for `HTTQ/1.1` (garbage: 400). Tell them apart.
fn version_error(line: &[u8]) -> ParseError {
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let line = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_method), Some(_target), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ParseError::Syntax;
    };
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            ParseError::Version
        }
        _ => ParseError::Syntax,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(input: &str) -> Request<'_> {
        match parse(input.as_bytes(), &Limits::default()) {
            Ok(Status::Complete(r)) => r,
            other => panic!("expected a complete request for {input:?}, got {other:?}"),
        }
    }

    fn parse_err(input: &[u8]) -> ParseError {
        match parse(input, &Limits::default()) {
            Err(e) => e,
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    /// One named case per behaviour, in the style of httparse's own tests.
    macro_rules! rejects {
        ($($name:ident: $input:expr => $err:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(parse_err($input), $err);
                assert_eq!(parse_err($input).status(), $err.status());
            }
        )*};
    }

    rejects! {
        no_host_in_http11: b"GET / HTTP/1.1\r\n\r\n" => ParseError::Host;
        two_hosts: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => ParseError::Host;
        te_and_cl: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" => ParseError::Framing;
        te_not_chunked_last: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" => ParseError::Framing;
        te_in_http10: b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" => ParseError::Framing;
        conflicting_lengths: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" => ParseError::Framing;
        conflicting_length_list: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n" => ParseError::Framing;
        negative_length: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n" => ParseError::Framing;
        plus_length: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n" => ParseError::Framing;
        hex_length: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n" => ParseError::Framing;
        overflowing_length: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n" => ParseError::Framing;
        body_too_large: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n" => ParseError::BodyTooLarge;
        obs_fold: b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n" => ParseError::Syntax;
        space_before_colon: b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" => ParseError::Syntax;
        http2_version: b"GET / HTTP/2.0\r\nHost: a\r\n\r\n" => ParseError::Version;
        http12_version: b"GET / HTTP/1.2\r\nHost: a\r\n\r\n" => ParseError::Version;
        garbage_version: b"GET / HTTQ/1.1\r\nHost: a\r\n\r\n" => ParseError::Syntax;
        space_in_target: b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n" => ParseError::Syntax;
        binary_junk: b"\x00\x01\x02\xff\xfe\r\n\r\n" => ParseError::Syntax;
        relative_target: b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n" => ParseError::Syntax;
        bare_cr_in_value: b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n" => ParseError::Syntax;
    }

    #[test]
    fn partial_until_the_empty_line() {
        let full = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..full.len() {
            let r = parse(&full[..cut], &Limits::default()).unwrap();
            assert!(r.is_partial(), "cut at {cut}");
        }
        assert!(parse(full, &Limits::default()).unwrap().is_complete());
    }

    #[test]
    fn fields_are_extracted() {
        let r = parse_ok(
            "GET /dir/a%20b.html?x=1&y=2 HTTP/1.1\r\nHost: example\r\nConnection: Keep-Alive, close\r\n\
             If-None-Match: \"abc\"\r\nRange: bytes=0-1\r\nUser-Agent: t/1\r\n\r\nNEXT",
        );
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/dir/a%20b.html");
        assert_eq!(r.query, Some("x=1&y=2"));
        assert_eq!(r.host, Some("example"));
        assert!(r.conn_close && r.conn_keep_alive && !r.wants_keep_alive());
        assert_eq!(r.if_none_match, Some("\"abc\""));
        assert_eq!(r.range, Some("bytes=0-1"));
        assert_eq!(r.user_agent, Some(&b"t/1"[..]));
    }

    #[test]
    fn keep_alive_defaults_by_version() {
        assert!(parse_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n").wants_keep_alive());
        assert!(!parse_ok("GET / HTTP/1.0\r\n\r\n").wants_keep_alive());
        assert!(parse_ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").wants_keep_alive());
    }

    #[test]
    fn body_framing() {
        let r = parse_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(r.body, BodyFraming::Length(5));
        let r = parse_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r.body, BodyFraming::Chunked);
        let r = parse_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.body, BodyFraming::Length(0));
    }

    #[test]
    fn target_forms() {
        let r = parse_ok("GET http://example.com/a/b?q HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!((r.path, r.query), ("/a/b", Some("q")));
        let r = parse_ok("GET HTTP://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(r.path, "/");
        let r = parse_ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((r.path, r.method), ("*", Method::Known));
        let r = parse_ok("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.method, Method::Unknown);
    }

    #[test]
    fn leading_empty_lines_are_ignored() {
        let r = parse_ok("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.path, "/");
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_request_line: 32,
            max_head: 64,
            max_headers: 2,
            max_body: 10,
        };
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(40));
        assert_eq!(
            parse(long_line.as_bytes(), &limits).unwrap_err(),
            ParseError::UriTooLong
        );
        // Even before the line ends.
        assert_eq!(
            parse(&long_line.as_bytes()[..34], &limits).unwrap_err(),
            ParseError::UriTooLong
        );
        let big_head = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "b".repeat(60));
        assert_eq!(
            parse(big_head.as_bytes(), &limits).unwrap_err(),
            ParseError::HeaderTooLarge
        );
        let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse(many.as_bytes(), &limits).unwrap_err(),
            ParseError::HeaderTooLarge
        );
        let body = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            parse(body.as_bytes(), &limits).unwrap_err(),
            ParseError::BodyTooLarge
        );
    }

    proptest::proptest! {
        /// Any bytes give a request, "need more", or an error: never a panic,
        /// and a complete head never claims more bytes than it was given.
        #[test]
        fn any_bytes_are_handled(input in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(Status::Complete(r)) = parse(&input, &Limits::default()) {
                proptest::prop_assert!(r.head_len <= input.len());
            }
        }

        /// Heads built from plausible pieces parse or fail cleanly too.
        #[test]
        fn plausible_heads_are_handled(
            method in "(GET|HEAD|POST|BREW)",
            path in "/[a-z%./0-9?=&]{0,40}",
            version in "HTTP/1\\.[01]",
            headers in proptest::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,20}", 0..8),
        ) {
            let head = format!("{method} {path} {version}\r\n{}\r\n\r\n", headers.join("\r\n"));
            let _ = parse(head.as_bytes(), &Limits::default());
        }
    }
}
