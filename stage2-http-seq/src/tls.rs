//! The same loop as [`crate::serve_connection`], through TLS.
//!
//! Only the waiting and the moving of bytes change: a read goes through
//! rustls (`common::tls::Session::read_from`, which may bring no
//! plaintext while the handshake goes on), a write is encrypted first, and
//! a file is read and encrypted in chunks because `sendfile(2)` cannot
//! encrypt. The HTTP decisions are still `Conn`'s. It is kept beside the
//! plain loop, not inside it, so that the plain loop stays the lesson of
//! this stage (and the one stage 3's chapter compares).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Instant;

use common::http::{Conn, Step};
use common::signals::Signals;
use common::stats::Timeout;
use common::tls::{Input, Session};

use crate::io::{ReadOutcome, linger_close};
use crate::{Options, Track, prepare};

/// Serves one TLS connection until it closes, times out or fails; a bad
/// handshake (plaintext on the TLS port, say) is counted and closed.
pub fn serve_tls_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    opts: &Options<'_>,
    config: &std::sync::Arc<common::tls::ServerConfig>,
) -> io::Result<()> {
    prepare(&stream, opts)?;
    let site = opts.site;
    let mut track = Track::open(site.counters);
    let mut tls = Session::new(config, site.counters)?;
    let mut conn = Conn::new(peer.ip());
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // The header timeout runs from the accept: it bounds the handshake too.
    let mut request_began = Instant::now();
    let mut last_response = Instant::now();
    let mut drain_began: Option<Instant> = None;
    loop {
        let draining = opts.signals.shutdown_requested();
        let (used, step) = conn.next(&input, site, draining, &mut out);
        input.drain(..used);
        match step {
            Step::Respond(reply) => {
                tls.send_blocking(&mut stream, &out)?;
                out.clear();
                if let Some(region) = &reply.file {
                    let mut grace = None;
                    tls.send_region(&mut stream, region, || {
                        grace_left(opts.signals, &mut grace, opts.timeouts.grace)
                    })?;
                }
                if !reply.keep_alive {
                    return goodbye(&mut stream, &mut tls);
                }
                last_response = Instant::now();
                request_began = last_response;
            }
            Step::Close => return goodbye(&mut stream, &mut tls),
            Step::NeedInput => {
                let waiting = input.is_empty() && !conn.skipping_body() && !tls.handshaking();
                let idle = waiting && conn.served() > 0;
                let mut deadline = if idle {
                    last_response + opts.timeouts.keepalive
                } else {
                    request_began + opts.timeouts.header
                };
                if waiting && draining {
                    let began = *drain_began.get_or_insert_with(Instant::now);
                    deadline = deadline.min(began + opts.timeouts.last_request);
                }
                let wake = (waiting && !draining).then_some(opts.signals);
                track.idle(waiting);
                let outcome = read_tls_until(&mut stream, &mut tls, &mut input, deadline, wake)?;
                track.idle(false);
                match outcome {
                    ReadOutcome::Data => {
                        if waiting {
                            request_began = Instant::now();
                        }
                    }
                    ReadOutcome::Eof => return Ok(()),
                    ReadOutcome::Interrupted => {}
                    ReadOutcome::TimedOut => {
                        // Mid-handshake: counted, and closed without a 408.
                        if tls.timed_out() {
                            return Ok(());
                        }
                        site.counters.timeout(if idle {
                            Timeout::KeepAlive
                        } else {
                            Timeout::Header
                        });
                        if conn.timeout(&input, site, &mut out).is_some() {
                            tls.send_blocking(&mut stream, &out)?;
                            return goodbye(&mut stream, &mut tls);
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// `close_notify`, then the lingering close.
fn goodbye(stream: &mut TcpStream, tls: &mut Session) -> io::Result<()> {
    tls.close_notify();
    let _ = tls.flush_blocking(stream);
    linger_close(stream);
    Ok(())
}

/// Once a shutdown starts, a file being sent gets `grace` more.
fn grace_left(
    signals: &Signals,
    deadline: &mut Option<Instant>,
    grace: std::time::Duration,
) -> io::Result<()> {
    if signals.shutdown_requested() {
        let d = *deadline.get_or_insert_with(|| Instant::now() + grace);
        if Instant::now() >= d {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "grace period over"));
        }
    }
    Ok(())
}

/// [`crate::io::read_until`] through TLS: reads until some plaintext
/// arrives (sending the handshake's answers on the way), the peer closes,
/// or `deadline` passes.
pub fn read_tls_until(
    stream: &mut TcpStream,
    tls: &mut Session,
    input: &mut Vec<u8>,
    deadline: Instant,
    wake: Option<&Signals>,
) -> io::Result<ReadOutcome> {
    loop {
        let Some(remaining) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Ok(ReadOutcome::TimedOut);
        };
        if let Some(signals) = wake {
            if !signals.wait_readable(stream.as_fd(), Some(remaining))? {
                if signals.shutdown_requested() {
                    return Ok(ReadOutcome::Interrupted);
                }
                continue;
            }
        }
        stream.set_read_timeout(Some(remaining))?;
        match tls.read_from(stream, input) {
            Ok(Input::Eof) => return Ok(ReadOutcome::Eof),
            Ok(Input::Data(n)) => {
                tls.flush_blocking(stream)?;
                if n > 0 {
                    return Ok(ReadOutcome::Data);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(ReadOutcome::TimedOut);
            }
            Err(e) => {
                // rustls's alert, if the socket takes it.
                let _ = tls.flush_blocking(stream);
                return Err(e);
            }
        }
    }
}
