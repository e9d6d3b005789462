//! A deliberately simple HTTP/1.1 client for tests: raw bytes out, parsed
//! responses in, nothing hidden.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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
}

impl Client {
    /// Connects, with a 10 s read timeout as an upper bound on every wait.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).expect("connect to the server under test")
    }

    /// Connects, or returns the error (a refused connection after a
    /// shutdown, say).
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.stream.write_all(bytes).expect("send to the server");
        self
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
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
        let len: usize = if head_request || status == 304 || status == 204 {
            0
        } else {
            r.header("Content-Length")
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "response without Content-Length",
                    )
                })?
        };
        while self.buf.len() < head_len + len {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the middle of a body",
                ));
            }
        }
        r.body = self.buf[head_len..head_len + len].to_vec();
        self.buf.drain(..head_len + len);
        Ok(r)
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

    /// Reads everything until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.buf);
        let _ = self.stream.read_to_end(&mut all);
        all
    }
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
