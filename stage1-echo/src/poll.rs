//! The `poll(2)` model: one thread, every socket non-blocking, one call that
//! waits for whichever of them is ready.
//!
//! Each turn of the loop:
//!
//! 1. builds the interest list: the signal self-pipe, the listener (unless
//!    shutting down), and every client — `POLLIN` if the room wants its
//!    input, `POLLOUT` if it has output pending;
//! 2. sleeps in `poll` until something is ready or the next deadline (idle
//!    timeout, lingering close, shutdown grace) passes;
//! 3. accepts new clients, reads from readable ones, writes to writable
//!    ones, each call non-blocking so no client can stall the loop;
//! 4. closes the connections the room is done with.
//!
//! The loop owns the sockets; the [`Room`] owns the bytes. Rebuilding the
//! `pollfd` array every turn is O(clients), and so is the kernel's work in
//! `poll`: that is the cost stage 4's `epoll` removes.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Instant;

use common::signals::Signals;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};

use crate::net::{ACCEPT_BACKOFF, GRACE, LINGER, interrupted, poll_timeout, would_block};
use crate::room::{ClientId, Limits, Room, Status};

/// Bytes read per `read` call. One read per readiness report keeps the loop
/// fair: `poll` is level-triggered and reports the socket again next turn
/// if more is waiting.
const READ_CHUNK: usize = 16 * 1024;

/// One client socket and where it is in its life.
#[derive(Debug)]
struct Conn {
    /// Non-blocking, so a read or write never waits.
    stream: TcpStream,
    /// See [`Phase`].
    phase: Phase,
}

/// The life of a connection after `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Talking: the room decides what to read and write.
    Active,
    /// The room is done with the client (`QUIT`, an error, idle, shutdown):
    /// write what is pending, the goodbye last, but give up at `until` if
    /// the client does not read it.
    Flushing {
        /// Close anyway at this time.
        until: Instant,
    },
    /// Lingering close: our goodbye is written and our side shut down
    /// (`FIN` sent); we read and discard until the client closes too, or
    /// `until` passes. Closing at once while the client's unread data sits
    /// in our receive buffer would make the kernel send `RST`, and an `RST`
    /// can destroy the goodbye before the client reads it.
    Draining {
        /// Close anyway at this time.
        until: Instant,
    },
}

// ANCHOR: run
/// Serves until SIGINT/SIGTERM, then says goodbye to everyone and returns.
pub fn run(listener: TcpListener, limits: Limits, signals: &Signals) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = Some(listener);
    let mut room = Room::new(limits, Instant::now());
    // A BTreeMap so the pollfd array comes out in the same order every turn
    // (easier to follow in strace); ids are small slab keys.
    let mut conns: BTreeMap<ClientId, Conn> = BTreeMap::new();
    let mut shutdown_at: Option<Instant> = None;
    let mut accept_paused_until: Option<Instant> = None;
    let mut buf = vec![0u8; READ_CHUNK];

    loop {
        let now = Instant::now();
        if shutdown_at.is_none() && signals.shutdown_requested() {
            log::info!("shutting down: saying goodbye to {} clients", conns.len());
            listener = None; // close(2): new connections are refused from now on
            room.shutdown();
            shutdown_at = Some(now + GRACE);
        }
        if let Some(deadline) = shutdown_at {
            if conns.is_empty() || now >= deadline {
                return Ok(());
            }
        }

        // 1. The interest list. A pause that is over is forgotten: left in
        // place, its deadline (in the past) would make every poll return at
        // once, and the loop would spin.
        if accept_paused_until.is_some_and(|t| now >= t) {
            accept_paused_until = None;
        }
        let accepting = listener.is_some() && accept_paused_until.is_none();
        let mut fds = Vec::with_capacity(conns.len() + 2);
        fds.push(PollFd::new(signals.wake_fd(), PollFlags::POLLIN));
        if let (true, Some(l)) = (accepting, &listener) {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        // Remember which client each entry is for: `ready[first_conn + i]`
        // belongs to `ids[i]`.
        let first_conn = fds.len();
        let ids: Vec<ClientId> = conns.keys().copied().collect();
        for (&id, conn) in &conns {
            fds.push(PollFd::new(
                conn.stream.as_fd(),
                interest(&room, id, conn.phase),
            ));
        }

        // 2. Wait.
        let deadline = next_deadline(&room, &conns, shutdown_at, accept_paused_until);
        let timeout = poll_timeout(deadline.map(|d| d.saturating_duration_since(now)));
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        // Copy the results out, so the sockets can be borrowed mutably.
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let now = Instant::now();

        // 3. Do the I/O that will not block.
        if !ready[0].is_empty() {
            signals.drain(); // the flags are checked at the top of the loop
        }
        for (&id, revents) in ids.iter().zip(&ready[first_conn..]) {
            if revents.is_empty() {
                continue;
            }
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            let done = conn_ready(conn, id, &mut room, &mut buf, now).unwrap_or_else(|e| {
                // Per-connection errors end that connection, nothing else.
                log::warn!("client {id}: {e}");
                true
            });
            if done {
                log::info!("client {id}: disconnected");
                room.remove(id);
                conns.remove(&id);
            }
        }

        // New clients last: a seat freed in this turn is free for them.
        if accepting && !ready[1].is_empty() {
            if let Some(l) = &listener {
                if accept_all(l, &mut room, &mut conns, now).is_err() {
                    accept_paused_until = Some(now + ACCEPT_BACKOFF);
                }
            }
        }

        // 4. Time-outs and closes, for every connection: a chat message from
        // one client may have made *another* one too slow.
        room.expire_idle(now);
        conns.retain(|&id, conn| {
            let keep = settle(conn, id, &mut room, now);
            if !keep {
                log::info!("client {id}: disconnected");
                room.remove(id);
            }
            keep
        });
    }
}
// ANCHOR_END: run

