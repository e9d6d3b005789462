//! Stage 2: a sequential HTTP/1.1 static-file server.
//!
//! **What this stage demonstrates.** The whole request path of a real web
//! server with nothing in the way: `accept` a connection, `read` bytes until
//! the sans-IO core in `common` has a complete request head, write the
//! response head, `sendfile(2)` the body, and go round again on the same
//! connection (keep-alive) until it closes or idles out. Then accept the next.
//!
//! **What changed since stage 1.** The line protocol became HTTP/1.1, which
//! `common::http` parses, answers and serializes; this crate only moves bytes
//! between the socket and that core. Blocking I/O is back — on purpose.
//!
//! **What it cannot do.** Serve two clients at once. While one client holds
//! its keep-alive connection open, or reads a large file slowly, every other
//! client waits in the kernel's accept queue. The timeouts (header read,
//! keep-alive idle, send) are what stop one client from holding the server
//! forever; stage 3 removes the limit with threads.
//!
//! # Layout
//! - [`run`]: the accept loop.
//! - [`serve_connection`]: one connection, request after request.
//! - [`prepare`], [`send_response`], [`time_out`], [`readable_now`] and
//!   [`Track`]: the loop's pieces, which stage 3's workers reuse in a loop
//!   of their own.
//! - [`tls`]: the same loop through TLS (`--tls-cert`): only how it
//!   reads and writes changes.
//! - [`io`]: blocking helpers the next stage reuses: reading with a
//!   deadline, `sendfile`, and the lingering close.

pub mod io;
pub mod tls;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::http::{Conn, Reply, Site, Step};
use common::server::Timeouts;
use common::signals::Signals;
use common::stats::{Counters, Timeout};

use crate::io::{ReadOutcome, linger_close, read_until, send_region};

/// What [`serve_connection`] needs besides the socket.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The site to serve.
    pub site: &'a Site,
    /// Header, keep-alive, send and grace timeouts.
    pub timeouts: Timeouts,
    /// The shutdown flag and its self-pipe: an idle keep-alive connection
    /// is closed at once when a shutdown starts.
    pub signals: &'a Signals,
    /// With `--tls-cert`: connections are served by
    /// [`tls::serve_tls_connection`].
    pub tls: Option<&'a std::sync::Arc<common::tls::ServerConfig>>,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGINT or SIGTERM: the server is done.
    Shutdown,
    /// SIGHUP: re-read the configuration, and call `run` again.
    Reload,
}

// ANCHOR: accept_loop
/// Accepts connections one at a time and serves each to the end, until a
/// shutdown (or, between two connections, a reload) is requested.
pub fn run(listener: &TcpListener, opts: &Options<'_>) -> std::io::Result<Exit> {
    listener.set_nonblocking(true)?;
    while !opts.signals.shutdown_requested() {
        if opts.signals.take_reload() {
            return Ok(Exit::Reload);
        }
        // Block in poll(2) on the listener *and* the signal self-pipe, so
        // that SIGTERM is noticed even when nobody connects.
        if !opts.signals.wait_readable(listener.as_fd(), None)? {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                // Errors of one connection (a reset, a timeout) are that
                // connection's business: log them and accept the next.
                let served = match opts.tls {
                    Some(config) => tls::serve_tls_connection(stream, peer, opts, config),
                    None => serve_connection(stream, peer, opts),
                };
                if let Err(e) = served {
                    log::debug!("{peer}: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // EMFILE/ENFILE: out of descriptors. The pending connection
                // stays queued; back off instead of spinning on it.
                let pause = common::limits::ACCEPT_PAUSE;
                log::error!("accept: {e}; pausing for {pause:?}");
                std::thread::sleep(pause);
            }
        }
    }
    Ok(Exit::Shutdown)
}
// ANCHOR_END: accept_loop

// ANCHOR: serve_connection
/// Serves one connection until the client closes it, a timeout fires, an
/// error occurs, or the server shuts down.
pub fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    opts: &Options<'_>,
) -> std::io::Result<()> {
    prepare(&stream, opts)?;
    let site = opts.site;
    // Counts the connection as open (and idle, while it waits between
    // requests) for the status page, until it is dropped.
    let mut track = Track::open(site.counters);
    let mut conn = Conn::new(peer.ip());
    // Bytes received and not yet consumed by the parser (a partial head, or
    // the next pipelined requests).
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    // The response being built; reused for every response on the connection.
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // When the current request's head began: the header timeout counts from
    // here, so a client trickling one byte at a time is still cut off.
    let mut request_began = Instant::now();
    let mut last_response = Instant::now();
    // When this connection first saw the shutdown (see below).
    let mut drain_began: Option<Instant> = None;
    loop {
        // Once a shutdown has started, the next response is the last one.
        let draining = opts.signals.shutdown_requested();
        let (used, step) = conn.next(&input, site, draining, &mut out);
        input.drain(..used);
        match step {
            Step::Respond(reply) => {
                send_response(&stream, &mut out, &reply, opts, &track)?;
                if !reply.keep_alive {
                    linger_close(&stream);
                    return Ok(());
                }
                last_response = Instant::now();
                request_began = last_response;
            }
            Step::Close => {
                linger_close(&stream);
                return Ok(());
            }
            Step::NeedInput => {
                // With nothing received, the connection is waiting: for its
                // first request (header timeout from the accept) or between
                // requests (keep-alive timeout).
                let waiting = input.is_empty() && !conn.skipping_body();
                let idle = waiting && conn.served() > 0;
                let mut deadline = if idle {
                    last_response + opts.timeouts.keepalive
                } else {
                    request_began + opts.timeouts.header
                };
                // A shutdown does not close a waiting connection at once: its
                // client may have sent the next request already (the last
                // response still said keep-alive), and closing would reset
                // the connection under it. It gets `--last-request` for that
                // request, answered with `Connection: close`.
                if waiting && draining {
                    let began = *drain_began.get_or_insert_with(Instant::now);
                    deadline = deadline.min(began + opts.timeouts.last_request);
                }
                // Waiting for a request, a shutdown wakes the read at once
                // (the last-request wait above is the one exception).
                let wake = (waiting && !draining).then_some(opts.signals);
                track.idle(waiting);
                let outcome = read_until(&mut stream, &mut input, deadline, wake)?;
                track.idle(false);
                match outcome {
                    ReadOutcome::Data => {
                        if waiting {
                            request_began = Instant::now();
                        }
                    }
                    ReadOutcome::Eof => return Ok(()),
                    // A shutdown began while we waited: go round, and wait
                    // for the last request.
                    ReadOutcome::Interrupted => {}
                    ReadOutcome::TimedOut => {
                        return time_out(&mut stream, &mut conn, &input, idle, opts, &mut out);
                    }
                }
            }
        }
    }
}
// ANCHOR_END: serve_connection

