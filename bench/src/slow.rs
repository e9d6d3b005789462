//! Slow clients: the attack traffic of scenario 6.
//!
//! - *slowloris* connections send a request head one byte at a time and
//!   never finish it, so a server that gives each connection a thread
//!   keeps the thread waiting until its header timeout;
//! - *slow readers* ask for the 1 MiB file with a tiny receive buffer and
//!   read it at a trickle, so the server's sends stall.
//!
//! Both reconnect when the server gives up on them, so the pressure lasts
//! for the whole run. All of it runs on one thread of non-blocking sockets.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};

use crate::loadgen::reader::ResponseReader;

/// How often every slow client makes its little progress.
const TICK: Duration = Duration::from_millis(100);

/// What a slow reader reads per tick.
const READ_PER_TICK: usize = 1024;

/// The slow clients, running until dropped or stopped.
#[derive(Debug)]
pub struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Connections the server closed (and that were reopened).
    pub reconnects: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl SlowClients {
    /// Starts `slowloris` trickling heads and `readers` slow readers of
    /// `large_path`.
    pub fn start(
        addr: SocketAddr,
        slowloris: usize,
        readers: usize,
        large_path: &str,
    ) -> io::Result<SlowClients> {
        let stop = Arc::new(AtomicBool::new(false));
        let reconnects = Arc::new(AtomicU64::new(0));
        let request = crate::loadgen::request(addr, large_path, false);
        let (s, r) = (Arc::clone(&stop), Arc::clone(&reconnects));
        let thread = thread::Builder::new()
            .name("slow-clients".into())
            .spawn(move || run(addr, slowloris, readers, &request, &s, &r))?;
        Ok(SlowClients {
            stop,
            reconnects,
            thread: Some(thread),
        })
    }

    /// Stops them and closes their connections.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A head that never ends: after the request line and `Host`, one more
/// header byte every tick.
const SLOW_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: ";

struct Loris {
    stream: Option<TcpStream>,
    sent: usize,
}

struct Reader {
    stream: Option<TcpStream>,
    reader: ResponseReader,
}

fn connect(addr: SocketAddr, small_rcvbuf: bool) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    if small_rcvbuf {
        // The kernel doubles the value and enforces a minimum; the point
        // is only that the window stays small.
        let _ = setsockopt(&s, sockopt::RcvBuf, &4096);
    }
    s.set_nonblocking(true).ok()?;
    Some(s)
}

fn run(
    addr: SocketAddr,
    slowloris: usize,
    readers: usize,
    request: &[u8],
    stop: &AtomicBool,
    reconnects: &AtomicU64,
) {
    let mut loris: Vec<Loris> = (0..slowloris)
        .map(|_| Loris {
            stream: None,
            sent: 0,
        })
        .collect();
    let mut slow: Vec<Reader> = (0..readers)
        .map(|_| Reader {
            stream: None,
            reader: ResponseReader::new(),
        })
        .collect();
    let mut buf = [0u8; READ_PER_TICK];
    while !stop.load(Ordering::Relaxed) {
        for l in &mut loris {
            if l.stream.is_none() {
                l.stream = connect(addr, false);
                l.sent = 0;
            }
            let Some(s) = l.stream.as_mut() else { continue };
            let chunk: &[u8] = if l.sent < SLOW_HEAD.len() {
                // The request line and Host at once, then a byte per tick.
                &SLOW_HEAD[l.sent..]
            } else {
                b"a"
            };
            let alive = match s.write(chunk) {
                Ok(n) => {
                    l.sent += n;
                    true
                }
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            };
            // Anything the server says (a 408) means it gave up on us.
            let answered =
                !matches!(s.read(&mut buf), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock);
            if !alive || answered {
                l.stream = None;
                reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        for r in &mut slow {
            if r.stream.is_none() {
                r.stream = connect(addr, true);
                r.reader.reset();
                if let Some(s) = r.stream.as_mut()
                    && s.write_all(request).is_err()
                {
                    r.stream = None;
                }
            }
            let Some(s) = r.stream.as_mut() else { continue };
            let mut done = false;
            let mut close = false;
            let ok = match s.read(&mut buf) {
                Ok(0) => false,
                Ok(n) => r
                    .reader
                    .feed(&buf[..n], &mut |resp| {
                        done = true;
                        close |= resp.close;
                    })
                    .is_ok(),
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            };
            if !ok || close {
                r.stream = None;
                reconnects.fetch_add(1, Ordering::Relaxed);
            } else if done && s.write_all(request).is_err() {
                r.stream = None;
            }
        }
        thread::sleep(TICK);
    }
}
