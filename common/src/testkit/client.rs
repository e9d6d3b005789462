//! A deliberately simple HTTP/1.1 client for tests: raw bytes out, parsed
//! responses in, nothing hidden.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

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

/// A connection to a server under test.
#[derive(Debug)]
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
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
        stream.set_read_timeout(Some(check::io_timeout()))?;
        stream.set_write_timeout(Some(check::io_timeout()))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
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
            && let Err(e) = self.stream.write_all(bytes)
        {
            self.write_error = Some(e);
        }
        self
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
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

    /// True if the server closes the connection (EOF or reset) with nothing
    /// more to say, within the read timeout.
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        matches!(self.fill(), Ok(0) | Err(_)) && self.buf.is_empty()
    }

    /// Reads everything until the server closes the connection (or the
    /// read timeout expires).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 16384];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    check::record_received(&chunk[..n]);
                    all.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        all
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