// The pieces of the loop that stage 3's workers reuse as they are.

/// Puts a freshly accepted connection in the shape the loop expects:
/// blocking, no Nagle delay, and a send timeout on every write.
pub fn prepare(stream: &TcpStream, opts: &Options<'_>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(opts.timeouts.send))
}

/// Writes the response the core built into `out` (head, and a small body
/// read into memory), then `sendfile`s the file region if there is one.
pub fn send_response(
    mut stream: &TcpStream,
    out: &mut Vec<u8>,
    reply: &Reply,
    opts: &Options<'_>,
    track: &Track,
) -> std::io::Result<()> {
    stream.write_all(out).map_err(|e| track.send_error(e))?;
    out.clear();
    if let Some(region) = &reply.file {
        send_region(stream, region, opts.signals, opts.timeouts.grace)
            .map_err(|e| track.send_error(e))?;
    }
    Ok(())
}

/// A header or keep-alive timeout fired: count it, send the core's `408`
/// if it has one for this state (a partial request), and close.
pub fn time_out(
    stream: &mut TcpStream,
    conn: &mut Conn,
    input: &[u8],
    idle: bool,
    opts: &Options<'_>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    opts.site.counters.timeout(if idle {
        Timeout::KeepAlive
    } else {
        Timeout::Header
    });
    if conn.timeout(input, opts.site, out).is_some() {
        stream.write_all(out)?;
        linger_close(stream);
    }
    Ok(())
}

/// True if `stream` has bytes (or an EOF) to read right now.
pub fn readable_now(stream: &TcpStream, signals: &Signals) -> std::io::Result<bool> {
    signals.wait_readable(stream.as_fd(), Some(Duration::ZERO))
}

/// A connection as the status page counts it: open from `Track::open` to
/// drop, idle while it waits for a request with nothing received.
#[derive(Debug)]
pub struct Track {
    counters: &'static Counters,
    idle: bool,
}

impl Track {
    /// Counts a new open connection.
    pub fn open(counters: &'static Counters) -> Track {
        counters.opened();
        Track {
            counters,
            idle: false,
        }
    }

    /// Marks the connection idle (waiting with nothing received) or not.
    pub fn idle(&mut self, idle: bool) {
        if idle != self.idle {
            self.counters.idle(idle);
            self.idle = idle;
        }
    }

    /// Counts a send that timed out (SO_SNDTIMEO, or the grace period).
    fn send_error(&self, e: std::io::Error) -> std::io::Error {
        if matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            self.counters.timeout(Timeout::Send);
        }
        e
    }
}

impl Drop for Track {
    fn drop(&mut self) {
        self.idle(false);
        self.counters.closed();
    }
}
