//! The blocking model: accept one client, serve it until it leaves, accept
//! the next. Every `read` and `write` waits for as long as it takes.
//!
//! This is the first server of the course, kept on purpose: connect a
//! second `nc` while the first is still open and watch it wait. The kernel
//! completes the second handshake (the listen backlog), so `connect`
//! succeeds, but nobody calls `accept` until the first client leaves, and
//! its lines sit unread in the kernel's buffer.
//!
//! Two concessions to the real world: before `accept` and before each
//! `read` the thread waits in `poll` on the socket *and* the signal
//! self-pipe ([`Signals::wait_readable`]), so Ctrl-C still gets a goodbye
//! out; and that wait has the idle timeout, so a silent client cannot hold
//! the server forever. The writes stay blocking: a client that never reads
//! does stall this server — the problem `event_loop.rs` solves.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Instant;

use common::signals::Signals;

use crate::net::{ACCEPT_BACKOFF, LINGER, interrupted};
use crate::room::{ClientId, Limits, Room, Status};

// ANCHOR: run
/// Serves clients one after the other until SIGINT/SIGTERM.
pub fn run(listener: TcpListener, limits: Limits, signals: &Signals) -> io::Result<()> {
    let mut room = Room::new(limits, Instant::now());
    while !signals.shutdown_requested() {
        // Sleep until a client is waiting, or a signal arrives.
        if !signals.wait_readable(listener.as_fd(), None)? {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            // The client gave up between the handshake and our accept.
            Err(e) if interrupted(&e) || e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: the listener stays
                // readable, so retrying at once would spin. Wait, still
                // awake to a signal (the self-pipe is the only fd polled).
                log::error!("accept: {e}; pausing for {ACCEPT_BACKOFF:?}");
                signals.wait_readable(signals.wake_fd(), Some(ACCEPT_BACKOFF))?;
                continue;
            }
        };
        let id = match room.connect(Instant::now()) {
            Ok(id) => id,
            Err(refusal) => {
                // Only with --max-clients 0; one client at a time otherwise.
                let _ = (&stream).write_all(&refusal);
                continue;
            }
        };
        log::info!("client {id}: connected from {peer}");
        // Per-connection errors end the connection, never the server.
        if let Err(e) = serve(&stream, id, &mut room, signals) {
            log::warn!("client {id}: {e}");
        }
        room.remove(id);
        log::info!("client {id}: disconnected");
    }
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: serve
/// Talks to one client until it quits, closes, times out, or a signal asks
/// the server to stop.
fn serve(stream: &TcpStream, id: ClientId, room: &mut Room, signals: &Signals) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        // Blocking write of everything pending; `write_all` loops over
        // partial writes for us. Writing may let the room decode more.
        while !room.pending(id).is_empty() {
            let n = room.pending(id).len();
            (&*stream).write_all(room.pending(id))?;
            room.advance(id, n);
        }
        match room.status(id) {
            Status::Open => {}
            Status::Closing => return linger_close(stream, signals),
            Status::Kill => return Ok(()),
        }
        // Wait for input, a signal, or the idle deadline.
        let timeout = room
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        if !signals.wait_readable(stream.as_fd(), timeout)? {
            if signals.shutdown_requested() {
                room.shutdown();
            } else {
                room.expire_idle(Instant::now());
            }
            continue;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => room.eof(id),
            Ok(n) => room.received(id, &buf[..n], Instant::now()),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
// ANCHOR_END: serve

/// Sends FIN after the goodbye and waits (briefly) for the client's FIN, so
/// that closing does not turn into a reset that could eat the goodbye.
fn linger_close(stream: &TcpStream, signals: &Signals) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        if !signals.wait_readable(stream.as_fd(), Some(left))? {
            continue; // a signal or the time-out: check the clock again
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
