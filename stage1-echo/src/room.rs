//! The server's state, sans-IO: every client's buffers, the chat room, the
//! counters. All models (`blocking.rs`, `event_loop.rs`) drive a [`Room`] the
//! same way and only move bytes between it and the sockets:
//!
//! ```text
//!   socket --read--> received(id, bytes) --> input buffer --decode--> Command
//!                                                                       |
//!   socket <-write-- pending(id) / advance(id, n) <-- output buffer <-- Reply
//!                                                     (and other members'
//!                                                      buffers, in chat mode)
//! ```
//!
//! A client id is a key of a [`Slab`]: a small integer reused after the
//! client leaves, found by indexing rather than hashing.
//!
//! # Backpressure
//!
//! Each client's output buffer is bounded by `max_pending`. Two rules keep it
//! so, and keep one client from holding up the others:
//!
//! - A client's *own* replies: once its output buffer holds `max_pending`
//!   bytes the room stops decoding its requests, and [`Room::wants_read`]
//!   tells the model to stop reading its socket. The kernel's buffers fill,
//!   and TCP flow control finally stops the client's writes. Nothing is lost.
//! - Chat messages *from others*: the room cannot stop a room-full of people
//!   because one member does not read, so a member whose output buffer would
//!   go past `max_pending` is disconnected ([`Status::Kill`]) and the others
//!   are told it `left (too slow)`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::cli::{Framing, Mode};
use crate::framing::{decode_request, encode_frame_reply};
use crate::protocol::{
    Command, Decoded, FrameError, Reply, Stats, decode_line, encode_line_reply, parse_line,
};

/// A client's handle in the room: a slab key.
pub type ClientId = usize;

/// The longest chat name, in bytes.
const MAX_NAME: usize = 32;

/// The settings the room enforces (from the command line).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Echo or chat.
    pub mode: Mode,
    /// Lines or protobuf frames.
    pub framing: Framing,
    /// Longest line or frame body, bytes.
    pub max_line: usize,
    /// Most clients at once.
    pub max_clients: usize,
    /// Output bytes kept per client before backpressure applies.
    pub max_pending: usize,
    /// Close clients silent for this long; `None` for never.
    pub idle_timeout: Option<Duration>,
}

/// What the model should do with a client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Read from it and write its pending output.
    Open,
    /// Write the pending output (a goodbye or an error), then close. Read
    /// nothing more into the room.
    Closing,
    /// Close at once, dropping the pending output (a too-slow chat member).
    Kill,
}

/// One connected client.
#[derive(Debug)]
struct Client {
    /// Bytes read but not yet decoded: at most a partial line or frame, plus
    /// complete ones waiting while the output buffer is full.
    input: Vec<u8>,
    /// Bytes to send; `output[sent..]` is still pending. Keeping an offset
    /// rather than draining the front turns a partial write into one
    /// addition instead of a copy of the rest.
    output: Vec<u8>,
    /// How much of `output` the socket already took.
    sent: usize,
    /// The chat name, once the client joined the room.
    name: Option<String>,
    /// See [`Status`].
    status: Status,
    /// When the client last sent anything, for the idle timeout.
    last_input: Instant,
}

impl Client {
    /// Bytes still to send.
    fn pending_len(&self) -> usize {
        self.output.len() - self.sent
    }
}

/// All clients, the chat room and the counters.
#[derive(Debug)]
pub struct Room {
    /// The settings.
    limits: Limits,
    /// The connected clients, by id.
    clients: Slab<Client>,
    /// Chat names in use, so `NICK` can refuse a taken one in O(1).
    names: HashMap<String, ClientId>,
    /// Counter for generated `guestN` names.
    next_guest: u64,
    /// Lines or frames received since start (the `messages=` of `STATS`).
    messages: u64,
    /// When the server started (the `uptime_s=` of `STATS`).
    started: Instant,
    /// [`Room::shutdown`] was called: the goodbyes are said once, however
    /// many threads notice the shutdown.
    shutting_down: bool,
}

impl Room {
    /// An empty room.
    pub fn new(limits: Limits, now: Instant) -> Room {
        Room {
            limits,
            clients: Slab::new(),
            names: HashMap::new(),
            next_guest: 1,
            messages: 0,
            started: now,
            shutting_down: false,
        }
    }

