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
//! - [`io`]: blocking helpers the next stage reuses: reading with a
//!   deadline, `sendfile`, and the lingering close.

pub mod io;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Instant;

use common::http::{Conn, Site, Step};
use common::server::Timeouts;
use common::signals::Signals;

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
                log::error!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Ok(())
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
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(opts.timeouts.send))?;
    let site = opts.site;
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
        let (used, step) = conn.next(&input, site, draining, &mut out);
        input.drain(..used);
        match step {
            Step::Respond(reply) => {
                stream.write_all(&out)?;
                out.clear();
                if let Some(region) = &reply.file {
                    send_region(&stream, region, opts.signals, opts.timeouts.grace)?;
                }
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
                if waiting && draining {
                    return Ok(());
                }
                let deadline = if waiting && conn.served() > 0 {
                    last_response + opts.timeouts.keepalive
                } else {
                    request_began + opts.timeouts.header
                };
                let wake = waiting.then_some(opts.signals);
                match read_until(&mut stream, &mut input, deadline, wake)? {
                    ReadOutcome::Data => {
                        if waiting {
                            request_began = Instant::now();
                        }
                    }
                    ReadOutcome::Eof | ReadOutcome::Interrupted => return Ok(()),
                    ReadOutcome::TimedOut => {
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