/// The `poll` events we want for one connection.
fn interest(room: &Room, id: ClientId, phase: Phase) -> PollFlags {
    let mut flags = PollFlags::empty();
    match phase {
        Phase::Active => {
            if room.wants_read(id) {
                flags |= PollFlags::POLLIN;
            }
            if !room.pending(id).is_empty() {
                flags |= PollFlags::POLLOUT;
            }
        }
        Phase::Flushing { .. } => flags |= PollFlags::POLLOUT,
        Phase::Draining { .. } => flags |= PollFlags::POLLIN,
    }
    // POLLERR and POLLHUP are always reported, asked for or not.
    flags
}

/// The earliest time the loop must wake up by itself.
fn next_deadline(
    room: &Room,
    conns: &BTreeMap<ClientId, Conn>,
    shutdown_at: Option<Instant>,
    accept_paused_until: Option<Instant>,
) -> Option<Instant> {
    let lingering = conns.values().filter_map(|c| match c.phase {
        Phase::Flushing { until } | Phase::Draining { until } => Some(until),
        Phase::Active => None,
    });
    [room.next_deadline(), shutdown_at, accept_paused_until]
        .into_iter()
        .flatten()
        .chain(lingering)
        .min()
}

// ANCHOR: accept_all
/// Accepts every pending connection (until `WouldBlock`). Returns an error
/// only if accepting must pause (out of file descriptors).
fn accept_all(
    listener: &TcpListener,
    room: &mut Room,
    conns: &mut BTreeMap<ClientId, Conn>,
    now: Instant,
) -> io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) if would_block(&e) => return Ok(()),
            // The client gave up between the handshake and our accept.
            Err(e) if interrupted(&e) || e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                log::error!("accept: {e}; pausing for {ACCEPT_BACKOFF:?}");
                return Err(e);
            }
        };
        stream.set_nonblocking(true)?;
        match room.connect(now) {
            Ok(id) => {
                log::info!("client {id}: connected from {peer}");
                conns.insert(
                    id,
                    Conn {
                        stream,
                        phase: Phase::Active,
                    },
                );
            }
            Err(refusal) => {
                log::warn!("refusing {peer}: server full");
                // One small write into an empty socket buffer: it fits. If it
                // does not, the client learns from the close instead.
                let _ = (&stream).write(&refusal);
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}
// ANCHOR_END: accept_all

// ANCHOR: conn_ready
/// Does the I/O `poll` reported as ready for one connection. Returns true
/// if the connection is done; an error means it is broken (reset, for
/// instance). Either way the caller drops it.
fn conn_ready(
    conn: &mut Conn,
    id: ClientId,
    room: &mut Room,
    buf: &mut [u8],
    now: Instant,
) -> io::Result<bool> {
    match conn.phase {
        Phase::Active => {}
        Phase::Flushing { .. } => {
            write_pending(&mut conn.stream, id, room)?;
            return Ok(false);
        }
        // Discard whatever the client still sends; 0 = it closed too.
        Phase::Draining { .. } => {
            return match conn.stream.read(buf) {
                Ok(0) => Ok(true),
                Ok(_) => Ok(false),
                Err(e) if would_block(&e) || interrupted(&e) => Ok(false),
                Err(e) => Err(e),
            };
        }
    }
    // Write first: it may free room in the output buffer, which lets the
    // room decode more of the input, and then reading makes sense again.
    write_pending(&mut conn.stream, id, room)?;
    if room.wants_read(id) {
        match conn.stream.read(buf) {
            Ok(0) => {
                log::info!("client {id}: closed its side");
                room.eof(id);
            }
            Ok(n) => room.received(id, &buf[..n], now),
            Err(e) if would_block(&e) || interrupted(&e) => {}
            Err(e) => return Err(e),
        }
        // Answer at once: the socket is very likely writable.
        write_pending(&mut conn.stream, id, room)?;
    }
    Ok(false)
}

/// Writes as much pending output as the socket takes now. A partial write
/// is normal: the rest stays in the room's buffer for the next `POLLOUT`.
fn write_pending(stream: &mut TcpStream, id: ClientId, room: &mut Room) -> io::Result<()> {
    while !room.pending(id).is_empty() {
        match stream.write(room.pending(id)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => room.advance(id, n),
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
// ANCHOR_END: conn_ready

// ANCHOR: settle
/// Moves a connection along after the I/O: a client the room is done with
/// is flushed, then shut down and drained. Returns whether to keep it.
fn settle(conn: &mut Conn, id: ClientId, room: &mut Room, now: Instant) -> bool {
    if room.status(id) == Status::Kill {
        // Too slow: drop its output and close without ceremony.
        log::info!("client {id}: dropped");
        return false;
    }
    if conn.phase == Phase::Active && room.status(id) == Status::Closing {
        conn.phase = Phase::Flushing {
            until: now + LINGER,
        };
        // Try at once; the goodbye is usually small and the socket writable.
        if write_pending(&mut conn.stream, id, room).is_err() {
            return false;
        }
    }
    match conn.phase {
        Phase::Active => true,
        Phase::Flushing { until } if !room.pending(id).is_empty() => {
            if now >= until {
                log::info!("client {id}: did not read its goodbye; closing");
            }
            now < until
        }
        Phase::Flushing { .. } => {
            // Everything is written: send FIN, then wait for the client's.
            if conn.stream.shutdown(Shutdown::Write).is_err() {
                return false;
            }
            conn.phase = Phase::Draining {
                until: now + LINGER,
            };
            true
        }
        Phase::Draining { until } => now < until,
    }
}
// ANCHOR_END: settle
