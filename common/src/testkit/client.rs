//! A deliberately simple HTTP/1.1 client for tests: raw bytes out, parsed
//! responses in, nothing hidden.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use super::check::{self, Failure, fail};

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD, 204, 304).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The servers the test client speaks TLS to, and the client
/// configuration for each (see [`speak_tls_to`]).
static TLS_SERVERS: Mutex<Vec<(SocketAddr, Arc<rustls::ClientConfig>)>> = Mutex::new(Vec::new());

/// From now on, every [`Client`] connecting to `addr` speaks TLS with
/// `config`: it completes the handshake when it connects, and every byte a
/// check sends or reads goes through the TLS session. That is how the
/// conformance suite runs unchanged over TLS (`conformance_tests!`'s `tls`
/// configurations). The entry lives as long as the test binary.
pub fn speak_tls_to(addr: SocketAddr, config: Arc<rustls::ClientConfig>) {
    let mut servers = TLS_SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    servers.retain(|(a, _)| *a != addr);
    servers.push((addr, config));
}

/// The TLS client configuration for `addr`, if [`speak_tls_to`] named it.
fn tls_config_for(addr: SocketAddr) -> Option<Arc<rustls::ClientConfig>> {
    let servers = TLS_SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    servers
        .iter()
        .find(|(a, _)| *a == addr)
        .map(|(_, c)| Arc::clone(c))
}

/// A connection to a server under test.
#[derive(Debug)]
pub struct Client {
    /// The socket. For a TLS server it carries TLS records: read and write
    /// through [`read_raw`](Self::read_raw) and
    /// [`write_raw`](Self::write_raw), and use the socket itself only for
    /// socket options.
    pub stream: TcpStream,
    /// The TLS session, for a server named by [`speak_tls_to`].
    tls: Option<Box<rustls::ClientConnection>>,
    /// Bytes received and not yet parsed.
    buf: Vec<u8>,
    /// The first write that failed (the server closed or reset): reported
    /// by the next read if that read finds no answer, because a server
    /// that refuses a request may close before it has read all of it.
    write_error: Option<io::Error>,
    /// Responses read so far on this connection (a failure to read the
    /// next one after some is a keep-alive failure, and says so).
    responses: usize,
}