    /// What a client that cannot be served is told before the close:
    /// `ERR server full`, in the room's framing.
    pub fn refusal(&self) -> Vec<u8> {
        let mut refusal = Vec::new();
        self.encode(&Reply::Err("server full".into()), &mut refusal);
        refusal
    }

    /// Admits a new connection, or returns the bytes of the refusal to send
    /// it (`ERR server full`) if `max_clients` are already connected.
    pub fn connect(&mut self, now: Instant) -> Result<ClientId, Vec<u8>> {
        if self.clients.len() >= self.limits.max_clients {
            return Err(self.refusal());
        }
        Ok(self.clients.insert(Client {
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            name: None,
            status: Status::Open,
            last_input: now,
        }))
    }

    /// The client's status; `Kill` for an id that is not connected.
    pub fn status(&self, id: ClientId) -> Status {
        self.clients.get(id).map_or(Status::Kill, |c| c.status)
    }

    /// Whether the model should read this client's socket now. False while
    /// its output buffer is full (backpressure) or once it is closing.
    pub fn wants_read(&self, id: ClientId) -> bool {
        self.clients
            .get(id)
            .is_some_and(|c| c.status == Status::Open && c.pending_len() < self.limits.max_pending)
    }

    /// The bytes waiting to be written to this client.
    pub fn pending(&self, id: ClientId) -> &[u8] {
        self.clients.get(id).map_or(&[], |c| &c.output[c.sent..])
    }

    // ANCHOR: advance
    /// Records that the socket took `n` bytes of [`Room::pending`]. If that
    /// made room in the output buffer, decodes requests that were waiting.
    pub fn advance(&mut self, id: ClientId, n: usize) {
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        c.sent = (c.sent + n).min(c.output.len());
        if c.sent == c.output.len() {
            c.output.clear();
            c.sent = 0;
        } else if c.sent > c.output.len() / 2 {
            // Compact now and then so the buffer does not creep forward.
            c.output.drain(..c.sent);
            c.sent = 0;
        }
        self.process(id);
    }
    // ANCHOR_END: advance

    // ANCHOR: received
    /// Hands the room bytes read from the client's socket. They may hold
    /// part of a message, or several.
    pub fn received(&mut self, id: ClientId, bytes: &[u8], now: Instant) {
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        if c.status != Status::Open {
            return;
        }
        c.input.extend_from_slice(bytes);
        c.last_input = now;
        self.process(id);
    }
    // ANCHOR_END: received

    /// The client closed its side (read returned 0). Requests already
    /// received are still answered; a last line without `\n` counts as a
    /// line, a partial protobuf frame is an error. Then the client closes.
    pub fn eof(&mut self, id: ClientId) {
        if self.status(id) != Status::Open {
            return;
        }
        // Decode everything, whatever the output buffer holds: the client
        // is leaving, so this is the last chance.
        self.process_all(id, true);
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        if c.status == Status::Open && !c.input.is_empty() {
            let rest = std::mem::take(&mut c.input);
            match self.limits.framing {
                Framing::Line => {
                    self.messages += 1;
                    let cmd = parse_line(&rest, self.limits.mode == Mode::Chat);
                    self.handle(id, cmd);
                }
                Framing::Protobuf => {
                    let why = FrameError::Truncated.to_string();
                    self.reply(id, &Reply::Err(why));
                }
            }
        }
        self.close(id, None);
    }

    /// Forgets a client whose socket the model has closed (or that was
    /// reset). Announces the departure to the chat room if it was a member.
    pub fn remove(&mut self, id: ClientId) {
        if self.clients.contains(id) {
            self.leave(id, "left");
            self.clients.remove(id);
        }
    }

