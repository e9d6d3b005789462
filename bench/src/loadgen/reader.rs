//! Reading HTTP/1.1 responses off a byte stream, as a client sees them.
//!
//! The load generator never looks at a body: it only needs to know where
//! one response ends and the next begins, its status, and whether the server
//! will close the connection after it. [`ResponseReader`] is sans-IO like the
//! servers' core: feed it whatever `read` returned — half a head, three
//! pipelined responses, the middle of a 1 MiB body — and it calls back once
//! per complete response. A body is counted, never copied.

use std::fmt;

use httparse::{EMPTY_HEADER, Status};

/// The longest response head accepted, so a broken peer cannot make the
/// reader buffer without limit.
const MAX_HEAD: usize = 64 * 1024;

/// Response headers parsed at most; our servers send about ten.
const MAX_HEADERS: usize = 64;

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Body bytes received.
    pub body_len: u64,
    /// The server said `Connection: close` (or spoke HTTP/1.0 without
    /// keep-alive): no further response will come on this connection.
    pub close: bool,
}

/// Why a byte stream is not a sequence of responses we can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// `httparse` refused the head, or the head is longer than 64 KiB.
    Malformed,
    /// A framing the load generator does not follow (`Transfer-Encoding`).
    Unsupported,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadError::Malformed => "malformed response head",
            ReadError::Unsupported => "unsupported response framing",
        })
    }
}

impl std::error::Error for ReadError {}

/// Where the reader is within the current response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a head.
    Head,
    /// Counting `left` more body bytes of a response with this head.
    Body { left: u64, head: Response },
    /// A body without a length: it ends when the server closes.
    UntilClose { head: Response },
}

/// Splits a byte stream into responses. See the module docs.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    /// An incomplete head carried over from the previous `feed` (empty
    /// almost always: a head normally arrives in one read).
    partial: Vec<u8>,
    /// The current position in the stream.
    state: State,
    /// The request method was `HEAD`: responses have no body.
    head_requests: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new()
    }
}

impl ResponseReader {
    /// A reader for responses to `GET` requests.
    pub fn new() -> ResponseReader {
        ResponseReader {
            partial: Vec::new(),
            state: State::Head,
            head_requests: false,
        }
    }

    /// A reader for responses to `HEAD` requests (no bodies).
    pub fn for_head_requests() -> ResponseReader {
        ResponseReader {
            head_requests: true,
            ..ResponseReader::new()
        }
    }

    /// True when no response is partly received.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.state == State::Head
    }

    /// Forgets any partial response (the connection was replaced).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.state = State::Head;
    }

    /// Consumes `data`, calling `on_response` for every response it
    /// completes, in order.
    pub fn feed(
        &mut self,
        data: &[u8],
        on_response: &mut impl FnMut(Response),
    ) -> Result<(), ReadError> {
        if self.partial.is_empty() {
            return self.feed_slice(data, on_response);
        }
        // Rare: a head split across reads. Join the pieces and start over;
        // `feed_slice` stores a still-incomplete head in `partial` again.
        let mut joined = std::mem::take(&mut self.partial);
        joined.extend_from_slice(data);
        self.feed_slice(&joined, on_response)
    }

    /// The server closed the connection: completes a response whose body
    /// was delimited by the close, if one was being read.
    pub fn eof(&mut self) -> Option<Response> {
        let done = match self.state {
            State::UntilClose { head } => Some(head),
            _ => None,
        };
        self.reset();
        done
    }

    fn feed_slice(
        &mut self,
        mut data: &[u8],
        on_response: &mut impl FnMut(Response),
    ) -> Result<(), ReadError> {
        loop {
            match self.state {
                State::Body { left, mut head } => {
                    let n = left.min(data.len() as u64);
                    data = &data[n as usize..];
                    head.body_len += n;
                    if n == left {
                        self.state = State::Head;
                        on_response(head);
                    } else {
                        self.state = State::Body {
                            left: left - n,
                            head,
                        };
                        return Ok(());
                    }
                }
                State::UntilClose { mut head } => {
                    head.body_len += data.len() as u64;
                    self.state = State::UntilClose { head };
                    return Ok(());
                }
                State::Head => {
                    if data.is_empty() {
                        return Ok(());
                    }
                    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut headers);
                    match resp.parse(data) {
                        Ok(Status::Partial) => {
                            if data.len() > MAX_HEAD {
                                return Err(ReadError::Malformed);
                            }
                            self.partial.extend_from_slice(data);
                            return Ok(());
                        }
                        Err(_) => return Err(ReadError::Malformed),
                        Ok(Status::Complete(n)) => {
                            let status = resp.code.unwrap_or(0);
                            let framing = framing(&resp, self.head_requests)?;
                            let head = Response {
                                status,
                                body_len: 0,
                                close: framing.close,
                            };
                            data = &data[n..];
                            self.state = match framing.length {
                                Some(0) => {
                                    on_response(head);
                                    State::Head
                                }
                                Some(left) => State::Body { left, head },
                                None => State::UntilClose {
                                    head: Response {
                                        close: true,
                                        ..head
                                    },
                                },
                            };
                        }
                    }
                }
            }
        }
    }
}

