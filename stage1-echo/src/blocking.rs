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

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::signals::Signals;

use crate::net::{ACCEPT_BACKOFF, LINGER, interrupted};
use crate::room::{ClientId, Limits, Room, Status};

// ANCHOR: run
/// Serves clients one after the other until SIGINT/SIGTERM.
pub fn run(listener: TcpListener, limits: Limits, signals: &Signals) -> io::Result<()> {
    let room = RefCell::new(Room::new(limits, Instant::now()));
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
        let id = match room.borrow_mut().connect(Instant::now()) {
            Ok(id) => id,
            Err(refusal) => {
                // Only with --max-clients 0; one client at a time otherwise.
                let _ = (&stream).write_all(&refusal);
                continue;
            }
        };
        log::info!("client {id}: connected from {peer}");
        // Per-connection errors end the connection, never the server.
        if let Err(e) = serve(&stream, id, &room, signals, None) {
            log::warn!("client {id}: {e}");
        }
        room.borrow_mut().remove(id);
        log::info!("client {id}: disconnected");
    }
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: serve
/// Where a session finds the room: owned by the one thread that serves
/// (this model: a `RefCell`), or shared by the workers of a pool behind a
/// lock (stage 3's `--protocol line`: a `Mutex`). [`serve`] holds it only
/// for a moment at a time, never while it waits for the network.
pub trait RoomAccess {
    /// Runs `f` on the room.
    fn with<R>(&self, f: impl FnOnce(&mut Room) -> R) -> R;
}

impl RoomAccess for RefCell<Room> {
    fn with<R>(&self, f: impl FnOnce(&mut Room) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

impl RoomAccess for Mutex<Room> {
    fn with<R>(&self, f: impl FnOnce(&mut Room) -> R) -> R {
        // A worker that panicked holding the lock left the room as it was
        // between two calls: still consistent, so carry on.
        f(&mut self.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Talks to one client until it quits, closes, times out, or a signal asks
/// the server to stop. With `recheck`, the wait for the client's input
/// also ends that often, to write what *other* clients' sessions put in
/// this one's output (chat relays, on a pool where each client has a
/// thread of its own).
pub fn serve(
    stream: &TcpStream,
    id: ClientId,
    room: &impl RoomAccess,
    signals: &Signals,
    recheck: Option<Duration>,
) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        // Blocking write of everything pending; `write_all` loops over
        // partial writes for us. Writing may let the room decode more. The
        // bytes are copied out first: the room is not held while we wait
        // for a slow client to read.
        loop {
            let out = room.with(|r| r.pending(id).to_vec());
            if out.is_empty() {
                break;
            }
            (&*stream).write_all(&out)?;
            room.with(|r| r.advance(id, out.len()));
        }
        match room.with(|r| r.status(id)) {
            Status::Open => {}
            Status::Closing => return linger_close(stream, signals),
            Status::Kill => return Ok(()),
        }
        // Wait for input, a signal, the idle deadline, or the recheck.
        let idle = room
            .with(|r| r.next_deadline())
            .map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = match (idle, recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !signals.wait_readable(stream.as_fd(), timeout)? {
            if signals.shutdown_requested() {
                room.with(|r| r.shutdown());
            } else {
                room.with(|r| r.expire_idle(Instant::now()));
            }
            continue;
        }
        let got = match (&*stream).read(&mut buf) {
            Ok(n) => n,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e),
        };
        room.with(|r| match got {
            0 => r.eof(id),
            n => r.received(id, &buf[..n], Instant::now()),
        });
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
