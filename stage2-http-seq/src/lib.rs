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
//! - [`Hooks`] and [`serve_connection_with`]: the same loop, steerable by a
//!   server that shares its threads between connections (stage 3).
//! - [`io`]: blocking helpers the next stage reuses: reading with a
//!   deadline, `sendfile`, and the lingering close.

pub mod io;

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
}

// ANCHOR: accept_loop
/// Accepts connections one at a time and serves each to the end, until a
/// shutdown is requested.
pub fn run(listener: &TcpListener, opts: &Options<'_>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    while !opts.signals.shutdown_requested() {
        // Block in poll(2) on the listener *and* the signal self-pipe, so
        // that SIGTERM is noticed even when nobody connects.
        if !opts.signals.wait_readable(listener.as_fd(), None)? {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                // Errors of one connection (a reset, a timeout) are that
                // connection's business: log them and accept the next.
                if let Err(e) = serve_connection(stream, peer, opts) {
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
    Ok(())
}
// ANCHOR_END: accept_loop

// ANCHOR: hooks
/// How a server that shares threads between connections steers
/// [`serve_connection_with`]. Stage 2 owns the only thread and needs none of
/// this: every method's default keeps its behaviour.
pub trait Hooks {
    /// True when other connections are waiting for a thread. The next
    /// response then says `Connection: close`, and a keep-alive connection
    /// idle between requests is closed instead of waited on.
    fn others_waiting(&self) -> bool {
        false
    }

    /// How long an idle keep-alive connection waits before asking
    /// [`Hooks::others_waiting`] again; `None` never asks.
    fn recheck_every(&self) -> Option<Duration> {
        None
    }

    /// True: before closing a connection that looks idle (at shutdown, or
    /// to make room), look whether a request already sits in the kernel's
    /// receive buffer, and answer it first.
    fn answer_arrived(&self) -> bool {
        false
    }

    /// Called after each response is written.
    fn responded(&self, _reply: &Reply) {}

    /// Called when an idle keep-alive connection is closed because
    /// [`Hooks::others_waiting`] said so.
    fn yielded(&self) {}
}
// ANCHOR_END: hooks

/// Stage 2's hooks: nobody else waits for its only thread; but at shutdown
/// a request that already arrived on an idle connection is still answered
/// (closing would reset it, and the client could not tell it was unread).
struct Sequential;

impl Hooks for Sequential {
    fn answer_arrived(&self) -> bool {
        true
    }
}

/// Serves one connection until the client closes it, a timeout fires, an
/// error occurs, or the server shuts down.
pub fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    opts: &Options<'_>,
) -> std::io::Result<()> {
    serve_connection_with(stream, peer, opts, &Sequential)
}

/// True if `stream` has bytes (or an EOF) to read right now.
fn readable_now(stream: &TcpStream, signals: &Signals) -> std::io::Result<bool> {
    signals.wait_readable(stream.as_fd(), Some(Duration::ZERO))
}

// ANCHOR: serve_connection
/// [`serve_connection`], steered by `hooks`.
pub fn serve_connection_with(
    mut stream: TcpStream,
    peer: SocketAddr,
    opts: &Options<'_>,
    hooks: &dyn Hooks,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(opts.timeouts.send))?;
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
    loop {
        let draining = opts.signals.shutdown_requested();
        // Others waiting for a thread make this response the last one.
        let crowded = hooks.others_waiting();
        let (used, step) = conn.next(&input, site, draining || crowded, &mut out);
        input.drain(..used);
        match step {
            Step::Respond(reply) => {
                stream.write_all(&out).map_err(|e| track.send_error(e))?;
                out.clear();
                if let Some(region) = &reply.file {
                    send_region(&stream, region, opts.signals, opts.timeouts.grace)
                        .map_err(|e| track.send_error(e))?;
                }
                hooks.responded(&reply);
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
                // requests (keep-alive timeout). A shutdown closes it at once.
                let waiting = input.is_empty() && !conn.skipping_body();
                let idle = waiting && conn.served() > 0;
                let yielding = idle && crowded;
                if (waiting && draining) || yielding {
                    let arrived = hooks.answer_arrived() && readable_now(&stream, opts.signals)?;
                    if !arrived {
                        if yielding && !draining {
                            hooks.yielded();
                        }
                        return Ok(());
                    }
                }
                let deadline = if idle {
                    last_response + opts.timeouts.keepalive
                } else {
                    request_began + opts.timeouts.header
                };
                // An idle connection wakes now and then to ask the hooks
                // whether someone else needs this thread.
                let wait_end = match hooks.recheck_every() {
                    Some(every) if idle => deadline.min(Instant::now() + every),
                    _ => deadline,
                };
                let wake = waiting.then_some(opts.signals);
                track.idle(waiting);
                let outcome = read_until(&mut stream, &mut input, wait_end, wake)?;
                track.idle(false);
                match outcome {
                    ReadOutcome::Data => {
                        if waiting {
                            request_began = Instant::now();
                        }
                    }
                    ReadOutcome::Eof | ReadOutcome::Interrupted => return Ok(()),
                    ReadOutcome::TimedOut if wait_end < deadline => {}
                    ReadOutcome::TimedOut => {
                        site.counters.timeout(if idle {
                            Timeout::KeepAlive
                        } else {
                            Timeout::Header
                        });
                        if let Some(_reply) = conn.timeout(&input, site, &mut out) {
                            stream.write_all(&out)?;
                            linger_close(&stream);
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
}
// ANCHOR_END: serve_connection

/// A connection as the status page counts it: open from `Track::open` to
/// drop, idle while it waits for a request with nothing received.
struct Track {
    counters: &'static Counters,
    idle: bool,
}

impl Track {
    fn open(counters: &'static Counters) -> Track {
        counters.opened();
        Track {
            counters,
            idle: false,
        }
    }

    fn idle(&mut self, idle: bool) {
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