/// How a parsed head frames its body.
struct Framing {
    /// Body length; `None`: until the server closes.
    length: Option<u64>,
    /// No further response follows on this connection.
    close: bool,
}

fn framing(resp: &httparse::Response<'_, '_>, head_request: bool) -> Result<Framing, ReadError> {
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut close = http10;
    let mut length = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| ReadError::Malformed)?;
            length = Some(v.trim().parse::<u64>().map_err(|_| ReadError::Malformed)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Unsupported);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    // RFC 9112 section 6.3: these responses never have a body.
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        length = Some(0);
    }
    Ok(Framing { length, close })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    const NOT_FOUND_CLOSE: &[u8] =
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno!";

    fn collect(reader: &mut ResponseReader, chunks: &[&[u8]]) -> Vec<Response> {
        let mut got = Vec::new();
        for c in chunks {
            reader.feed(c, &mut |r| got.push(r)).unwrap();
        }
        got
    }

    /// One response in one read is reported once, with its body length.
    #[test]
    fn one_response_in_one_read() {
        let got = collect(&mut ResponseReader::new(), &[OK]);
        assert_eq!(
            got,
            [Response {
                status: 200,
                body_len: 5,
                close: false
            }]
        );
    }

    /// A response fed one byte at a time (every possible split of head
    /// and body) is still reported exactly once.
    #[test]
    fn byte_by_byte_partial_reads() {
        let mut reader = ResponseReader::new();
        let chunks: Vec<&[u8]> = OK.chunks(1).collect();
        let got = collect(&mut reader, &chunks);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body_len, 5);
        assert!(reader.is_idle());
    }

    /// Pipelined responses arriving in one read are split correctly, and
    /// `Connection: close` is noticed.
    #[test]
    fn pipelined_responses_in_one_read() {
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(OK);
        }
        stream.extend_from_slice(NOT_FOUND_CLOSE);
        let got = collect(&mut ResponseReader::new(), &[&stream]);
        assert_eq!(got.len(), 4);
        assert!(got[..3].iter().all(|r| r.status == 200 && !r.close));
        assert_eq!(got[3].status, 404);
        assert!(got[3].close);
    }

    /// Pipelined responses split at every position across two reads.
    #[test]
    fn pipelined_responses_split_anywhere() {
        let mut stream = Vec::new();
        stream.extend_from_slice(OK);
        stream.extend_from_slice(NOT_FOUND_CLOSE);
        stream.extend_from_slice(OK);
        for cut in 0..=stream.len() {
            let got = collect(
                &mut ResponseReader::new(),
                &[&stream[..cut], &stream[cut..]],
            );
            let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [200, 404, 200], "cut at {cut}");
        }
    }

    /// A large body is counted, not buffered, across many reads.
    #[test]
    fn large_body_across_reads() {
        let mut reader = ResponseReader::new();
        let mut got = Vec::new();
        reader
            .feed(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n",
                &mut |r| got.push(r),
            )
            .unwrap();
        let block = vec![0u8; 4096];
        for _ in 0..256 {
            reader.feed(&block, &mut |r| got.push(r)).unwrap();
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body_len, 1 << 20);
    }

    /// 304 and responses to HEAD have no body, whatever Content-Length says.
    #[test]
    fn bodiless_responses() {
        let got = collect(
            &mut ResponseReader::new(),
            &[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"],
        );
        assert_eq!(got[0].body_len, 0);
        let head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let got = collect(
            &mut ResponseReader::for_head_requests(),
            &[head_only, head_only],
        );
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|r| r.body_len == 0));
    }

    /// A body without a length ends at EOF; HTTP/1.0 closes by default.
    #[test]
    fn body_until_close() {
        let mut reader = ResponseReader::new();
        let got = collect(&mut reader, &[b"HTTP/1.0 200 OK\r\n\r\nabc", b"def"]);
        assert!(got.is_empty());
        let r = reader.eof().unwrap();
        assert_eq!(r.body_len, 6);
        assert!(r.close);
    }

    /// Garbage and chunked framing are errors, not panics.
    #[test]
    fn errors() {
        let mut reader = ResponseReader::new();
        assert_eq!(
            reader.feed(b"NOT HTTP\r\n\r\n", &mut |_| {}),
            Err(ReadError::Malformed)
        );
        let mut reader = ResponseReader::new();
        assert_eq!(
            reader.feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &mut |_| {}
            ),
            Err(ReadError::Unsupported)
        );
    }
}
