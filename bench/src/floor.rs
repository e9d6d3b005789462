//! The floor: not a server, the ceiling of this kernel and loopback.
//!
//! One `mio` loop on one thread that reads whatever arrives, counts the
//! request ends in it (`\r\n\r\n`, found across reads) and writes one
//! pre-built response per request it counted. It parses nothing else,
//! opens no file, formats no date and logs nothing, so what it costs is
//! what every server on this machine pays at least: `epoll_wait`, `accept`,
//! `read`, `write` and `close`, and the kernel's loopback TCP under them.
//! A stage at 0.9× the floor in the same round has 10% of the time left to
//! win; one at 0.5× spends as much on itself as on the kernel.
//!
//! Responses owed to a pipelining client go out together, up to 32 in one
//! `write`.
//!
//! It closes a connection once it has answered every request it has read
//! and the bytes it read contained `close` (the `Connection: close` of the
//! connection-per-request scenario): a scan of the bytes, not a parse.
//! It is only for the bench (`floor` binary, the report's `floor` row),
//! never for a client that expects HTTP to be honoured.

use std::io::{self, Read, Write};
use std::net::TcpListener;

use mio::net::{TcpListener as MioListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);
/// The end of a request head.
const END: &[u8; 4] = b"\r\n\r\n";

/// The one response: a `200` with `body`, keep-alive.
pub fn response(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Counts request ends across reads: how many bytes of [`END`] the last
/// read ended with.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ends {
    matched: usize,
}

impl Ends {
    /// The request ends `bytes` completes.
    pub fn count(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        for &b in bytes {
            self.matched = if b == END[self.matched] {
                self.matched + 1
            } else if b == END[0] {
                1
            } else {
                0
            };
            if self.matched == END.len() {
                n += 1;
                self.matched = 0;
            }
        }
        n
    }
}

struct Conn {
    stream: TcpStream,
    ends: Ends,
    /// Bytes owed: the responses counted and not yet written.
    owed: usize,
    /// Where in the response the next byte to write is.
    offset: usize,
    close: bool,
    eof: bool,
}

/// The response repeated [`BATCH`] times: the responses owed to a
/// pipelining client go out in one `write`, as a good server batches them.
struct Batch {
    bytes: Vec<u8>,
    one: usize,
}

const BATCH: usize = 32;

/// Serves `listener` until an error: the floor's loop.
pub fn serve(listener: TcpListener, response: &[u8]) -> io::Result<()> {
    let batch = Batch {
        bytes: response.repeat(BATCH),
        one: response.len(),
    };
    listener.set_nonblocking(true)?;
    let mut listener = MioListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            let _ = stream.set_nodelay(true);
                            entry.insert(Conn {
                                stream,
                                ends: Ends::default(),
                                owed: 0,
                                offset: 0,
                                close: false,
                                eof: false,
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // Out of descriptors or a connection reset before
                        // it was taken: the next event tries again.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if !drive(conn, &mut buf, &batch) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Reads until `WouldBlock`, then writes what is owed until done or
/// `WouldBlock`. False when the connection is finished.
fn drive(c: &mut Conn, buf: &mut [u8], batch: &Batch) -> bool {
    while !c.eof {
        match c.stream.read(buf) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                c.owed += c.ends.count(&buf[..n]) * batch.one;
                if buf[..n]
                    .windows(5)
                    .any(|w| w.eq_ignore_ascii_case(b"close"))
                {
                    c.close = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while c.owed > 0 {
        let end = (c.offset + c.owed).min(batch.bytes.len());
        match c.stream.write(&batch.bytes[c.offset..end]) {
            Ok(n) => {
                c.owed -= n;
                c.offset = (c.offset + n) % batch.one;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    !(c.eof || c.close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ends_are_counted_across_reads_split_at_every_byte() {
        let two = b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        for cut in 0..=two.len() {
            let mut ends = Ends::default();
            let n = ends.count(&two[..cut]) + ends.count(&two[cut..]);
            assert_eq!(n, 2, "split at {cut}");
        }
        // A CR before the end does not hide it.
        assert_eq!(Ends::default().count(b"x\r\r\n\r\n"), 1);
        assert_eq!(Ends::default().count(b"x\r\n\r"), 0);
    }

    #[test]
    fn answers_each_pipelined_request_and_closes_on_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body = b"<p>floor</p>".to_vec();
        let one = response(&body);
        std::thread::spawn(move || serve(listener, &response(&body)));
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, one.repeat(3));

        // More than a batch in one go, then a close.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut many = b"GET / HTTP/1.1\r\n\r\n".repeat(100);
        many.extend_from_slice(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        s.write_all(&many).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), one.len() * 101);
        assert_eq!(got, one.repeat(101));
    }
}