    /// The earliest idle deadline among open clients, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = self.limits.idle_timeout?;
        self.clients
            .iter()
            .filter(|(_, c)| c.status == Status::Open)
            .map(|(_, c)| c.last_input + idle)
            .min()
    }

    /// Says goodbye to every open client silent since before `now - idle`.
    pub fn expire_idle(&mut self, now: Instant) {
        let Some(idle) = self.limits.idle_timeout else {
            return;
        };
        let expired: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.status == Status::Open && now >= c.last_input + idle)
            .map(|(id, _)| id)
            .collect();
        for id in expired {
            self.close(id, Some("idle timeout"));
        }
    }

    /// Graceful shutdown: every open client gets `BYE server shutting down`
    /// and is closing. No leave announcements: everyone is leaving. Said
    /// once: a second call does nothing.
    pub fn shutdown(&mut self) {
        if std::mem::replace(&mut self.shutting_down, true) {
            return;
        }
        let ids: Vec<ClientId> = self.clients.iter().map(|(id, _)| id).collect();
        self.names.clear();
        for id in ids {
            if let Some(c) = self.clients.get_mut(id) {
                c.name = None;
            }
            self.close(id, Some("server shutting down"));
        }
    }

    // ANCHOR: process
    /// Decodes and answers complete requests while the output buffer has
    /// room. What is left in the input buffer waits for [`Room::advance`].
    fn process(&mut self, id: ClientId) {
        self.process_all(id, false);
    }

    /// [`Room::process`], optionally ignoring the output limit.
    fn process_all(&mut self, id: ClientId, ignore_limit: bool) {
        let chat = self.limits.mode == Mode::Chat;
        loop {
            let Some(c) = self.clients.get_mut(id) else {
                return;
            };
            if c.status != Status::Open {
                return;
            }
            if !ignore_limit && c.pending_len() >= self.limits.max_pending {
                return;
            }
            let decoded = match self.limits.framing {
                Framing::Line => decode_line(&c.input, self.limits.max_line)
                    .map(|d| map_decoded(d, |line| parse_line(line, chat))),
                Framing::Protobuf => decode_request(&c.input, self.limits.max_line),
            };
            match decoded {
                Ok(Decoded::Partial) => return,
                Ok(Decoded::Complete { item, consumed }) => {
                    c.input.drain(..consumed);
                    self.messages += 1;
                    self.handle(id, item);
                }
                Err(e) => {
                    log::warn!("client {id}: {e}; closing");
                    c.input.clear();
                    self.reply(id, &Reply::Err(e.to_string()));
                    self.close(id, None);
                    return;
                }
            }
        }
    }
    // ANCHOR_END: process

    // ANCHOR: handle
    /// Answers one command.
    fn handle(&mut self, id: ClientId, cmd: Command) {
        log::debug!("client {id}: {cmd}");
        let reply = match cmd {
            Command::Ping => Reply::Pong,
            Command::Echo(text) => Reply::Text(text),
            Command::Add(a, b) => match a.checked_add(b) {
                Some(sum) => Reply::Sum(sum),
                None => Reply::Err(format!("{a} + {b} overflows a signed 64-bit integer")),
            },
            Command::Stats => Reply::Stats(self.stats()),
            Command::Quit => return self.close(id, Some("")),
            Command::Nick(name) => self.nick(id, name),
            Command::Other(line) if self.limits.mode == Mode::Echo => Reply::Text(line),
            Command::Other(line) => return self.say(id, &line),
            Command::Invalid(why) => Reply::Err(why),
        };
        self.reply(id, &reply);
    }
    // ANCHOR_END: handle

    /// The counters for `STATS`.
    fn stats(&self) -> Stats {
        Stats {
            clients: self.clients.len() as u64,
            messages: self.messages,
            uptime_s: self.started.elapsed().as_secs(),
            members: self.names.len() as u64,
        }
    }

    /// Queues `reply` for the client itself. Not bounded here: `process`
    /// stops decoding once the buffer is full, so one reply at most
    /// overshoots the limit.
    fn reply(&mut self, id: ClientId, reply: &Reply) {
        let mut bytes = Vec::new();
        self.encode(reply, &mut bytes);
        if let Some(c) = self.clients.get_mut(id) {
            c.output.extend_from_slice(&bytes);
        }
    }

    /// Encodes a reply in the configured framing.
    fn encode(&self, reply: &Reply, out: &mut Vec<u8>) {
        match self.limits.framing {
            Framing::Line => encode_line_reply(reply, out),
            Framing::Protobuf => encode_frame_reply(reply, out),
        }
    }

    /// Sends the optional goodbye, leaves the chat room, and marks the
    /// client closing.
    fn close(&mut self, id: ClientId, bye: Option<&str>) {
        if let Some(why) = bye {
            self.reply(id, &Reply::Bye(why.into()));
        }
        let reason = if bye == Some("idle timeout") {
            "left (idle)"
        } else {
            "left"
        };
        self.leave(id, reason);
        if let Some(c) = self.clients.get_mut(id) {
            if c.status == Status::Open {
                c.status = Status::Closing;
            }
        }
    }

    // ANCHOR: chat
    /// `NICK name`: join the room under `name`, or rename.
    fn nick(&mut self, id: ClientId, name: Vec<u8>) -> Reply {
        let Some(name) = valid_name(&name) else {
            return Reply::Err(format!(
                "a name is 1 to {MAX_NAME} letters, digits, '-' or '_'"
            ));
        };
        match self.names.get(&name) {
            Some(&owner) if owner == id => return Reply::Ok(name),
            Some(_) => return Reply::Err(format!("name {name} is taken")),
            None => {}
        }
        self.names.insert(name.clone(), id);
        let old = self
            .clients
            .get_mut(id)
            .and_then(|c| c.name.replace(name.clone()));
        let notice = match old {
            Some(old) => {
                self.names.remove(&old);
                format!("* {old} is now known as {name}")
            }
            None => format!("* {name} joined"),
        };
        self.broadcast(id, notice.as_bytes());
        Reply::Ok(name)
    }

    /// Any other line in chat mode: relay it to every other member as
    /// `[name] text`, joining under a generated name first if needed.
    fn say(&mut self, id: ClientId, text: &[u8]) {
        let name = match self.clients.get(id).and_then(|c| c.name.clone()) {
            Some(name) => name,
            None => {
                let name = self.guest_name();
                self.names.insert(name.clone(), id);
                if let Some(c) = self.clients.get_mut(id) {
                    c.name = Some(name.clone());
                }
                self.broadcast(id, format!("* {name} joined").as_bytes());
                name
            }
        };
        let mut line = format!("[{name}] ").into_bytes();
        line.extend_from_slice(text);
        self.broadcast(id, &line);
    }

    /// Queues `line` (plus `\n`) for every member except `from`. A member
    /// whose output buffer would go past `max_pending` is disconnected,
    /// and its departure is announced in turn.
    fn broadcast(&mut self, from: ClientId, line: &[u8]) {
        let mut too_slow = Vec::new();
        for (&_, &to) in self.names.iter() {
            if to == from {
                continue;
            }
            let Some(c) = self.clients.get_mut(to) else {
                continue;
            };
            if c.status != Status::Open {
                continue;
            }
            if c.pending_len() + line.len() + 1 > self.limits.max_pending {
                too_slow.push(to);
                continue;
            }
            c.output.extend_from_slice(line);
            c.output.push(b'\n');
        }
        for id in too_slow {
            log::warn!(
                "client {id}: too slow (over {} bytes pending); dropping it",
                self.limits.max_pending
            );
            if let Some(c) = self.clients.get_mut(id) {
                c.status = Status::Kill;
                c.output.clear();
                c.sent = 0;
            }
            self.leave(id, "left (too slow)");
        }
    }

    /// Takes the client out of the room and tells the others, if it was in.
    fn leave(&mut self, id: ClientId, how: &str) {
        let Some(name) = self.clients.get_mut(id).and_then(|c| c.name.take()) else {
            return;
        };
        self.names.remove(&name);
        self.broadcast(id, format!("* {name} {how}").as_bytes());
    }
    // ANCHOR_END: chat

    /// A free `guestN` name.
    fn guest_name(&mut self) -> String {
        loop {
            let name = format!("guest{}", self.next_guest);
            self.next_guest += 1;
            if !self.names.contains_key(&name) {
                return name;
            }
        }
    }
}

