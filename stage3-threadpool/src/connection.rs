//! The classic model's connection loop (`--idle classic`): stage 2's
//! loop, plus the fairness policy and a cheaper read.
//!
//! Stage 2 owns its only thread, so its loop serves a connection for as
//! long as the client likes. A worker of the pool shares its thread with
//! every connection still waiting in the queue, so this loop asks, before
//! each response and while a keep-alive connection is idle, whether others
//! wait (`--fair`), and lets go of its connection if they do.
//!
//! It also reads differently. Stage 2's `read_until` sets the socket's
//! receive timeout and polls it with the signal pipe before every read: 4
//! system calls per keep-alive request (`poll`, `setsockopt`, `recvfrom`,
//! `sendto`). Here the receive timeout is set once per connection to a
//! short [`TICK`], and the loop reads with it and looks at the deadlines
//! and the shutdown flag each time a read times out: a request costs its
//! read and its write, 2 calls. Everything else — writing and `sendfile`,
//! the timeouts, the lingering close — is stage 2's, called as it is.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::http::{Conn, Step};
use common::signals::Signals;
use stage2_http_seq::io::{ReadOutcome, linger_close};
use stage2_http_seq::{Options, Track, prepare, readable_now, send_response, time_out};

use crate::stats::Stats;
use crate::{Context, RECHECK_EVERY};

/// The receive timeout of a classic connection, set once: how long one
/// blocked read waits before the loop looks at its deadlines, the fairness
/// policy and the shutdown flag again. Every timeout is late by at most
/// this much.
pub const TICK: Duration = RECHECK_EVERY;

// ANCHOR: serve_connection
/// Serves one connection until the client closes it, a timeout fires, an
/// error occurs, the server shuts down — or, with `--fair`, other
/// connections are waiting for a worker.
pub fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    opts: &Options<'_>,
    ctx: &Context,
) -> std::io::Result<()> {
    prepare(&stream, opts)?;
    // Once per connection, not per read (see [`read_ticking`]).
    stream.set_read_timeout(Some(TICK))?;
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
        // With `--fair`, connections waiting in the queue make this
        // response the last one.
        let crowded = ctx.fair && ctx.stats.others_waiting();
        let (used, step) = conn.next(&input, site, draining || crowded, &mut out);
        input.drain(..used);
        match step {
            Step::Respond(reply) => {
                send_response(&stream, &mut out, &reply, opts, &track)?;
                // The pool's counters.
                Stats::bump(&ctx.stats.requests);
                ctx.stats.bytes.fetch_add(reply.body_len, Ordering::Relaxed);
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
                // With `--fair`, a crowd in the queue closes an idle
                // connection, unless a request already sits in the receive
                // buffer: closing then would reset it, and the client could
                // not tell it was unread.
                if idle && crowded && !draining && !readable_now(&stream, opts.signals)? {
                    Stats::bump(&ctx.stats.yielded);
                    return Ok(());
                }
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
                // A worker blocked reading an idle connection cannot be
                // told that the queue filled up, so it wakes now and then to
                // look again.
                let wait_end = if idle && ctx.fair {
                    deadline.min(Instant::now() + RECHECK_EVERY)
                } else {
                    deadline
                };
                // Waiting for a request, a shutdown wakes the read at once
                // (the last-request wait above is the one exception).
                let wake = (waiting && !draining).then_some(opts.signals);
                track.idle(waiting);
                let outcome = read_ticking(&mut stream, &mut input, wait_end, wake)?;
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
                    // Only the recheck's short wait ended: look again.
                    ReadOutcome::TimedOut if wait_end < deadline => {}
                    ReadOutcome::TimedOut => {
                        return time_out(&mut stream, &mut conn, &input, idle, opts, &mut out);
                    }
                }
            }
        }
    }
}
// ANCHOR_END: serve_connection

// ANCHOR: read_ticking
/// Reads once into the end of `input`, waiting until `wait_end` at most.
/// The socket's receive timeout ([`TICK`], set once) bounds each blocked
/// `read`; when one times out, the deadline (and, with `wake`, the
/// shutdown flag) is looked at and the read is tried again. When bytes are
/// there, that is one system call.
fn read_ticking(
    stream: &mut TcpStream,
    input: &mut Vec<u8>,
    wait_end: Instant,
    wake: Option<&Signals>,
) -> std::io::Result<ReadOutcome> {
    let mut buf = [0u8; 8192];
    loop {
        if wake.is_some_and(Signals::shutdown_requested) {
            return Ok(ReadOutcome::Interrupted);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => {
                input.extend_from_slice(&buf[..n]);
                return Ok(ReadOutcome::Data);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= wait_end {
                    return Ok(ReadOutcome::TimedOut);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
// ANCHOR_END: read_ticking