impl Client {
    /// Connects, with a read timeout (10 s, or the checker's per-check
    /// timeout) as an upper bound on every wait.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).expect("connect to the server under test")
    }

    /// Connects, or returns the error (a refused connection after a
    /// shutdown, say).
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        check::record_connect(addr);
        check::record_http();
        let stream = TcpStream::connect_timeout(&addr, check::io_timeout())?;
        Client::over(stream)
    }

    /// Connects with a 4 KiB receive buffer, set *before* the handshake so
    /// that the window the client advertises stays small: a client that
    /// reads slowly, or not at all, stalls the server's writes after a few
    /// KiB, whatever the machine's buffer sizes.
    pub fn connect_small_window(addr: SocketAddr) -> Client {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrStorage, connect, setsockopt, socket,
            sockopt,
        };
        use std::os::fd::AsRawFd;
        check::record_connect(addr);
        check::record_http();
        let family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd =
            socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("a TCP socket");
        setsockopt(&fd, sockopt::RcvBuf, &4096).expect("set SO_RCVBUF");
        connect(fd.as_raw_fd(), &SockaddrStorage::from(addr))
            .expect("connect to the server under test");
        Client::over(TcpStream::from(fd)).expect("set the socket's options")
    }

    /// A client on a connected stream, with the read and write timeouts;
    /// for a TLS server, after a complete handshake.
    fn over(mut stream: TcpStream) -> io::Result<Client> {
        stream.set_read_timeout(Some(check::io_timeout()))?;
        stream.set_write_timeout(Some(check::io_timeout()))?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let tls = match tls_config_for(peer) {
            None => None,
            Some(config) => {
                let name = rustls::pki_types::ServerName::from(peer.ip());
                let mut conn =
                    rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut stream)
                        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
                }
                Some(Box::new(conn))
            }
        };
        Ok(Client {
            stream,
            tls,
            buf: Vec::new(),
            write_error: None,
            responses: 0,
        })
    }

    /// Connects, or fails the check.
    pub fn open(addr: SocketAddr) -> Result<Client, Failure> {
        Client::try_connect(addr).map_err(|e| fail(format!("a connection to {addr}: {e}")))
    }

    /// Sends raw bytes. A failed write does not panic: it is remembered,
    /// and the next read reports it if the server has not answered.
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        check::record_sent(bytes);
        if self.write_error.is_none()
            && let Err(e) = self.write_raw(bytes)
        {
            self.write_error = Some(e);
        }
        self
    }

    /// Writes `bytes` as they are (through TLS on a TLS connection), with
    /// no bookkeeping: a failed write is returned, not remembered.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            None => self.stream.write_all(bytes),
            Some(conn) => {
                let mut tls = rustls::Stream::new(conn, &mut self.stream);
                tls.write_all(bytes)?;
                tls.flush()
            }
        }
    }

    /// Reads what the server sent (decrypted on a TLS connection), past
    /// the response parser and its buffer; 0 when the server closed (a TLS
    /// server's close without `close_notify` is a close too: HTTP's own
    /// framing says whether the answer was whole).
    pub fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => self.stream.read(buf),
            Some(conn) => match rustls::Stream::new(conn, &mut self.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }

    /// Without waiting: true if the server has started to answer or has
    /// closed. On a TLS connection only application data counts (not the
    /// session tickets a TLS 1.3 server sends after the handshake), and
    /// what arrived is kept for the next response.
    pub fn answered_or_closed(&mut self) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(true);
        }
        self.stream.set_nonblocking(true)?;
        let got = match self.tls.as_deref_mut() {
            None => {
                let mut b = [0u8; 1];
                match self.stream.peek(&mut b) {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(conn) => Self::tls_ready(conn, &mut self.stream, &mut self.buf),
        };
        self.stream.set_nonblocking(false)?;
        got
    }

    /// [`answered_or_closed`](Self::answered_or_closed) on a TLS
    /// connection whose socket is non-blocking.
    fn tls_ready(
        conn: &mut rustls::ClientConnection,
        sock: &mut TcpStream,
        buf: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let mut eof = false;
        loop {
            match conn.read_tls(sock) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {
                    let state = conn.process_new_packets().map_err(io::Error::other)?;
                    if state.plaintext_bytes_to_read() > 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let mut chunk = [0u8; 16384];
        match conn.reader().read(&mut chunk) {
            Ok(n) => {
                check::record_received(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(eof),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.read_raw(&mut chunk)?;
        check::record_received(&chunk[..n]);
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response, or fails the check saying what went wrong.
    pub fn answer(&mut self, head_request: bool) -> Result<Response, Failure> {
        self.try_response(head_request).map_err(|e| {
            let closed = matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            );
            if closed && self.responses > 0 && self.buf.is_empty() {
                // The root cause, whether or not a write failed first.
                return fail(format!(
                    "an answer to request {} on this connection, but the server closed it \
                     after {} response(s): HTTP/1.1 connections stay open unless a side \
                     says `Connection: close` (RFC 9112 9.3)",
                    self.responses + 1,
                    self.responses
                ));
            }
            let why = match (&self.write_error, e.kind()) {
                (Some(w), _) => format!("sending the request failed ({w}), and then: {e}"),
                (None, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    format!("no complete response within {:?}", check::io_timeout())
                }
                _ => e.to_string(),
            };
            fail(format!("a complete HTTP response: {why}"))
        })
    }

    /// Reads one response; `head_request` says whether it answers a HEAD
    /// (then it has no body whatever Content-Length says).
    pub fn try_response(&mut self, head_request: bool) -> io::Result<Response> {
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a complete response head",
                ));
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(&self.buf[..head_len]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad response head: {e}"),
            )
        })?;
        let status = resp.code.unwrap_or(0);
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        self.buf.drain(..head_len);
        let chunked = r
            .header("Transfer-Encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let no_body =
            head_request || status == 304 || status == 204 || (100..200).contains(&status);
        if !no_body && check::strict_framing() && r.header("Content-Length").is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response without Content-Length",
            ));
        }
        if no_body {
            // No body, whatever the headers say.
        } else if chunked {
            r.body = self.read_chunked()?;
        } else if let Some(v) = r.header("Content-Length") {
            let len: usize = v.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a bad Content-Length: {v:?}"),
                )
            })?;
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed in the middle of a body",
                    ));
                }
            }
            r.body = self.buf.drain(..len).collect();
        } else {
            // Neither length nor chunks: the body ends when the server
            // closes (RFC 9112 6.3, rule 8).
            while self.fill()? > 0 {}
            r.body = std::mem::take(&mut self.buf);
        }
        self.responses += 1;
        Ok(r)
    }

    /// Reads a chunked body (RFC 9112 7.1) from the buffer and the socket.
    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
            let size = usize::from_str_radix(String::from_utf8_lossy(size_text).trim(), 16)
                .map_err(|_| bad("a bad chunk size in a chunked response"))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed in the middle of a chunked body",
                    ));
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// One line (without its CRLF) from the buffer and the socket.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the middle of a chunked body",
                ));
            }
        }
    }

    /// Bytes received and not yet parsed (after a failed read: whether the
    /// server had started to answer).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads one response, failing the test if there is none.
    pub fn response(&mut self, head_request: bool) -> Response {
        self.try_response(head_request)
            .expect("a complete response")
    }

    /// Reads one response to a GET and fails the test unless it is exactly
    /// one response: framed by `Content-Length` (as every stage of ours
    /// frames a response), with no byte after it among those received. Use
    /// it when nothing else is asked on the connection; after pipelined
    /// requests, [`response`](Self::response).
    pub fn exact_response(&mut self) -> Response {
        let r = self.response(false);
        assert!(
            r.header("Content-Length").is_some(),
            "a response without Content-Length: {r:?}"
        );
        assert!(
            self.buf.is_empty(),
            "{} byte(s) after the response, unasked: {:?}",
            self.buf.len(),
            String::from_utf8_lossy(&self.buf)
        );
        r
    }

    /// Sends `GET path` (HTTP/1.1, keep-alive) and reads its response with
    /// [`exact_response`](Self::exact_response).
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.exact_response()
    }

    /// Reads what the server has sent so far (waiting up to the read
    /// timeout for at least one byte) and keeps it for the next response;
    /// returns how many bytes came, 0 if the server closed. For a test that
    /// starts a download and then stops reading.
    pub fn read_some(&mut self) -> usize {
        self.fill().expect("bytes from the server")
    }

    /// True if the server closes the connection (EOF or reset) with nothing
    /// more to say, within the read timeout.
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        matches!(self.fill(), Ok(0) | Err(_)) && self.buf.is_empty()
    }

    /// Fails the test unless the server closes the connection (with a FIN
    /// or a reset) with nothing more to say, before the read timeout.
    pub fn expect_closed(&mut self) {
        let (rest, end) = self.read_until_closed();
        assert!(
            rest.is_empty(),
            "a close, but the server sent {:?}",
            String::from_utf8_lossy(&rest)
        );
        match end {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a close within {:?}, got: {e}", check::io_timeout()),
        }
    }

    /// Reads everything until the server closes the connection (or the
    /// read timeout expires).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        self.read_until_closed().0
    }

    /// Reads everything until the connection ends (bytes received before
    /// and not parsed included), and how it ended: `Ok` for the server's
    /// FIN, else the error (a reset, or the read timeout).
    pub fn read_until_closed(&mut self) -> (Vec<u8>, io::Result<()>) {
        let mut all = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 16384];
        loop {
            match self.read_raw(&mut chunk) {
                Ok(0) => return (all, Ok(())),
                Ok(n) => {
                    check::record_received(&chunk[..n]);
                    all.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (all, Err(e)),
            }
        }
    }
}

