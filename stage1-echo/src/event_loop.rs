//! The event loop of the non-blocking models: one thread, every socket
//! non-blocking, one call that waits for whichever of them is ready. The
//! call is `select(2)`, `poll(2)` or `epoll_wait(2)`, chosen by `--model`
//! (see `readiness.rs`); the loop around it is the same.
//!
//! Each turn of the loop:
//!
//! 1. builds the interest list: the signal self-pipe, the listener (unless
//!    shutting down or paused), and every client — read if the room wants
//!    its input, write if it has output pending;
//! 2. sleeps in the wait until something is ready or the next deadline
//!    (idle timeout, lingering close, shutdown grace) passes;
//! 3. accepts new clients, reads from readable ones, writes to writable
//!    ones, each call non-blocking so no client can stall the loop;
//! 4. closes the connections the room is done with.
//!
//! The loop owns the sockets; the [`Room`] owns the bytes. With `select` and
//! `poll` the interest list is handed to the kernel whole on every turn,
//! O(clients) for us and for the kernel: that is the cost `epoll` removes.
//! With edge-triggered `epoll` (`--edge`) the loop also *remembers* which
//! sockets are ready ([`Conn::ready`]) and comes back to each, turn after
//! turn, until a read or write says `EAGAIN`: the kernel will not say it
//! again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use common::signals::Signals;
use common::stats::PROCESS;
use common::tls::{Input, ServerConfig, Session};

use crate::net::{ACCEPT_BACKOFF, GRACE, LINGER, interrupted, would_block};
use crate::readiness::{Entry, Interest, Ready, Waiter, raw};
use crate::room::{ClientId, Limits, Room, Status};

/// Bytes read per `read` call, one call per connection per turn: that
/// keeps the loop fair (see [`conn_ready`]).
const READ_CHUNK: usize = 16 * 1024;

/// The loop's own keys in the interest list; clients are keyed by their
/// [`ClientId`], small numbers.
const SIGNALS: usize = usize::MAX;
/// See [`SIGNALS`].
const LISTENER: usize = usize::MAX - 1;
/// The first of the loop's own keys (`readiness::EpollWaiter` needs it).
pub const OWN_KEYS: std::ops::RangeFrom<usize> = LISTENER..;

/// How the loop treats an edge-triggered waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeRules {
    /// Remember readiness until a call says `EAGAIN`, as edge-triggered
    /// notification requires.
    Keep,
    /// The mistake, for the chapter's lab (`--edge-read-once`): readiness
    /// is forgotten after one read, as level-triggered code may do. A
    /// client that sends more than one read's worth at once stalls.
    Ignore,
}