/// Maps the item of a [`Decoded`].
fn map_decoded<T, U>(d: Decoded<T>, f: impl FnOnce(T) -> U) -> Decoded<U> {
    match d {
        Decoded::Complete { item, consumed } => Decoded::Complete {
            item: f(item),
            consumed,
        },
        Decoded::Partial => Decoded::Partial,
    }
}

/// A chat name, if `raw` is one: 1 to 32 ASCII letters, digits, `-`, `_`.
fn valid_name(raw: &[u8]) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_NAME
        && raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    // All bytes are ASCII, so this is valid UTF-8.
    ok.then(|| String::from_utf8_lossy(raw).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(mode: Mode) -> Limits {
        Limits {
            mode,
            framing: Framing::Line,
            max_line: 32,
            max_clients: 3,
            max_pending: 64,
            idle_timeout: Some(Duration::from_secs(10)),
        }
    }

    /// Takes everything pending for `id`, as a perfectly fast socket would.
    fn take(room: &mut Room, id: ClientId) -> String {
        let mut out = String::new();
        while !room.pending(id).is_empty() {
            let chunk = String::from_utf8_lossy(room.pending(id)).into_owned();
            room.advance(id, chunk.len());
            out += &chunk;
        }
        out
    }

    #[test]
    fn commands_are_answered_in_order_even_in_pieces() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Echo), now);
        let id = room.connect(now).unwrap();
        for piece in ["PI", "NG\r\nECHO a b\nADD 1", " 2\nhello\n"] {
            room.received(id, piece.as_bytes(), now);
        }
        assert_eq!(take(&mut room, id), "PONG\na b\n3\nhello\n");
        room.received(id, b"ADD 9223372036854775807 1\nQUIT\nPING\n", now);
        let out = take(&mut room, id);
        assert!(out.starts_with("ERR "), "{out}");
        assert!(out.ends_with("\nBYE\n"), "{out}");
        assert_eq!(room.status(id), Status::Closing);
    }

    #[test]
    fn stats_counts_clients_and_messages() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Echo), now);
        let a = room.connect(now).unwrap();
        let _b = room.connect(now).unwrap();
        room.received(a, b"x\nSTATS\n", now);
        assert_eq!(
            take(&mut room, a),
            "x\nclients=2 messages=2 uptime_s=0 members=0\n"
        );
    }

    #[test]
    fn overlong_line_is_an_error_then_close() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Echo), now);
        let id = room.connect(now).unwrap();
        room.received(id, &[b'x'; 40], now);
        assert_eq!(take(&mut room, id), "ERR message too long (max 32 bytes)\n");
        assert_eq!(room.status(id), Status::Closing);
    }

    #[test]
    fn server_full_is_refused() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Echo), now);
        for _ in 0..3 {
            room.connect(now).unwrap();
        }
        assert_eq!(room.connect(now), Err(b"ERR server full\n".to_vec()));
    }

    #[test]
    fn backpressure_stops_decoding_until_output_drains() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Echo), now);
        let id = room.connect(now).unwrap();
        // 20 lines of 9 bytes: more than the 64-byte output limit.
        let input = "abcdefgh\n".repeat(20);
        room.received(id, input.as_bytes(), now);
        assert!(!room.wants_read(id));
        assert_eq!(room.pending(id).len(), 72); // 8 lines: the first at or past 64
        // Draining the output lets the rest through.
        assert_eq!(take(&mut room, id), input);
        assert!(room.wants_read(id));
    }

    #[test]
    fn eof_answers_a_last_unterminated_line() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Echo), now);
        let id = room.connect(now).unwrap();
        room.received(id, b"PING\nPI", now);
        room.eof(id);
        assert_eq!(take(&mut room, id), "PONG\nPI\n");
        assert_eq!(room.status(id), Status::Closing);
    }

    #[test]
    fn idle_clients_get_bye() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Echo), now);
        let id = room.connect(now).unwrap();
        assert_eq!(room.next_deadline(), Some(now + Duration::from_secs(10)));
        room.expire_idle(now + Duration::from_secs(9));
        assert_eq!(room.status(id), Status::Open);
        room.expire_idle(now + Duration::from_secs(10));
        assert_eq!(take(&mut room, id), "BYE idle timeout\n");
        assert_eq!(room.status(id), Status::Closing);
        assert_eq!(room.next_deadline(), None);
    }

    #[test]
    fn chat_join_relay_rename_leave() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Chat), now);
        let a = room.connect(now).unwrap();
        let b = room.connect(now).unwrap();
        let c = room.connect(now).unwrap();
        room.received(a, b"NICK alice\n", now);
        assert_eq!(take(&mut room, a), "OK alice\n");
        // b is not in the room yet: it hears nothing.
        assert_eq!(take(&mut room, b), "");
        room.received(b, b"NICK alice\nNICK bob\n", now);
        assert_eq!(take(&mut room, b), "ERR name alice is taken\nOK bob\n");
        assert_eq!(take(&mut room, a), "* bob joined\n");
        room.received(a, b"hi\n", now);
        assert_eq!(take(&mut room, a), "", "no echo to the speaker");
        assert_eq!(take(&mut room, b), "[alice] hi\n");
        // c speaks without a name: joins as a guest first.
        room.received(c, b"yo\n", now);
        assert_eq!(take(&mut room, a), "* guest1 joined\n[guest1] yo\n");
        assert_eq!(take(&mut room, b), "* guest1 joined\n[guest1] yo\n");
        room.received(c, b"NICK carol\n", now);
        assert_eq!(take(&mut room, c), "OK carol\n");
        assert_eq!(take(&mut room, a), "* guest1 is now known as carol\n");
        take(&mut room, b);
        room.remove(c);
        assert_eq!(take(&mut room, a), "* carol left\n");
        assert_eq!(take(&mut room, b), "* carol left\n");
        room.received(b, b"QUIT\n", now);
        assert_eq!(take(&mut room, b), "BYE\n");
        assert_eq!(take(&mut room, a), "* bob left\n");
        room.received(a, b"STATS\n", now);
        assert!(take(&mut room, a).ends_with(" members=1\n"));
    }

    #[test]
    fn bad_names_are_refused() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Chat), now);
        let a = room.connect(now).unwrap();
        room.received(a, b"NICK\nNICK a b\nNICK \xff\n", now);
        let out = take(&mut room, a);
        assert_eq!(out.matches("ERR a name is").count(), 3, "{out}");
    }

    #[test]
    fn a_slow_member_is_dropped_and_the_room_goes_on() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Chat), now);
        let talker = room.connect(now).unwrap();
        let slow = room.connect(now).unwrap();
        let fast = room.connect(now).unwrap();
        room.received(slow, b"NICK slow\n", now);
        room.received(fast, b"NICK fast\n", now);
        room.received(talker, b"NICK talker\n", now);
        for _ in 0..10 {
            room.received(talker, b"0123456789\n", now);
            take(&mut room, fast);
        }
        assert_eq!(room.status(slow), Status::Kill);
        assert_eq!(room.status(fast), Status::Open);
        room.received(talker, b"still here\n", now);
        assert_eq!(take(&mut room, fast), "[talker] still here\n");
        room.remove(slow);
        // Its departure was announced when it was dropped, not again now.
        assert_eq!(take(&mut room, fast), "");
    }

    #[test]
    fn shutdown_says_bye_to_everyone() {
        let now = Instant::now();
        let mut room = Room::new(limits(Mode::Chat), now);
        let a = room.connect(now).unwrap();
        let b = room.connect(now).unwrap();
        room.received(a, b"NICK alice\n", now);
        take(&mut room, a);
        room.shutdown();
        assert_eq!(take(&mut room, a), "BYE server shutting down\n");
        assert_eq!(take(&mut room, b), "BYE server shutting down\n");
    }

    #[test]
    fn protobuf_framing_answers_in_frames() {
        use crate::framing::{Response, decode_message, encode_message, request_of, response};
        let now = Instant::now();
        let mut room = Room::new(
            Limits {
                framing: Framing::Protobuf,
                ..limits(Mode::Echo)
            },
            now,
        );
        let id = room.connect(now).unwrap();
        let mut input = Vec::new();
        encode_message(&request_of(&Command::Add(2, 3)).unwrap(), &mut input);
        room.received(id, &input, now);
        let Ok(Decoded::Complete { item, .. }) = decode_message::<Response>(room.pending(id), 99)
        else {
            panic!("a response frame")
        };
        assert_eq!(item.kind, Some(response::Kind::Sum(5)));
    }

    proptest::proptest! {
        /// Whatever bytes arrive, in whatever pieces, in any mode and
        /// framing: no panic, and the buffers stay bounded.
        #[test]
        fn any_input_is_handled_within_bounds(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..32),
            chat in proptest::bool::ANY,
            protobuf in proptest::bool::ANY,
        ) {
            let now = Instant::now();
            let mode = if chat { Mode::Chat } else { Mode::Echo };
            let framing = if protobuf { Framing::Protobuf } else { Framing::Line };
            let mut room = Room::new(Limits { framing, ..limits(mode) }, now);
            let a = room.connect(now).unwrap();
            let b = room.connect(now).unwrap();
            for (i, chunk) in chunks.iter().enumerate() {
                let id = if i % 2 == 0 { a } else { b };
                if room.wants_read(id) {
                    room.received(id, chunk, now);
                }
                let c = &room.clients[id];
                proptest::prop_assert!(c.input.len() <= 32 + 2 + 64);
                proptest::prop_assert!(c.pending_len() <= 64 + 64);
            }
            room.eof(a);
            room.shutdown();
        }
    }
}
