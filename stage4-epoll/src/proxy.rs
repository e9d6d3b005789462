//! A reverse proxy on the same event loop (`--proxy-pass`).
//!
//! A forwarded request is a second state machine inside the client's
//! [`Connection`]: the [`Phase::Proxying`] phase. Its other end is an
//! [`Upstream`], a non-blocking connection to the upstream server that is
//! registered with the same `Poll` under a token of its own (slab key plus
//! [`UPSTREAM_TOKENS`]). An event on an upstream socket drives the client
//! connection it serves, so one function sees both sockets and moves
//! bytes between them; there is no thread per request and no blocking call.
//!
//! ```text
//!   client ──► input ──(head rewritten, body as framed)──► to_up ──► upstream
//!   client ◄── out ◄──(head rewritten, body as framed)── up_in/out ◄── upstream
//! ```
//!
//! Both directions have bounded buffers ([`STREAM_BUFFER`]): the proxy stops
//! reading a socket while the buffer towards the other one is full, so a
//! client that reads slowly leaves the response in the upstream's socket
//! (TCP's flow control slows the upstream down), and memory does not grow.
//!
//! What is rewritten (RFC 9110 §7.6): the hop-by-hop fields (`Connection`,
//! the fields it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Upgrade`)
//! are dropped in both directions; the request gets `X-Forwarded-For` and
//! `Forwarded` with the client's address, a `Host` if it had none, and an
//! origin-form target; the response gets the `Connection` header this
//! proxy's own connection needs, where the core puts it (last). Message
//! framing (`Content-Length`, `Transfer-Encoding: chunked`, or the end of
//! the connection) is kept as the sender chose it: the proxy only finds the
//! end of each body, with the same incremental decoder that finds the end
//! of a chunked request body for the static server.
//!
//! Idle upstream connections wait in a small per-loop pool
//! (`--proxy-keepalive`, like nginx's `keepalive` in an `upstream` block).
//! A request sent on a pooled connection that the upstream had just closed
//! is sent again once on a new connection, if it had no body.
//!
//! What this proxy does not do: HTTPS upstreams, several upstreams or load
//! balancing, `Upgrade` (WebSocket), caching, or decoding a chunked
//! response for an HTTP/1.0 client (the request goes upstream as HTTP/1.0,
//! to which a conforming server does not answer chunked).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::http::Version;
use common::http::chunked::{ChunkError, Decoder};
use common::http::conn::first_line;
use common::http::parse::{self, BodyFraming, Method, Status};
use common::http::response::Persist;
use common::http::site::{Site, write_error};
use common::logging::AccessEntry;
use common::stats::Timeout;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::connection::{Connection, Ctx, Phase, Progress};

/// Upstream connections have tokens from here up: `UPSTREAM_TOKENS + key`
/// for their key in [`Upstreams`]. Client keys and the loop's own tokens
/// (just below `usize::MAX`) never get here.
pub const UPSTREAM_TOKENS: usize = 1 << (usize::BITS - 2);
/// The most bytes buffered in each direction of one exchange: request
/// bytes not yet written upstream, response bytes not yet written to the
/// client. Reading stops at this mark (a read may pass it by one read's
/// worth, [`UPSTREAM_READ`]).
pub const STREAM_BUFFER: usize = 64 * 1024;
/// Bytes asked for per `read(2)` of an upstream socket.
pub const UPSTREAM_READ: usize = 64 * 1024;
/// The longest response head accepted from the upstream (else 502).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The most header fields in a response head from the upstream.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Bytes one exchange may move in one turn before it yields to the other
/// connections of the loop (as `TURN_BYTES` for a file).
const TURN_BYTES: u64 = 4 << 20;

/// Requests forwarded upstream, every loop of the process (status page).
pub static FORWARDED: AtomicU64 = AtomicU64::new(0);
/// Upstream connections opened.
pub static OPENED: AtomicU64 = AtomicU64::new(0);
/// Requests sent on a pooled (reused) upstream connection.
pub static REUSED: AtomicU64 = AtomicU64::new(0);
/// Upstream connections refused (502).
pub static REFUSED: AtomicU64 = AtomicU64::new(0);
/// Upstream answers that took longer than `--proxy-timeout` (504).
pub static TIMEOUTS: AtomicU64 = AtomicU64::new(0);
/// Upstream connections that broke, or answered something that is not
/// HTTP (502).
pub static BROKEN: AtomicU64 = AtomicU64::new(0);
/// Idle upstream connections in the pools.
pub static IDLE: AtomicU64 = AtomicU64::new(0);

/// What `--proxy-pass`, `--proxy-prefix`, `--proxy-timeout` and
/// `--proxy-keepalive` say.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The upstream's address (resolved once, at start).
    pub upstream: SocketAddr,
    /// `HOST:PORT` as given, for the `Host` of a request that had none.
    pub authority: String,
    /// Only paths that start with this are forwarded; the rest are served
    /// from `--root`. `None`: everything is forwarded.
    pub prefix: Option<String>,
    /// How long the upstream may take to answer (and then to go on
    /// sending) before the client gets `504` (or the exchange is dropped).
    pub timeout: Duration,
    /// Idle upstream connections each loop keeps for reuse.
    pub keepalive: usize,
}