/// One client socket and where it is in its life.
#[derive(Debug)]
struct Conn {
    /// Non-blocking, so a read or write never waits.
    stream: TcpStream,
    /// See [`Phase`].
    phase: Phase,
    /// What the kernel last said is possible. Level-triggered, only for
    /// this turn; edge-triggered, until a read or write says `EAGAIN`.
    ready: Ready,
    /// A read returned 0: the client's `FIN` is already here, so once our
    /// output is written there is nothing left to wait for (no lingering).
    peer_closed: bool,
    /// With `--tls-cert`: the TLS layer (`common::tls`) between the socket
    /// and the room. Reads go through its `read_from`, the room's output
    /// through its `push` and `write_to`; the room never knows.
    tls: Option<Box<Session>>,
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
pub fn run(
    listener: TcpListener,
    limits: Limits,
    signals: &Signals,
    waiter: &mut dyn Waiter,
    rules: EdgeRules,
    tls: Option<&Arc<ServerConfig>>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = Some(listener);
    let mut room = Room::new(limits, Instant::now());
    // A BTreeMap so the interest list comes out in the same order every
    // turn (easier to follow in strace); ids are small slab keys.
    let mut conns: BTreeMap<ClientId, Conn> = BTreeMap::new();
    let mut shutdown_at: Option<Instant> = None;
    let mut accept_paused_until: Option<Instant> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    // Edge-triggered readiness is remembered across turns and used up by
    // reading until EAGAIN; level-triggered readiness is this turn's only.
    let edge = waiter.edge() && rules == EdgeRules::Keep;
    let mut ready = Vec::new();

    loop {
        let now = Instant::now();
        if shutdown_at.is_none() && signals.shutdown_requested() {
            log::info!("shutting down: saying goodbye to {} clients", conns.len());
            if let Some(l) = listener.take() {
                waiter.forget(LISTENER, l.as_fd());
                drop(l); // close(2): new connections are refused from now on
            }
            room.shutdown();
            shutdown_at = Some(now + GRACE);
        }
        if let Some(deadline) = shutdown_at {
            if conns.is_empty() || now >= deadline {
                return Ok(());
            }
        }

        // 1. The interest list. A pause that is over is forgotten: left in
        // place, its deadline (in the past) would make every wait return at
        // once, and the loop would spin.
        if accept_paused_until.is_some_and(|t| now >= t) {
            accept_paused_until = None;
        }
        let accepting = listener.is_some() && accept_paused_until.is_none();
        let reading = Interest {
            read: true,
            write: false,
        };
        let mut list: Vec<Entry<'_>> = Vec::with_capacity(conns.len() + 2);
        list.push((SIGNALS, signals.wake_fd(), reading));
        if let Some(l) = &listener {
            // While paused, the listener stays listed with no interest, so
            // that epoll is told to stop reporting it.
            let want = Interest {
                read: accepting,
                write: false,
            };
            list.push((LISTENER, l.as_fd(), want));
        }
        // Edge-triggered, a client still ready from an earlier turn (not yet
        // read or written to EAGAIN) that has work now is due this turn:
        // no event will come for it.
        let mut due: BTreeSet<ClientId> = BTreeSet::new();
        for (&id, conn) in &conns {
            let want = interest(&room, id, conn);
            if edge && ((conn.ready.read && want.read) || (conn.ready.write && want.write)) {
                due.insert(id);
            }
            list.push((id, conn.stream.as_fd(), want));
        }

        // 2. Wait; with clients already due, only a look.
        let deadline = next_deadline(&room, &conns, shutdown_at, accept_paused_until);
        let timeout = if due.is_empty() {
            deadline.map(|d| d.saturating_duration_since(now))
        } else {
            Some(std::time::Duration::ZERO)
        };
        ready.clear();
        waiter.wait(&list, timeout, &mut ready)?;
        drop(list);
        let now = Instant::now();

        // 3. Do the I/O that will not block.
        let mut accept_now = false;
        for &(key, r) in &ready {
            match key {
                SIGNALS => signals.drain(), // the flags are checked at the top
                LISTENER => accept_now = r.read,
                id => {
                    if let Some(conn) = conns.get_mut(&id) {
                        if edge {
                            conn.ready.read |= r.read;
                            conn.ready.write |= r.write;
                        } else {
                            conn.ready = r;
                        }
                        due.insert(id);
                    }
                }
            }
        }
        for id in due {
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            let done = conn_ready(conn, id, &mut room, &mut buf, now, edge).unwrap_or_else(|e| {
                // Per-connection errors end that connection, nothing else.
                log::warn!("client {id}: {e}");
                true
            });
            if done {
                log::info!("client {id}: disconnected");
                room.remove(id);
                if let Some(conn) = conns.remove(&id) {
                    waiter.forget(id, conn.stream.as_fd());
                }
            }
        }

        // New clients last: a seat freed in this turn is free for them.
        if accepting && accept_now {
            if let Some(l) = &listener {
                if accept_all(l, &mut room, &mut conns, &*waiter, now, tls).is_err() {
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
                waiter.forget(id, conn.stream.as_fd());
            }
            keep
        });
    }
}
// ANCHOR_END: run

/// What the loop wants to know about one connection.
fn interest(room: &Room, id: ClientId, conn: &Conn) -> Interest {
    match conn.phase {
        Phase::Active => Interest {
            read: room.wants_read(id),
            write: has_output(conn, room, id),
        },
        Phase::Flushing { .. } => Interest {
            read: false,
            write: true,
        },
        Phase::Draining { .. } => Interest {
            read: true,
            write: false,
        },
    }
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
    waiter: &dyn Waiter,
    now: Instant,
    tls: Option<&Arc<ServerConfig>>,
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
        if !waiter.admits(raw(&stream)) {
            // select: this descriptor number does not fit in an fd_set.
            log::warn!(
                "refusing {peer}: descriptor {} is past select's FD_SETSIZE",
                raw(&stream)
            );
            refuse(&stream, &room.refusal());
            continue;
        }
        match room.connect(now) {
            Ok(id) => {
                log::info!("client {id}: connected from {peer}");
                conns.insert(
                    id,
                    Conn {
                        stream,
                        phase: Phase::Active,
                        ready: Ready::default(),
                        peer_closed: false,
                        tls: match tls {
                            Some(config) => Some(Box::new(Session::new(config, &PROCESS)?)),
                            None => None,
                        },
                    },
                );
            }
            Err(refusal) => {
                log::warn!("refusing {peer}: server full");
                refuse(&stream, &refusal);
            }
        }
    }
}
// ANCHOR_END: accept_all