/// Sends `request` on a new connection and returns one response, or fails
/// the check.
pub fn fetch(addr: SocketAddr, request: &str) -> Result<Response, Failure> {
    let head = request.starts_with("HEAD ");
    let mut c = Client::open(addr)?;
    c.send(request.as_bytes());
    c.answer(head)
}

/// Sends `request` on a new connection and returns one response.
pub fn get(addr: SocketAddr, request: &str) -> Response {
    let head = request.starts_with("HEAD ");
    let mut c = Client::connect(addr);
    c.send(request.as_bytes());
    c.response(head)
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;

    /// A server that reads one request head, answers `reply`, then closes
    /// (with a reset if `reset`).
    fn canned(reply: &'static [u8], reset: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            s.write_all(reply).unwrap();
            if reset {
                super::super::reset_on_close(&s);
            }
        });
        addr
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

    /// `get` reads its one response, and the close after it passes
    /// `expect_closed`; a byte after the response, or a response without
    /// `Content-Length`, fails `get`.
    #[test]
    fn get_demands_exactly_one_framed_response() {
        let mut c = Client::connect(canned(OK, false));
        let r = c.get("/");
        assert_eq!((r.status, &r.body[..]), (200, &b"hi"[..]));
        c.expect_closed();

        let extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiX";
        let mut c = Client::connect(canned(extra, false));
        assert!(catch_unwind(AssertUnwindSafe(|| c.get("/"))).is_err());

        let unframed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhi";
        let mut c = Client::connect(canned(unframed, false));
        assert!(catch_unwind(AssertUnwindSafe(|| c.get("/"))).is_err());
    }

    /// `read_until_closed` keeps the bytes already received, and tells a
    /// FIN from a reset; `expect_closed` fails if bytes come instead.
    #[test]
    fn the_end_of_a_connection_is_told_apart() {
        let mut c = Client::connect(canned(OK, false));
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        assert!(c.read_some() > 0);
        let (all, end) = c.read_until_closed();
        assert_eq!(all, OK);
        assert!(end.is_ok(), "{end:?}");

        let mut c = Client::connect(canned(OK, true));
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        let (_, end) = c.read_until_closed();
        // Whether the reply arrived before the reset is up to the kernel.
        assert_eq!(
            end.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );

        let mut c = Client::connect(canned(OK, false));
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        assert!(catch_unwind(AssertUnwindSafe(|| c.expect_closed())).is_err());
    }

    /// A small-window connection asks the kernel for a small receive
    /// buffer before the handshake (Linux doubles what is asked).
    #[test]
    fn a_small_window_connection_has_a_small_receive_buffer() {
        let mut c = Client::connect_small_window(canned(OK, false));
        let size =
            nix::sys::socket::getsockopt(&c.stream, nix::sys::socket::sockopt::RcvBuf).unwrap();
        assert!(size <= 8192, "SO_RCVBUF is {size}");
        assert_eq!(c.get("/").status, 200);
    }
}