impl ProxyConfig {
    /// Reads `http://HOST:PORT` (a trailing `/` is allowed, a path is not).
    pub fn new(
        pass: &str,
        prefix: Option<&str>,
        timeout: Duration,
        keepalive: usize,
    ) -> Result<ProxyConfig, String> {
        let rest = pass
            .strip_prefix("http://")
            .ok_or_else(|| format!("--proxy-pass {pass}: only http://HOST:PORT is supported"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') {
            return Err(format!(
                "--proxy-pass {pass}: give http://HOST:PORT, without a path"
            ));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let upstream = with_port
            .to_socket_addrs()
            .map_err(|e| format!("--proxy-pass {pass}: {e}"))?
            .next()
            .ok_or_else(|| format!("--proxy-pass {pass}: no address"))?;
        if let Some(p) = prefix
            && !p.starts_with('/')
        {
            return Err(format!("--proxy-prefix {p}: must start with /"));
        }
        // A deadline is `now + timeout`: keep it far from overflowing.
        if timeout.is_zero() || timeout > Duration::from_secs(366 * 24 * 3600) {
            return Err("--proxy-timeout must be more than 0 and at most a year".into());
        }
        Ok(ProxyConfig {
            upstream,
            authority: authority.to_string(),
            prefix: prefix.map(str::to_string),
            timeout,
            keepalive,
        })
    }

    /// Whether a request for `path` goes upstream.
    pub fn forwards(&self, path: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

/// Appends the proxy's figures to the status page.
pub fn render_stats(out: &mut String) {
    use std::fmt::Write as _;
    let m = |out: &mut String, name, kind, help, v: &AtomicU64| {
        common::stats::metric(out, name, kind, help, v.load(Relaxed));
    };
    m(
        out,
        "http_proxy_requests_total",
        "counter",
        "Requests forwarded to the upstream.",
        &FORWARDED,
    );
    m(
        out,
        "http_proxy_upstream_connections_opened_total",
        "counter",
        "Connections opened to the upstream.",
        &OPENED,
    );
    m(
        out,
        "http_proxy_upstream_reused_total",
        "counter",
        "Requests sent on a pooled upstream connection.",
        &REUSED,
    );
    m(
        out,
        "http_proxy_upstream_idle",
        "gauge",
        "Idle upstream connections in the pools.",
        &IDLE,
    );
    let _ = writeln!(
        out,
        "# HELP http_proxy_upstream_errors_total Upstream failures, by kind (refused and broken: 502; timeout: 504).\n\
         # TYPE http_proxy_upstream_errors_total counter\n\
         http_proxy_upstream_errors_total{{kind=\"refused\"}} {}\n\
         http_proxy_upstream_errors_total{{kind=\"timeout\"}} {}\n\
         http_proxy_upstream_errors_total{{kind=\"broken\"}} {}",
        REFUSED.load(Relaxed),
        TIMEOUTS.load(Relaxed),
        BROKEN.load(Relaxed),
    );
}

// ANCHOR: upstream
/// One connection to the upstream: busy with one client's exchange, or
/// idle in the pool.
#[derive(Debug)]
pub struct Upstream {
    /// The non-blocking socket, registered for both directions once.
    stream: TcpStream,
    /// The client connection (its slab key) this one serves; `None` while
    /// it waits in the pool.
    client: Option<usize>,
    /// The non-blocking `connect` has finished.
    connected: bool,
    /// Readiness not used up yet, as in [`Connection`].
    read_ready: bool,
    /// The same for writing.
    write_ready: bool,
}

/// A loop's upstream connections and its pool of idle ones.
#[derive(Debug)]
pub struct Upstreams {
    /// Where and how to forward.
    config: Arc<ProxyConfig>,
    /// Every upstream connection; its key plus [`UPSTREAM_TOKENS`] is its
    /// token.
    slab: Slab<Upstream>,
    /// Keys of the idle ones, the most recently used last (reused first:
    /// it is the least likely to have been closed by the upstream).
    idle: Vec<usize>,
}
// ANCHOR_END: upstream

impl Upstreams {
    /// No connections yet.
    pub fn new(config: Arc<ProxyConfig>) -> Upstreams {
        Upstreams {
            config,
            slab: Slab::new(),
            idle: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// An upstream connection for client `client`: the most recent idle
    /// one unless `fresh`, else a new one (its `connect` still running).
    /// Returns its key and whether it was reused.
    fn checkout(
        &mut self,
        registry: &Registry,
        client: usize,
        fresh: bool,
    ) -> io::Result<(usize, bool)> {
        if !fresh {
            while let Some(key) = self.idle.pop() {
                IDLE.fetch_sub(1, Relaxed);
                if let Some(up) = self.slab.get_mut(key) {
                    up.client = Some(client);
                    REUSED.fetch_add(1, Relaxed);
                    return Ok((key, true));
                }
            }
        }
        let mut stream = TcpStream::connect(self.config.upstream)?;
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        registry.register(
            &mut stream,
            Token(UPSTREAM_TOKENS + key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Upstream {
            stream,
            client: Some(client),
            connected: false,
            read_ready: false,
            write_ready: false,
        });
        OPENED.fetch_add(1, Relaxed);
        Ok((key, false))
    }

    /// Puts a connection whose exchange ended cleanly into the pool, or
    /// closes it if the pool is full.
    fn checkin(&mut self, key: usize) {
        if self.idle.len() >= self.config.keepalive {
            self.slab.try_remove(key);
            return;
        }
        if let Some(up) = self.slab.get_mut(key) {
            up.client = None;
            self.idle.push(key);
            IDLE.fetch_add(1, Relaxed);
        }
    }

    /// Closes a connection (it leaves the epoll set as its socket closes).
    pub fn discard(&mut self, key: usize) {
        if self.slab.try_remove(key).is_some()
            && let Some(i) = self.idle.iter().position(|&k| k == key)
        {
            self.idle.swap_remove(i);
            IDLE.fetch_sub(1, Relaxed);
        }
    }

    // ANCHOR: on_event
    /// Records an upstream socket's event; returns the client connection
    /// to drive, if the upstream connection is busy. An idle one that
    /// becomes readable was closed by the upstream (or sent bytes nobody
    /// asked for): it leaves the pool.
    pub fn on_event(&mut self, key: usize, event: &Event) -> Option<usize> {
        let up = self.slab.get_mut(key)?;
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            up.read_ready = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            up.write_ready = true;
        }
        if let Some(client) = up.client {
            return Some(client);
        }
        if up.read_ready {
            let mut probe = [0u8; 64];
            match (&up.stream).read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.read_ready = false,
                _ => self.discard(key),
            }
        }
        None
    }
    // ANCHOR_END: on_event
}

/// How much of the request body is still to be forwarded.
#[derive(Debug)]
enum ReqBody {
    /// All of it is in `to_up` (or there was none).
    Done,
    /// `Content-Length` bytes still to come.
    Length(u64),
    /// A chunked body: the decoder finds its end.
    Chunked(Decoder),
}

/// Where the response is.
#[derive(Debug)]
enum Resp {
    /// Reading its head into `up_in`.
    Head,
    /// `Content-Length` bytes still to come.
    Length(u64),
    /// A chunked body, passed on as it is; the decoder finds its end.
    Chunked(Box<Decoder>),
    /// No length: the body ends when the upstream closes.
    UntilClose,
    /// All of it is in the client's output buffer.
    Done,
}

/// Why an upstream was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The connection was refused: 502.
    Refused,
    /// Reset or closed early, or not HTTP: 502.
    Broken,
    /// Too slow: 504.
    Timeout,
}

// ANCHOR: exchange
/// One request on its way through the proxy and its response on the way
/// back: the second state machine, owned by the client's connection while
/// it is in [`Phase::Proxying`].
#[derive(Debug)]
pub struct Exchange {
    /// The upstream connection's key in [`Upstreams`], once there is one.
    up: Option<usize>,
    /// It came from the pool (a failure before any answer may be the
    /// upstream closing it just now: then try once more on a new one).
    reused: bool,
    /// The request was sent again already.
    retried: bool,
    /// Bytes for the upstream: the rewritten head, then body bytes.
    to_up: Vec<u8>,
    /// How much of `to_up` is written.
    to_up_written: usize,
    /// `to_up` still holds the whole head (a retry can send it again).
    head_in_to_up: bool,
    /// The request body still to forward.
    body: ReqBody,
    /// The client sent `Expect: 100-continue`.
    expect_continue: bool,
    /// Where the response is.
    resp: Resp,
    /// The response head as it arrives.
    up_in: Vec<u8>,
    /// A `HEAD` request: the response has no body, whatever it says.
    head_request: bool,
    /// The client's HTTP version (also the one used upstream).
    version: Version,
    /// The client asked to keep its connection (and no shutdown began).
    wants_keep_alive: bool,
    /// Decided from the response head: the client connection stays open.
    keep_client: bool,
    /// The upstream connection can go back to the pool afterwards.
    reusable: bool,
    /// The response head was written into the client's buffer: from now on
    /// a failure can only cut the response short.
    started: bool,
    /// The response's status (for the log).
    status: u16,
    /// Response body bytes given to the client (for the log).
    sent: u64,
    /// The request line, `Referer` and `User-Agent`, for the access log.
    line: Box<[u8]>,
    /// See `line`.
    referer: Option<Box<[u8]>>,
    /// See `line`.
    user_agent: Option<Box<[u8]>>,
}
// ANCHOR_END: exchange

/// Whether the request at the start of `input` goes upstream. Anything
/// that is not a complete, valid head, and the status page, is left to the
/// core: it answers errors (and times out partial heads) as it always does.
pub fn forwards(input: &[u8], site: &Site, config: &ProxyConfig) -> bool {
    match parse::parse(input, &site.limits) {
        Ok(Status::Complete(req)) => {
            let own_status = site.status.as_ref().is_some_and(|p| p.path == req.path);
            !own_status && config.forwards(req.path)
        }
        _ => false,
    }
}

/// Is `name` a hop-by-hop field (RFC 9110 §7.6.1), or one that the
/// request's `Connection` named?
fn hop_by_hop(name: &str, named: &[&[u8]]) -> bool {
    const FIELDS: [&str; 5] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ];
    FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
        || named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
}

/// The field names a `Connection` header lists.
fn connection_tokens<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .collect()
}

// ANCHOR: request_head
/// Writes the request head to send upstream: the request line with an
/// origin-form target and the client's version, the end-to-end fields as
/// they came, `Host` if there was none, and the client's address appended
/// to `X-Forwarded-For` and `Forwarded`.
fn write_request_head(
    out: &mut Vec<u8>,
    head: &[u8],
    req: &parse::Request<'_>,
    peer: IpAddr,
    config: &ProxyConfig,
) {
    let mut headers = [httparse::EMPTY_HEADER; parse::MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    // The head parsed once already (`parse::parse` uses httparse too).
    let _ = parsed.parse(head);
    let target = match req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.to_string(),
    };
    let _ = write!(
        out,
        "{} {target} {}\r\n",
        req.method_str,
        req.version.as_str()
    );
    let named = connection_tokens(parsed.headers);
    let mut xff: Vec<&[u8]> = Vec::new();
    let mut forwarded: Vec<&[u8]> = Vec::new();
    for h in parsed.headers.iter() {
        if hop_by_hop(h.name, &named) {
            continue;
        }
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            xff.push(h.value.trim_ascii());
            continue;
        }
        if h.name.eq_ignore_ascii_case("forwarded") {
            forwarded.push(h.value.trim_ascii());
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if req.host.is_none() {
        let _ = write!(out, "Host: {}\r\n", config.authority);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for v in &xff {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{peer}\r\n");
    out.extend_from_slice(b"Forwarded: ");
    for v in &forwarded {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    // RFC 7239: an IPv6 address is quoted and bracketed.
    match peer {
        IpAddr::V4(a) => {
            let _ = write!(out, "for={a};proto=http");
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "for=\"[{a}]\";proto=http");
        }
    }
    if let Some(host) = req.host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic())) {
        let _ = write!(out, ";host=\"{}\"", host.replace('"', ""));
    }
    out.extend_from_slice(b"\r\n");
    if req.version == Version::Http10 {
        // HTTP/1.0 connections close by default: ask for the pool's sake.
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
// ANCHOR_END: request_head

/// Takes from `new` (bytes just read from the upstream) what belongs to
/// the response body; returns how many. Fewer than `new.len()` means the
/// upstream sent more than its message.
fn frame(resp: &mut Resp, new: &[u8]) -> Result<usize, ChunkError> {
    let used = match resp {
        Resp::Length(left) => {
            let n = (*left).min(new.len() as u64);
            *left -= n;
            if *left == 0 {
                *resp = Resp::Done;
            }
            n as usize
        }
        Resp::Chunked(decoder) => {
            let (n, done) = decoder.feed(new)?;
            if done {
                *resp = Resp::Done;
            }
            n
        }
        Resp::UntilClose => new.len(),
        Resp::Head | Resp::Done => 0,
    };
    Ok(used)
}

/// What the response head says about the body and the connection.
struct Head {
    /// Bytes of `up_in` it took.
    len: usize,
    /// The body's framing.
    resp: Resp,
    /// The upstream keeps its connection open afterwards.
    persistent: bool,
}

// ANCHOR: response_head
/// Parses the upstream's response head in `ex.up_in` and writes the
/// client's version of it into `out`. `Ok(None)`: not complete yet.
/// Informational (1xx) heads are passed on to an HTTP/1.1 client and
/// skipped.
fn response_head(
    ex: &mut Exchange,
    draining: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Head>, Failure> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&ex.up_in) {
            Ok(Status::Complete(n)) => n,
            Ok(Status::Partial) if ex.up_in.len() <= MAX_RESPONSE_HEAD => return Ok(None),
            _ => return Err(Failure::Broken),
        };
        let (Some(code), Some(minor)) = (resp.code, resp.version) else {
            return Err(Failure::Broken);
        };
        if code == 101 || code < 100 {
            return Err(Failure::Broken);
        }
        if code < 200 {
            if ex.version == Version::Http11 {
                out.extend_from_slice(&ex.up_in[..len]);
            }
            ex.up_in.drain(..len);
            continue;
        }
        let named = connection_tokens(resp.headers);
        let close = named.iter().any(|t| t.eq_ignore_ascii_case(b"close"));
        let keep = named.iter().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
        let mut length: Option<u64> = None;
        let mut chunked = None;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = h.value.trim_ascii();
                let n = std::str::from_utf8(v)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(Failure::Broken)?;
                if length.is_some_and(|old| old != n) {
                    return Err(Failure::Broken);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(h.value);
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        // RFC 9112 §6.3, in order.
        let body = if ex.head_request || code == 204 || code == 304 {
            Resp::Done
        } else if let Some(is_chunked) = chunked {
            if is_chunked {
                Resp::Chunked(Box::new(Decoder::new(u64::MAX, MAX_RESPONSE_HEAD)))
            } else {
                Resp::UntilClose
            }
        } else {
            match length {
                Some(0) => Resp::Done,
                Some(n) => Resp::Length(n),
                None => Resp::UntilClose,
            }
        };
        // Without a length, or with two (RFC 9112 §6.3: close after it),
        // the upstream connection cannot carry another request.
        let ambiguous = chunked.is_some() && length.is_some();
        let persistent = !matches!(body, Resp::UntilClose)
            && !ambiguous
            && if minor == 0 { keep && !close } else { !close };
        let body_left = !matches!(ex.body, ReqBody::Done);
        // The client's connection stays open if its request asked for it,
        // the response's end can be found, and the rest of the request
        // body (if any) still has a place to go.
        ex.keep_client = ex.wants_keep_alive
            && !draining
            && !matches!(body, Resp::UntilClose)
            && !(body_left && (ex.expect_continue || !persistent));
        let _ = write!(
            out,
            "HTTP/1.1 {code} {}\r\n",
            resp.reason.unwrap_or_default()
        );
        for h in resp.headers.iter() {
            if hop_by_hop(h.name, &named) {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        // Where the core's HeadWriter puts it, and what it says.
        match Persist::new(ex.version, ex.keep_client) {
            Persist::KeepAlive11 => {}
            Persist::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        ex.status = code;
        return Ok(Some(Head {
            len,
            resp: body,
            persistent,
        }));
    }
}
// ANCHOR_END: response_head

/// Writes one access-log line and counts the response.
fn log_response(site: &Site, peer: IpAddr, ex: &Exchange) {
    site.counters.response(ex.status, ex.sent);
    site.access_log.log(&AccessEntry {
        peer,
        request_line: &ex.line,
        status: ex.status,
        bytes: ex.sent,
        referer: ex.referer.as_deref(),
        user_agent: ex.user_agent.as_deref(),
    });
}

/// What sending towards the upstream did.
enum Sent {
    /// Whether bytes moved.
    Moved(bool),
    /// The upstream failed.
    Failed(Failure, io::Error),
    /// The client's chunked body is malformed or too large.
    BadBody(ChunkError),
}

/// What one pass over an exchange's sockets did.
enum Pass {
    /// Bytes moved (or state changed): try again.
    Moved,
    /// Every socket that matters would block: wait for an event.
    Blocked,
    /// The connection's phase changed (the exchange is over, or an error
    /// answer is to be written): back to the connection's own loop.
    Phase,
    /// The turn's budget is spent.
    Yield,
}

impl Connection {
    /// The exchange in progress, if any (it lives with the buffers: an
    /// idle connection pays nothing for it).
    fn ex(&self) -> Option<&Exchange> {
        self.bufs.as_deref().and_then(|b| b.exchange.as_deref())
    }

    /// See [`ex`](Self::ex).
    fn ex_mut(&mut self) -> Option<&mut Exchange> {
        self.bufs
            .as_deref_mut()
            .and_then(|b| b.exchange.as_deref_mut())
    }

    /// Ends the exchange (the caller disposes of its upstream connection).
    fn take_ex(&mut self) -> Option<Box<Exchange>> {
        self.bufs.as_deref_mut().and_then(|b| b.exchange.take())
    }

    /// The upstream connection this connection's exchange holds, if any.
    pub fn upstream(&self) -> Option<usize> {
        self.ex().and_then(|ex| ex.up)
    }

    // ANCHOR: start
    /// Starts forwarding the request at the start of the input buffer
    /// (which [`forwards`] accepted): rewrites its head for the upstream,
    /// takes an upstream connection, and enters [`Phase::Proxying`].
    pub(crate) fn start_exchange(&mut self, cx: &mut Ctx<'_>) -> io::Result<()> {
        let (Some(b), Some(ups)) = (self.bufs.as_deref_mut(), cx.proxy.as_deref_mut()) else {
            return Err(io::Error::other(
                "a proxied request without buffers or proxy",
            ));
        };
        let Ok(Status::Complete(req)) = parse::parse(&b.input, &cx.site.limits) else {
            return Err(io::Error::other(
                "a proxied request without a complete head",
            ));
        };
        let peer = self.http.peer();
        let head_len = req.head_len;
        let wants_keep_alive = req.wants_keep_alive() && !cx.draining;
        let body = match req.body {
            BodyFraming::Length(0) => ReqBody::Done,
            BodyFraming::Length(n) => ReqBody::Length(n),
            BodyFraming::Chunked => ReqBody::Chunked(Decoder::new(
                cx.site.limits.max_body,
                cx.site.limits.max_head,
            )),
        };
        let mut to_up = Vec::with_capacity(head_len + 128);
        write_request_head(&mut to_up, &b.input[..head_len], &req, peer, ups.config());
        let ex = Exchange {
            up: None,
            reused: false,
            retried: false,
            to_up,
            to_up_written: 0,
            head_in_to_up: true,
            expect_continue: req.expect_continue,
            resp: Resp::Head,
            up_in: Vec::new(),
            head_request: req.method == Method::Head,
            version: req.version,
            wants_keep_alive,
            keep_client: false,
            reusable: false,
            started: false,
            status: 0,
            sent: 0,
            line: first_line(&b.input).into(),
            referer: req.referer.map(Into::into),
            user_agent: req.user_agent.map(Into::into),
            body,
        };
        // The same token bucket as a local request (`--rate-limit`).
        if let Some(limit) = &cx.site.rate_limit
            && let common::http::ratelimit::Verdict::Limit { retry_after_secs } =
                limit.check(peer, cx.now)
        {
            // Without a body to skip, the connection can stay.
            let keep = wants_keep_alive && matches!(ex.body, ReqBody::Done);
            b.input.drain(..head_len);
            cx.site.counters.limited();
            let retry = retry_after_secs.to_string();
            let reply = write_error(
                cx.site,
                429,
                Persist::new(ex.version, keep),
                ex.head_request,
                &[("Retry-After", &retry)],
                &mut b.out,
            );
            let ex = Exchange {
                status: 429,
                sent: reply.body_len,
                ..ex
            };
            log_response(cx.site, peer, &ex);
            return self.answered_locally(cx, keep);
        }
        b.input.drain(..head_len);
        FORWARDED.fetch_add(1, Relaxed);
        let checkout = ups.checkout(cx.registry, cx.key, false);
        b.exchange = Some(Box::new(ex));
        self.phase = Phase::Proxying;
        match checkout {
            Ok((key, reused)) => {
                if let Some(ex) = self.ex_mut() {
                    ex.up = Some(key);
                    ex.reused = reused;
                }
                let after = self.exchange_timeout(cx);
                self.arm(cx, after);
                Ok(())
            }
            Err(e) => self.gateway_error(cx, failure_of(&e), &e),
        }
    }
    // ANCHOR_END: start

    /// The deadline that applies now: the header timeout while the client
    /// still owes request body bytes and no answer has begun, else the
    /// proxy timeout (and at least the send timeout once the response
    /// streams).
    fn exchange_timeout(&self, cx: &Ctx<'_>) -> Duration {
        let proxy = cx
            .proxy
            .as_deref()
            .map_or(cx.timeouts.send, |p| p.config.timeout);
        match self.ex() {
            Some(ex) if !ex.started && !matches!(ex.body, ReqBody::Done) => cx.timeouts.header,
            Some(ex) if ex.started => proxy.max(cx.timeouts.send),
            _ => proxy,
        }
    }

    /// A response the proxy wrote itself is in the output buffer: write it,
    /// then go on with the next request or close.
    fn answered_locally(&mut self, cx: &mut Ctx<'_>, keep: bool) -> io::Result<()> {
        if !keep {
            self.http.close();
        }
        self.phase = Phase::Writing;
        let send = cx.timeouts.send;
        self.arm(cx, send);
        Ok(())
    }

    // ANCHOR: gateway_error
    /// The upstream failed before its answer began: the client gets 502
    /// (504 for a timeout) from the proxy itself, logged and counted. The
    /// upstream connection is closed; the client's stays open if its
    /// request is complete and it asked for that.
    fn gateway_error(
        &mut self,
        cx: &mut Ctx<'_>,
        why: Failure,
        err: &dyn std::fmt::Display,
    ) -> io::Result<()> {
        let Some(mut ex) = self.take_ex() else {
            return Ok(());
        };
        let ups = cx.proxy.as_deref_mut();
        let upstream = ups.as_ref().map(|u| u.config.upstream);
        if let (Some(ups), Some(key)) = (ups, ex.up) {
            ups.discard(key);
        }
        let status = match why {
            Failure::Refused => {
                REFUSED.fetch_add(1, Relaxed);
                log::warn!(
                    "proxy: upstream {} refused the connection: {err}",
                    upstream.map_or_else(String::new, |a| a.to_string())
                );
                502
            }
            Failure::Broken => {
                BROKEN.fetch_add(1, Relaxed);
                log::warn!(
                    "proxy: upstream {} failed before answering: {err}",
                    upstream.map_or_else(String::new, |a| a.to_string())
                );
                502
            }
            Failure::Timeout => {
                TIMEOUTS.fetch_add(1, Relaxed);
                log::warn!(
                    "proxy: upstream {} did not answer in time: {err}",
                    upstream.map_or_else(String::new, |a| a.to_string())
                );
                504
            }
        };
        let keep = ex.wants_keep_alive && matches!(ex.body, ReqBody::Done) && !cx.draining;
        let b = self.bufs.get_or_insert_with(|| cx.pool.take());
        let reply = write_error(
            cx.site,
            status,
            Persist::new(ex.version, keep),
            ex.head_request,
            &[],
            &mut b.out,
        );
        ex.status = status;
        ex.sent = reply.body_len;
        log_response(cx.site, self.http.peer(), &ex);
        self.answered_locally(cx, keep)
    }
    // ANCHOR_END: gateway_error

    /// The upstream connection failed. Before any answer: on a pooled
    /// connection and a request without a body, send it again once on a
    /// new connection; else 502. After the answer began: the response is
    /// cut short, and both connections are dropped.
    fn upstream_failed(
        &mut self,
        cx: &mut Ctx<'_>,
        why: Failure,
        err: &dyn std::fmt::Display,
    ) -> io::Result<Pass> {
        let Some(ex) = self.ex_mut() else {
            return Ok(Pass::Phase);
        };
        if matches!(ex.resp, Resp::Done) {
            // The answer is complete (an upstream may answer early and
            // close, as a 413 does): the rest of the request body has
            // nowhere to go, so the client's connection closes after the
            // answer, and its unread body is discarded by the lingering
            // close.
            log::debug!("proxy: the upstream closed after its answer: {err}");
            if let (Some(ups), Some(key)) = (cx.proxy.as_deref_mut(), ex.up.take()) {
                ups.discard(key);
            }
            ex.body = ReqBody::Done;
            ex.to_up.clear();
            ex.to_up_written = 0;
            ex.reusable = false;
            ex.keep_client = false;
            return Ok(Pass::Moved);
        }
        if ex.started {
            log::warn!("proxy: upstream broke off a response: {err}");
            BROKEN.fetch_add(1, Relaxed);
            return Err(io::Error::other("upstream broke off the response"));
        }
        let retry = ex.reused
            && !ex.retried
            && ex.head_in_to_up
            && matches!(ex.body, ReqBody::Done)
            && ex.up_in.is_empty()
            && why != Failure::Timeout;
        if retry && let Some(ups) = cx.proxy.as_deref_mut() {
            log::debug!("proxy: a pooled upstream connection failed ({err}); sending again");
            if let Some(key) = ex.up.take() {
                ups.discard(key);
            }
            ex.retried = true;
            ex.to_up_written = 0;
            match ups.checkout(cx.registry, cx.key, true) {
                Ok((key, _)) => {
                    ex.up = Some(key);
                    ex.reused = false;
                    return Ok(Pass::Moved);
                }
                Err(e) => {
                    self.gateway_error(cx, failure_of(&e), &e)?;
                    return Ok(Pass::Phase);
                }
            }
        }
        self.gateway_error(cx, why, err)?;
        Ok(Pass::Phase)
    }

    // ANCHOR: proxy_drive
    /// Drives an exchange: connect, send the request head and body
    /// upstream, read the client's body, read the response, write it to
    /// the client; until every socket that matters would block.
    pub(crate) fn drive_exchange(&mut self, cx: &mut Ctx<'_>) -> io::Result<Option<Progress>> {
        let mut moved_bytes = 0u64;
        loop {
            let pass = self.exchange_pass(cx, &mut moved_bytes)?;
            match pass {
                Pass::Moved if moved_bytes >= TURN_BYTES => return Ok(Some(Progress::Yield)),
                Pass::Moved => {}
                Pass::Blocked => {
                    // Both directions wait for readiness.
                    return Ok(Some(Progress::Wait));
                }
                Pass::Yield => return Ok(Some(Progress::Yield)),
                Pass::Phase => return Ok(None),
            }
        }
    }
    // ANCHOR_END: proxy_drive

    /// One pass over both directions.
    fn exchange_pass(&mut self, cx: &mut Ctx<'_>, moved_bytes: &mut u64) -> io::Result<Pass> {
        let mut moved = false;
        match self.send_upstream(cx) {
            Sent::Moved(m) => moved |= m,
            Sent::Failed(why, e) => {
                // An upstream may answer before it has read the whole body
                // and close (a 413): read what it said before giving up.
                if let (Some(key), Some(ups)) =
                    (self.ex().and_then(|ex| ex.up), cx.proxy.as_deref_mut())
                    && let Some(up) = ups.slab.get_mut(key)
                {
                    up.read_ready = true;
                }
                let _ = self.receive_upstream(cx, moved_bytes)?;
                return self.upstream_failed(cx, why, &e);
            }
            Sent::BadBody(e) => {
                self.bad_request_body(cx, e)?;
                return Ok(Pass::Phase);
            }
        }
        // The client's body, while it owes some and there is room for it.
        let wants_body = self
            .ex()
            .is_some_and(|ex| !matches!(ex.body, ReqBody::Done));
        let room = self
            .bufs
            .as_ref()
            .is_some_and(|b| b.input.len() < STREAM_BUFFER);
        if wants_body && room && self.read_ready {
            match self.read(cx)? {
                crate::connection::Read_::Data => moved = true,
                crate::connection::Read_::WouldBlock => {}
                crate::connection::Read_::Eof => {
                    // The client left in the middle of its request.
                    return Err(io::Error::other("client closed during its request body"));
                }
            }
        }
        match self.receive_upstream(cx, moved_bytes)? {
            Ok(m) => moved |= m,
            Err((why, e)) => return self.upstream_failed(cx, why, &e),
        }
        if self.phase != Phase::Proxying {
            return Ok(Pass::Phase);
        }
        // The response, to the client.
        let pending = self.bufs.as_ref().map_or(0, |b| b.out.len() - b.written);
        if pending > 0 {
            let mut sent = 0;
            match self.flush(cx, &mut sent)? {
                crate::connection::Flush::Yield => return Ok(Pass::Yield),
                crate::connection::Flush::Blocked | crate::connection::Flush::Done => {}
            }
            let left = self.bufs.as_ref().map_or(0, |b| b.out.len() - b.written);
            if left < pending {
                moved = true;
                *moved_bytes += (pending - left) as u64;
            }
        }
        if self.finish_if_done(cx) {
            return Ok(Pass::Phase);
        }
        if !moved {
            return Ok(Pass::Blocked);
        }
        // Progress in either direction moves the deadline.
        let after = self.exchange_timeout(cx);
        self.arm(cx, after);
        Ok(Pass::Moved)
    }

    /// Finishes the connect, writes `to_up`, refills it from the client's
    /// body.
    fn send_upstream(&mut self, cx: &mut Ctx<'_>) -> Sent {
        let (Some(b), Some(ups)) = (self.bufs.as_deref_mut(), cx.proxy.as_deref_mut()) else {
            return Sent::Moved(false);
        };
        let Some(ex) = b.exchange.as_deref_mut() else {
            return Sent::Moved(false);
        };
        let Some(up) = ex.up.and_then(|k| ups.slab.get_mut(k)) else {
            return Sent::Moved(false);
        };
        let mut moved = false;
        if !up.connected {
            if !up.write_ready && !up.read_ready {
                return Sent::Moved(false);
            }
            if let Ok(Some(e)) | Err(e) = up.stream.take_error() {
                return Sent::Failed(failure_of(&e), e);
            }
            match up.stream.peer_addr() {
                Ok(_) => up.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // Still connecting: a spurious event.
                    up.write_ready = false;
                    up.read_ready = false;
                    return Sent::Moved(false);
                }
                Err(e) => return Sent::Failed(failure_of(&e), e),
            }
        }
        loop {
            while ex.to_up_written < ex.to_up.len() {
                if !up.write_ready {
                    return Sent::Moved(moved);
                }
                let pending = &ex.to_up[ex.to_up_written..];
                match (&up.stream).write(pending) {
                    Ok(0) => return Sent::Failed(Failure::Broken, io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        ex.to_up_written += n;
                        moved = true;
                        if n < pending.len() {
                            up.write_ready = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.write_ready = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Sent::Failed(failure_of(&e), e),
                }
            }
            // All written: refill from the client's body, if any is here.
            if matches!(ex.body, ReqBody::Done) || b.input.is_empty() {
                return Sent::Moved(moved);
            }
            ex.to_up.clear();
            ex.to_up_written = 0;
            ex.head_in_to_up = false;
            let take = b.input.len().min(STREAM_BUFFER);
            let used = match &mut ex.body {
                ReqBody::Length(left) => {
                    let n = (*left).min(take as u64);
                    *left -= n;
                    if *left == 0 {
                        ex.body = ReqBody::Done;
                    }
                    n as usize
                }
                ReqBody::Chunked(decoder) => match decoder.feed(&b.input[..take]) {
                    Ok((n, done)) => {
                        if done {
                            ex.body = ReqBody::Done;
                        }
                        n
                    }
                    Err(e) => return Sent::BadBody(e),
                },
                ReqBody::Done => 0,
            };
            ex.to_up.extend_from_slice(&b.input[..used]);
            b.input.drain(..used);
            moved = true;
        }
    }

    /// A chunked request body turned out malformed or too large: answer
    /// as the core would (400, 413, 431, and close) if the response has not
    /// begun, else drop the connection.
    fn bad_request_body(&mut self, cx: &mut Ctx<'_>, e: ChunkError) -> io::Result<()> {
        let Some(mut ex) = self.take_ex() else {
            return Ok(());
        };
        if let (Some(ups), Some(key)) = (cx.proxy.as_deref_mut(), ex.up) {
            ups.discard(key);
        }
        if ex.started {
            return Err(io::Error::other(e.to_string()));
        }
        let b = self.bufs.get_or_insert_with(|| cx.pool.take());
        b.input.clear();
        let reply = write_error(
            cx.site,
            e.status(),
            Persist::Close,
            ex.head_request,
            &[],
            &mut b.out,
        );
        ex.status = e.status();
        ex.sent = reply.body_len;
        log_response(cx.site, self.http.peer(), &ex);
        self.answered_locally(cx, false)
    }

    // ANCHOR: receive_upstream
    /// Reads the response: its head into `up_in` (then the client's version
    /// of it into the output buffer), its body straight into the output
    /// buffer, as long as that holds less than [`STREAM_BUFFER`].
    #[allow(
        clippy::type_complexity,
        reason = "two layers of failure, each with its owner"
    )]
    fn receive_upstream(
        &mut self,
        cx: &mut Ctx<'_>,
        moved_bytes: &mut u64,
    ) -> io::Result<Result<bool, (Failure, io::Error)>> {
        let (Some(b), Some(ups)) = (self.bufs.as_deref_mut(), cx.proxy.as_deref_mut()) else {
            return Ok(Ok(false));
        };
        let Some(ex) = b.exchange.as_deref_mut() else {
            return Ok(Ok(false));
        };
        let Some(up) = ex.up.and_then(|k| ups.slab.get_mut(k)) else {
            return Ok(Ok(false));
        };
        let mut moved = false;
        while up.connected && up.read_ready && !matches!(ex.resp, Resp::Done) {
            let head = matches!(ex.resp, Resp::Head);
            // Where the bytes go, and how many fit.
            let pending = b.out.len() - b.written;
            let (buf, start) = if head {
                if pending >= STREAM_BUFFER {
                    // Informational answers the client has not read yet.
                    break;
                }
                let start = ex.up_in.len();
                ex.up_in.resize(start + 4096, 0);
                (&mut ex.up_in, start)
            } else {
                if b.written == b.out.len() {
                    b.out.clear();
                    b.written = 0;
                } else if b.written >= STREAM_BUFFER / 2 {
                    b.out.drain(..b.written);
                    b.written = 0;
                }
                if pending >= STREAM_BUFFER {
                    // The client is slower: leave the rest in the socket.
                    break;
                }
                let start = b.out.len();
                b.out.resize(start + UPSTREAM_READ, 0);
                (&mut b.out, start)
            };
            let room = buf.len() - start;
            let result = (&up.stream).read(&mut buf[start..]);
            let n = *result.as_ref().unwrap_or(&0);
            buf.truncate(start + n);
            match result {
                Ok(0) => {
                    up.read_ready = false;
                    match ex.resp {
                        Resp::UntilClose => {
                            ex.resp = Resp::Done;
                            ex.reusable = false;
                            moved = true;
                            break;
                        }
                        _ => {
                            let e = io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the upstream closed the connection",
                            );
                            return Ok(Err((Failure::Broken, e)));
                        }
                    }
                }
                Ok(n) => {
                    moved = true;
                    *moved_bytes += n as u64;
                    if n < room {
                        up.read_ready = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    up.read_ready = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Err((failure_of(&e), e))),
            }
            if head {
                let parsed = match response_head(ex, cx.draining, &mut b.out) {
                    Ok(p) => p,
                    Err(why) => {
                        let e = io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response");
                        return Ok(Err((why, e)));
                    }
                };
                let Some(h) = parsed else { continue };
                ex.started = true;
                ex.resp = h.resp;
                ex.reusable = h.persistent;
                let rest = ex.up_in.split_off(h.len);
                ex.up_in = Vec::new();
                match frame(&mut ex.resp, &rest) {
                    Ok(used) => {
                        b.out.extend_from_slice(&rest[..used]);
                        ex.sent += used as u64;
                        if used < rest.len() {
                            ex.reusable = false;
                        }
                    }
                    Err(_) => return Err(io::Error::other("a malformed chunked response")),
                }
            } else {
                match frame(&mut ex.resp, &b.out[start..]) {
                    Ok(used) => {
                        if used < n {
                            ex.reusable = false;
                            b.out.truncate(start + used);
                        }
                        ex.sent += used as u64;
                    }
                    Err(_) => return Err(io::Error::other("a malformed chunked response")),
                }
            }
        }
        Ok(Ok(moved))
    }
    // ANCHOR_END: receive_upstream

    // ANCHOR: finish
    /// Ends the exchange once the response is out and the request body is
    /// forwarded (or will not be: the client connection closes): the
    /// upstream connection goes back to the pool if it can, the request is
    /// logged, and the client connection reads its next request or
    /// closes. Returns true if it ended.
    fn finish_if_done(&mut self, cx: &mut Ctx<'_>) -> bool {
        let Some(ex) = self.ex() else {
            return false;
        };
        let out_empty = self.bufs.as_ref().is_none_or(|b| b.out.len() == b.written);
        let body_done = matches!(ex.body, ReqBody::Done) && ex.to_up_written == ex.to_up.len();
        if !matches!(ex.resp, Resp::Done) || !out_empty || (!body_done && ex.keep_client) {
            return false;
        }
        let Some(ex) = self.take_ex() else {
            return false;
        };
        if let (Some(ups), Some(key)) = (cx.proxy.as_deref_mut(), ex.up) {
            if ex.reusable && body_done {
                ups.checkin(key);
            } else {
                ups.discard(key);
            }
        }
        log_response(cx.site, self.http.peer(), &ex);
        if ex.keep_client {
            self.phase = Phase::ReadingHead;
            let waiting = self.is_waiting();
            let t = cx.timeouts;
            let idle = if cx.draining {
                t.keepalive.min(t.last_request)
            } else {
                t.keepalive
            };
            self.arm(cx, if waiting { idle } else { t.header });
        } else {
            self.http.close();
            self.start_linger(cx);
        }
        true
    }
    // ANCHOR_END: finish

    // ANCHOR: exchange_timeout
    /// The exchange's deadline passed: before any answer, 408 if the client
    /// was still sending its body, else 504; once the answer began, the
    /// exchange is dropped.
    pub(crate) fn exchange_timed_out(&mut self, cx: &mut Ctx<'_>) -> io::Result<Progress> {
        let Some(ex) = self.ex() else {
            return Ok(Progress::Done);
        };
        if ex.started {
            let kind = if self.bufs.as_ref().is_some_and(|b| b.out.len() > b.written) {
                Timeout::Send
            } else {
                TIMEOUTS.fetch_add(1, Relaxed);
                log::warn!("proxy: the upstream stopped in the middle of a response");
                Timeout::Header
            };
            cx.site.counters.timeout(kind);
            return Ok(Progress::Done);
        }
        if !matches!(ex.body, ReqBody::Done) {
            cx.site.counters.timeout(Timeout::Header);
            let Some(mut ex) = self.take_ex() else {
                return Ok(Progress::Done);
            };
            if let (Some(ups), Some(key)) = (cx.proxy.as_deref_mut(), ex.up) {
                ups.discard(key);
            }
            let b = self.bufs.get_or_insert_with(|| cx.pool.take());
            b.input.clear();
            let reply = write_error(cx.site, 408, Persist::Close, false, &[], &mut b.out);
            ex.status = 408;
            ex.sent = reply.body_len;
            log_response(cx.site, self.http.peer(), &ex);
            self.answered_locally(cx, false)?;
            return self.drive(cx);
        }
        let waited = cx
            .proxy
            .as_deref()
            .map_or(Duration::ZERO, |p| p.config.timeout);
        self.gateway_error(
            cx,
            Failure::Timeout,
            &format_args!("no answer in {waited:?}"),
        )?;
        self.drive(cx)
    }
    // ANCHOR_END: exchange_timeout
}

/// Refused or otherwise broken.
fn failure_of(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Failure::Refused
    } else {
        Failure::Broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProxyConfig {
        ProxyConfig::new("http://127.0.0.1:9", None, Duration::from_secs(1), 4).unwrap()
    }

    fn head_for(raw: &str, peer: &str) -> String {
        let limits = parse::Limits::default();
        let Ok(Status::Complete(req)) = parse::parse(raw.as_bytes(), &limits) else {
            panic!("{raw:?} does not parse");
        };
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            raw.as_bytes(),
            &req,
            peer.parse().unwrap(),
            &config(),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_flag_is_read_and_checked() {
        let c = ProxyConfig::new(
            "http://localhost:8081/",
            Some("/app/"),
            Duration::from_secs(2),
            8,
        )
        .unwrap();
        assert_eq!(c.authority, "localhost:8081");
        assert_eq!(c.upstream.port(), 8081);
        assert!(c.forwards("/app/x") && !c.forwards("/other"));
        for bad in ["https://h:1", "h:1", "http://h:1/path", "http://"] {
            assert!(
                ProxyConfig::new(bad, None, Duration::from_secs(1), 1).is_err(),
                "{bad}"
            );
        }
        assert!(ProxyConfig::new("http://h:1", Some("app"), Duration::from_secs(1), 1).is_err());
    }

    #[test]
    fn hop_by_hop_fields_go_and_the_client_is_named() {
        let head = head_for(
            "GET http://example/a?b=1 HTTP/1.1\r\nHost: example\r\nConnection: close, X-Secret\r\n\
             X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nAccept: */*\r\n\
             X-Forwarded-For: 10.0.0.1\r\n\r\n",
            "192.0.2.7",
        );
        assert_eq!(
            head,
            "GET /a?b=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\
             X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n\
             Forwarded: for=192.0.2.7;proto=http;host=\"example\"\r\n\r\n"
        );
    }

    #[test]
    fn an_http10_request_gets_a_host_and_asks_to_keep_the_connection() {
        let head = head_for("GET / HTTP/1.0\r\n\r\n", "::1");
        assert_eq!(
            head,
            "GET / HTTP/1.0\r\nHost: 127.0.0.1:9\r\nX-Forwarded-For: ::1\r\n\
             Forwarded: for=\"[::1]\";proto=http\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    fn exchange(version: Version, head_request: bool) -> Exchange {
        Exchange {
            up: None,
            reused: false,
            retried: false,
            to_up: Vec::new(),
            to_up_written: 0,
            head_in_to_up: true,
            body: ReqBody::Done,
            expect_continue: false,
            resp: Resp::Head,
            up_in: Vec::new(),
            head_request,
            version,
            wants_keep_alive: true,
            keep_client: false,
            reusable: false,
            started: false,
            status: 0,
            sent: 0,
            line: Box::default(),
            referer: None,
            user_agent: None,
        }
    }

    /// The response head as the client gets it, and what the proxy decided.
    fn respond(raw: &str, version: Version) -> (String, Option<(bool, bool)>) {
        let mut ex = exchange(version, false);
        ex.up_in = raw.as_bytes().to_vec();
        let mut out = Vec::new();
        let head = response_head(&mut ex, false, &mut out).ok().flatten();
        (
            String::from_utf8(out).unwrap(),
            head.map(|h| (h.persistent, ex.keep_client)),
        )
    }

    #[test]
    fn the_response_head_loses_hop_by_hop_fields_and_gets_our_connection_header() {
        let (out, decided) = respond(
            "HTTP/1.1 200 OK\r\nServer: up\r\nConnection: close\r\nKeep-Alive: 3\r\nContent-Length: 2\r\n\r\nok",
            Version::Http10,
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        );
        // The upstream closes; the client keeps its connection.
        assert_eq!(decided, Some((false, true)));
        let (out, decided) = respond("HTTP/1.1 200 OK\r\nServer: up\r\n\r\n", Version::Http11);
        assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
        assert_eq!(decided, Some((false, false)), "no length: read until close");
    }

    #[test]
    fn bad_response_heads_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            let mut ex = exchange(Version::Http11, false);
            ex.up_in = raw.as_bytes().to_vec();
            let r = response_head(&mut ex, false, &mut Vec::new());
            assert!(matches!(r, Err(Failure::Broken)), "{raw:?}");
        }
        let mut ex = exchange(Version::Http11, false);
        ex.up_in = vec![b'a'; MAX_RESPONSE_HEAD + 1];
        assert!(response_head(&mut ex, false, &mut Vec::new()).is_err());
    }

    /// Whatever an upstream sends, the head parser and the body framing
    /// return: an answer, "more", or an error; never a panic. Random bytes,
    /// and a valid response with one byte changed at every place.
    #[test]
    fn any_bytes_from_the_upstream_are_handled_without_panicking() {
        let valid: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X\r\n\
              Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for i in 0..valid.len() {
            for b in [0u8, b'\r', b'\n', b':', b' ', b'9', 0xff] {
                let mut v = valid.to_vec();
                v[i] = b;
                inputs.push(v);
            }
            inputs.push(valid[..i].to_vec());
        }
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let len = (x % 300) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // Mostly the bytes an HTTP head is made of.
                    b"HTTP/1.0 204 \r\n:;,chunkedContent-Length0123456789abcdef\xff"
                        [x as usize % 56]
                })
                .collect();
            inputs.push(v);
        }
        for input in inputs {
            for (version, head_request) in [(Version::Http11, false), (Version::Http10, true)] {
                let mut ex = exchange(version, head_request);
                ex.up_in = input.clone();
                let mut out = Vec::new();
                if let Ok(Some(h)) = response_head(&mut ex, false, &mut out) {
                    let mut resp = h.resp;
                    let rest = &input[h.len.min(input.len())..];
                    if let Ok(used) = frame(&mut resp, rest) {
                        assert!(used <= rest.len());
                    }
                }
            }
        }
    }

    #[test]
    fn bodies_end_where_their_framing_says() {
        let mut r = Resp::Length(5);
        assert_eq!(frame(&mut r, b"abc").unwrap(), 3);
        assert_eq!(frame(&mut r, b"defgh").unwrap(), 2);
        assert!(matches!(r, Resp::Done));
        let mut r = Resp::Chunked(Box::new(Decoder::new(u64::MAX, 1024)));
        assert_eq!(frame(&mut r, b"3\r\nabc\r\n0\r\n\r\nEXTRA").unwrap(), 13);
        assert!(matches!(r, Resp::Done));
        let mut r = Resp::Chunked(Box::new(Decoder::new(u64::MAX, 1024)));
        assert!(frame(&mut r, b"zz\r\n").is_err());
    }
}