/// Sends a refusal and closes. One small write into an empty socket buffer:
/// it fits. If it does not, the client learns from the close instead.
fn refuse(stream: &TcpStream, refusal: &[u8]) {
    let _ = (&*stream).write(refusal);
    let _ = stream.shutdown(Shutdown::Both);
}

// ANCHOR: conn_ready
/// Does the I/O the kernel reported as ready for one connection. Returns
/// true if the connection is done; an error means it is broken (reset, for
/// instance). Either way the caller drops it.
///
/// One read per turn in both modes, so that a client that sends without
/// pause cannot starve the others (its relayed chat lines would pile up in
/// everyone's output). The difference is what happens next. Level-triggered
/// (`edge` false), the kernel reports the socket again next turn if more
/// is waiting. Edge-triggered, it will not: no new event comes for bytes
/// already there. So the readiness is remembered in `conn.ready` and used
/// up only when a read (or write) says `EAGAIN`; until then the loop
/// comes back to this connection by itself.
fn conn_ready(
    conn: &mut Conn,
    id: ClientId,
    room: &mut Room,
    buf: &mut [u8],
    now: Instant,
    edge: bool,
) -> io::Result<bool> {
    match conn.phase {
        Phase::Active => {}
        Phase::Flushing { .. } => {
            write_pending(conn, id, room)?;
            return Ok(false);
        }
        // Discard whatever the client still sends; 0 = it closed too.
        Phase::Draining { .. } => {
            return match conn.stream.read(buf) {
                Ok(0) => Ok(true),
                Ok(_) => Ok(false),
                Err(e) if would_block(&e) => {
                    conn.ready.read = false;
                    Ok(false)
                }
                Err(e) if interrupted(&e) => Ok(false),
                Err(e) => Err(e),
            };
        }
    }
    // Write first: it may free room in the output buffer, which lets the
    // room decode more of the input, and then reading makes sense again.
    write_pending(conn, id, room)?;
    // Level-triggered, a read is worth trying whenever the room wants input
    // (the kernel said something is ready); edge-triggered, only while the
    // remembered readiness lasts.
    if room.wants_read(id) && (conn.ready.read || !edge) && conn.tls.is_some() {
        read_tls(conn, id, room, now)?;
        write_pending(conn, id, room)?;
    } else if room.wants_read(id) && (conn.ready.read || !edge) {
        match conn.stream.read(buf) {
            Ok(0) => {
                log::info!("client {id}: closed its side");
                conn.peer_closed = true;
                room.eof(id);
            }
            Ok(n) => room.received(id, &buf[..n], now),
            Err(e) if would_block(&e) => conn.ready.read = false,
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
        // Answer at once: the socket is very likely writable.
        write_pending(conn, id, room)?;
    }
    Ok(false)
}

/// Writes as much pending output as the socket takes now. A partial write
/// is normal: the rest stays in the room's buffer for the next write event.
fn write_pending(conn: &mut Conn, id: ClientId, room: &mut Room) -> io::Result<()> {
    if let Some(tls) = conn.tls.as_deref_mut() {
        // Through TLS: the room's output into rustls while it takes it,
        // rustls's records onto the socket while it takes them.
        loop {
            let n = tls.push(room.pending(id));
            room.advance(id, n);
            if !tls.wants_write() {
                return Ok(());
            }
            match tls.write_to(&mut conn.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if would_block(&e) => {
                    conn.ready.write = false;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }
    while !room.pending(id).is_empty() {
        match conn.stream.write(room.pending(id)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => room.advance(id, n),
            Err(e) if would_block(&e) => {
                conn.ready.write = false;
                return Ok(());
            }
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
// ANCHOR_END: conn_ready

/// One read through TLS: the plaintext it carried goes to the room (none
/// while the handshake goes on). A bad handshake (plaintext on the TLS
/// port) gets rustls's alert, if the socket takes it, and ends the client.
fn read_tls(conn: &mut Conn, id: ClientId, room: &mut Room, now: Instant) -> io::Result<()> {
    let Some(tls) = conn.tls.as_deref_mut() else {
        return Ok(());
    };
    let mut plain = Vec::new();
    match tls.read_from(&mut conn.stream, &mut plain) {
        Ok(Input::Eof) => {
            log::info!("client {id}: closed its side");
            conn.peer_closed = true;
            room.eof(id);
        }
        Ok(Input::Data(_)) => {
            if !plain.is_empty() {
                room.received(id, &plain, now);
            }
        }
        Err(e) if would_block(&e) => conn.ready.read = false,
        Err(e) if interrupted(&e) => {}
        Err(e) => {
            let _ = tls.write_to(&mut conn.stream);
            return Err(e);
        }
    }
    Ok(())
}

/// The room has output for the client, or (TLS) rustls has records to send.
fn has_output(conn: &Conn, room: &Room, id: ClientId) -> bool {
    !room.pending(id).is_empty() || conn.tls.as_ref().is_some_and(|t| t.wants_write())
}

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
        if write_pending(conn, id, room).is_err() {
            return false;
        }
    }
    match conn.phase {
        Phase::Active => true,
        Phase::Flushing { until } if has_output(conn, room, id) => {
            if now >= until {
                log::info!("client {id}: did not read its goodbye; closing");
            }
            now < until
        }
        // Everything is written and the client has closed its side already:
        // close now. A lingering close would wait for a FIN that came
        // before (and, with the client gone, the next turn would find the
        // socket readable only to read 0 again).
        Phase::Flushing { .. } if conn.peer_closed => false,
        Phase::Flushing { .. } => {
            // Everything is written: send FIN, then wait for the client's.
            // Through TLS, `close_notify` first (a few bytes, written if
            // the socket takes them).
            if let Some(tls) = conn.tls.as_deref_mut() {
                tls.close_notify();
                let _ = tls.write_to(&mut conn.stream);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Framing, Mode};
    use std::time::Duration;

    /// A connected pair on 127.0.0.1 and a room with one client.
    fn flushed(peer_closed: bool) -> (Conn, TcpStream, Room, ClientId) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let limits = Limits {
            mode: Mode::Echo,
            framing: Framing::Line,
            max_line: 64,
            max_clients: 2,
            max_pending: 64,
            idle_timeout: Some(Duration::from_secs(10)),
        };
        let now = Instant::now();
        let mut room = Room::new(limits, now);
        let id = room.connect(now).unwrap();
        let conn = Conn {
            stream,
            phase: Phase::Flushing {
                until: now + LINGER,
            },
            ready: Ready::default(),
            peer_closed,
            tls: None,
        };
        (conn, client, room, id)
    }

    /// Written out, and the client's FIN already read: closed at once, with
    /// no lingering turn that would only read 0 a second time.
    #[test]
    fn a_flushed_connection_whose_client_closed_is_closed_at_once() {
        let (mut conn, _client, mut room, id) = flushed(true);
        assert!(!settle(&mut conn, id, &mut room, Instant::now()));
    }

    /// Written out, the client still connected: our FIN goes first, then
    /// the loop waits (lingers) for the client's.
    #[test]
    fn a_flushed_connection_whose_client_is_there_lingers() {
        let (mut conn, mut client, mut room, id) = flushed(false);
        assert!(settle(&mut conn, id, &mut room, Instant::now()));
        assert!(matches!(conn.phase, Phase::Draining { .. }));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap(); // our FIN arrived
        assert!(rest.is_empty());
    }
}
