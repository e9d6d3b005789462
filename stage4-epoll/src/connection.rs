//! One client connection as a non-blocking state machine.
//!
//! In stages 2 and 3 a connection's state lived on a thread's stack: "where
//! am I in this request" was simply the line of code the thread was blocked
//! on. An event loop has no thread to spare per connection, so that state
//! becomes data — a [`Phase`] — and every readiness event or timer calls
//! [`Connection::drive`], which does as much as the socket allows *without
//! ever blocking* and then returns to the loop.
//!
//! ```text
//!              accept
//!                │
//!                ▼        head complete,
//!   ┌──────► ReadingHead ─── response(s) built ───► Writing ──┐
//!   │            │  ▲                                  │  │   │
//!   │   body to  │  │ body skipped                     │  │   │ Connection: close
//!   │   skip     ▼  │                                  │  │   │ (or error, 408)
//!   │        SkippingBody                              │  │   ▼
//!   │                                                  │  │ Lingering ── client
//!   └──────────── all written, keep-alive ─────────────┘  │   │          closes,
//!                                                         │   │          or 2 s
//!      timeout / EOF / error / shutdown while idle ───────┴───┴──► closed (dropped)
//! ```
//!
//! The HTTP decisions are not made here: [`Conn`] from `common` parses and
//! answers, exactly as in every other stage. This file only moves bytes and
//! keeps the *readiness* the kernel reported, because mio's events are
//! edge-triggered (see the rules in [`crate::event_loop`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::http::{Conn, Site, Step};
use common::server::Timeouts;
use common::stats::Timeout;
use common::tls::{Input, Session};
use mio::event::Event;
use mio::net::TcpStream;

use crate::buffer_pool::{BufferPool, Buffers};
use crate::proxy::Upstreams;
use crate::timer::{Deadline, Timers};
use mio::Registry;

// Files up to `SMALL_FILE` (the size the core's cache keeps in memory)
// are read into the output buffer (one `pread`) instead of being sent with
// `sendfile(2)`: the head and the body then go out in one `write`, and a
// pipelined batch of small files in one too.
pub use common::http::cache::SMALL_FILE;
// Sending and lingering are bounded as in every stage.
use common::limits::{LINGER_BYTES, LINGER_TIME, SENDFILE_CHUNK};

/// [`LINGER_BYTES`] as the type of [`Connection`]'s counter (1 MiB).
const LINGER_LIMIT: u32 = LINGER_BYTES as u32;
/// Bytes asked for per `read(2)` (at least; more if the buffer has room).
const READ_CHUNK: usize = 16 * 1024;
/// A pipelined batch stops growing once this much output is waiting: it is
/// written before more requests are answered.
const BATCH_LIMIT: usize = 64 * 1024;
/// How much one connection may send in one turn before it yields to the
/// others (a fast reader of a large file must not starve the loop).
const TURN_BYTES: u64 = 4 << 20;
/// Rounds of read → answer → write one connection gets per turn.
const TURN_ROUNDS: u32 = 16;

// ANCHOR: phase
/// Where a connection is in its life; the arrows are in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request head (the first, or the next on a keep-alive
    /// connection), or for the rest of one.
    ReadingHead,
    /// A response was sent but the request's body has not all arrived: the
    /// bytes are read and thrown away so that the next request can be found.
    SkippingBody,
    /// Response bytes (and maybe a file region) wait to be written; reading
    /// stops meanwhile, which is the back-pressure on a pipelining client.
    Writing,
    /// The last response is out and our FIN is sent (`shutdown(Write)`);
    /// what the client still sends is read and discarded until it closes,
    /// so that the kernel does not answer with a RST that could destroy the
    /// response in flight (nginx's "lingering close").
    Lingering,
    /// The request is being forwarded to the upstream and its response
    /// relayed (`--proxy-pass`): the second state machine, in
    /// [`crate::proxy`], drives both sockets until the exchange is over.
    Proxying,
}
// ANCHOR_END: phase

/// What [`Connection::drive`] tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for readiness or a timer: nothing to do until an event.
    Wait,
    /// More could be done right now, but the connection used up its turn:
    /// drive it again after the other ready connections.
    Yield,
    /// The connection is finished: drop it.
    Done,
}

/// Everything [`Connection::drive`] borrows from its event loop.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The site being served.
    pub site: &'a Site,
    /// Header, keep-alive and send timeouts.
    pub timeouts: Timeouts,
    /// Where buffers are borrowed from and returned to.
    pub pool: &'a mut BufferPool,
    /// The loop's timer heap.
    pub timers: &'a mut Timers,
    /// A loop-wide buffer for bytes that are read only to be discarded.
    pub scratch: &'a mut [u8],
    /// The loop's clock for this round (one `Instant::now()` per round).
    pub now: Instant,
    /// The server is shutting down: answer with `Connection: close`, and
    /// wait at most `last_request` for another request.
    pub draining: bool,
    /// This connection's slab key (also its mio token).
    pub key: usize,
    /// The loop's upstream connections, if it is a reverse proxy.
    pub proxy: Option<&'a mut Upstreams>,
    /// Where new upstream connections are registered.
    pub registry: &'a Registry,
}

/// What one `read` brought.
pub(crate) enum Read_ {
    Data,
    WouldBlock,
    Eof,
}

/// What one attempt to flush the output brought.
pub(crate) enum Flush {
    /// Everything, including any file region, is written.
    Done,
    /// The socket's send buffer is full: wait for `WRITABLE`.
    Blocked,
    /// The turn's byte budget is used up.
    Yield,
}

// ANCHOR: connection
/// One client connection. Small on purpose: 10,000 idle ones should cost
/// little more than 10,000 of these structs.
#[derive(Debug)]
pub struct Connection {
    /// The non-blocking socket, registered with the loop's `Poll` for both
    /// `READABLE` and `WRITABLE` once, for its whole life: re-registering
    /// when the interest changes would cost an `epoll_ctl` per request.
    stream: TcpStream,
    /// The sans-IO HTTP state: framing, what to skip, keep-alive.
    pub(crate) http: Conn,
    /// Where the connection is in its life.
    pub(crate) phase: Phase,
    /// Input and output buffers, borrowed from the pool only while the
    /// connection has something buffered. `None` when idle.
    pub(crate) bufs: Option<Box<Buffers>>,
    /// The kernel said "readable" and we have not seen `WouldBlock` (or a
    /// short read) since. With edge-triggered events this flag *is* the
    /// readiness: no new event comes until we use it up.
    pub(crate) read_ready: bool,
    /// The same for writing.
    write_ready: bool,
    /// The peer sent its FIN (EPOLLRDHUP). A short read no longer proves
    /// the socket drained: the end-of-file still has to be read.
    peer_closed: bool,
    /// Bytes thrown away while lingering (at most [`LINGER_LIMIT`]).
    lingered: u32,
    /// Tells this connection from a later one in the same slab slot, for
    /// the timer heap's lazy cancellation.
    pub serial: u32,
    /// The single deadline that applies in the current phase.
    pub deadline: Deadline,
    /// With `--tls-cert`: the TLS layer between the socket and `http`
    /// (boxed: a plain connection pays one pointer for it). Every byte
    /// read goes through its `read_from`, every byte written through its
    /// `push` and `write_to`; the readiness flags above mean the same.
    tls: Option<Box<Session>>,
}
// ANCHOR_END: connection

impl Connection {
    /// A freshly accepted connection; the loop arms its header timeout.
    pub fn new(
        stream: TcpStream,
        peer: IpAddr,
        serial: u32,
        tls: Option<Box<Session>>,
    ) -> Connection {
        Connection {
            stream,
            http: Conn::new(peer),
            phase: Phase::ReadingHead,
            bufs: None,
            read_ready: false,
            write_ready: false,
            peer_closed: false,
            lingered: 0,
            serial,
            deadline: Deadline::new(),
            tls,
        }
    }

    /// True if the connection waits for a request with nothing received:
    /// what a shutdown closes at once.
    pub fn is_waiting(&self) -> bool {
        self.phase == Phase::ReadingHead && self.bufs.as_ref().is_none_or(|b| b.input.is_empty())
    }

    /// Gives the buffers back to the pool (when the connection is dropped).
    pub fn release(&mut self, pool: &mut BufferPool) {
        if let Some(b) = self.bufs.take() {
            pool.give(b);
        }
    }

    // ANCHOR: on_event
    /// Records what an event says. mio may report readiness that is gone by
    /// the time we act on it (a *spurious* event): that is fine, because the
    /// flags only make us *try*, and `WouldBlock` clears them again.
    pub fn on_event(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_ready = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.write_ready = true;
        }
        if event.is_read_closed() {
            self.peer_closed = true;
        }
    }
    // ANCHOR_END: on_event

    pub(crate) fn arm(&mut self, cx: &mut Ctx<'_>, after: Duration) {
        cx.timers
            .arm(&mut self.deadline, cx.now + after, cx.key, self.serial);
    }

    // ANCHOR: drive
    /// Does everything the socket allows right now, without blocking:
    /// answers buffered requests, writes until the send buffer is full,
    /// reads until the receive buffer is empty. Returns what the loop
    /// should do with the connection next. An error means "drop it".
    pub fn drive(&mut self, cx: &mut Ctx<'_>) -> io::Result<Progress> {
        let mut rounds = 0;
        let mut sent = 0u64;
        loop {
            match self.phase {
                Phase::Lingering => return Ok(self.linger(cx)),
                Phase::Proxying => {
                    if let Some(progress) = self.drive_exchange(cx)? {
                        return Ok(progress);
                    }
                }
                Phase::Writing => match self.flush(cx, &mut sent)? {
                    Flush::Blocked => return Ok(Progress::Wait),
                    Flush::Yield => return Ok(Progress::Yield),
                    // The client said it was done and nothing of it is
                    // unread: a plain close, no lingering.
                    Flush::Done if self.http.closing() && self.nothing_unread() => {
                        self.tls_goodbye();
                        return Ok(Progress::Done);
                    }
                    Flush::Done if self.http.closing() => self.start_linger(cx),
                    Flush::Done => {
                        // Keep-alive: the next request may already be here.
                        self.phase = self.reading_phase();
                        let waiting = self.is_waiting();
                        let t = cx.timeouts;
                        // A response written while a shutdown began still
                        // said keep-alive: its client's next request may
                        // be on its way. Wait for it, briefly, and answer
                        // it with `Connection: close`.
                        let idle = if cx.draining {
                            t.keepalive.min(t.last_request)
                        } else {
                            t.keepalive
                        };
                        self.arm(cx, if waiting { idle } else { t.header });
                    }
                },
                Phase::ReadingHead | Phase::SkippingBody => {
                    rounds += 1;
                    if rounds > TURN_ROUNDS {
                        return Ok(Progress::Yield);
                    }
                    // Handshake messages a full send buffer held back.
                    self.flush_tls_pending()?;
                    if self.bufs.as_ref().is_some_and(|b| !b.input.is_empty()) {
                        if self.answer(cx)? {
                            continue;
                        }
                        if self.http.closing() {
                            // A request arrived after a `Connection: close`.
                            self.start_linger(cx);
                            continue;
                        }
                    }
                    if !self.read_ready {
                        self.release_if_idle(cx.pool);
                        return Ok(Progress::Wait);
                    }
                    match self.read(cx)? {
                        Read_::Data => {}
                        Read_::WouldBlock => {
                            self.release_if_idle(cx.pool);
                            return Ok(Progress::Wait);
                        }
                        Read_::Eof => return Ok(Progress::Done),
                    }
                }
            }
        }
    }
    // ANCHOR_END: drive

    /// The client announced its last request, we read all of it, and the
    /// last read was short (the receive queue was empty): closing now sends
    /// a FIN after the response, never a reset.
    fn nothing_unread(&self) -> bool {
        self.http.peer_done()
            && !self.read_ready
            && self.bufs.as_ref().is_none_or(|b| b.input.is_empty())
    }

    /// `ReadingHead`, or `SkippingBody` while body bytes are still owed.
    fn reading_phase(&self) -> Phase {
        if self.http.skipping_body() {
            Phase::SkippingBody
        } else {
            Phase::ReadingHead
        }
    }

    // ANCHOR: answer
    /// Runs the sans-IO core over the buffered input: every complete
    /// pipelined request is answered into one output buffer, so the whole
    /// batch goes out in one `write`. Returns true if something is to be
    /// written (the phase is then `Writing`).
    fn answer(&mut self, cx: &mut Ctx<'_>) -> io::Result<bool> {
        let Some(b) = self.bufs.as_deref_mut() else {
            return Ok(false);
        };
        let mut consumed = 0;
        let mut forward = false;
        loop {
            // A reverse proxy hands the requests it forwards to the second
            // state machine; the core answers the rest, and every error.
            if let Some(ups) = cx.proxy.as_deref()
                && !self.http.skipping_body()
                && !self.http.closing()
                && crate::proxy::forwards(&b.input[consumed..], cx.site, ups.config())
            {
                // The answers before it go out first.
                forward = b.out.len() == b.written && b.file.is_none();
                break;
            }
            let (used, step) =
                self.http
                    .next(&b.input[consumed..], cx.site, cx.draining, &mut b.out);
            consumed += used;
            let reply = match step {
                Step::NeedInput | Step::Close => break,
                Step::Respond(reply) => reply,
            };
            if let Some(region) = reply.file {
                if region.len <= SMALL_FILE {
                    // Small file: one pread into the batch, no sendfile.
                    let start = b.out.len();
                    b.out.resize(start + region.len as usize, 0);
                    region
                        .file
                        .read_exact_at(&mut b.out[start..], region.offset)?;
                } else {
                    // Large file: write what is batched, then sendfile it.
                    b.file = Some(region);
                    break;
                }
            }
            if !reply.keep_alive || b.out.len() >= BATCH_LIMIT {
                break;
            }
        }
        b.input.drain(..consumed);
        if forward {
            self.start_exchange(cx)?;
            return Ok(true);
        }
        if b.out.len() > b.written || b.file.is_some() {
            self.phase = Phase::Writing;
            let send = cx.timeouts.send;
            self.arm(cx, send);
            return Ok(true);
        }
        self.phase = self.reading_phase();
        Ok(false)
    }
    // ANCHOR_END: answer

    // ANCHOR: read
    /// One `read(2)` into the input buffer (borrowed from the pool if the
    /// connection had none).
    pub(crate) fn read(&mut self, cx: &mut Ctx<'_>) -> io::Result<Read_> {
        let b = self.bufs.get_or_insert_with(|| cx.pool.take());
        let was_empty = b.input.is_empty();
        if let Some(tls) = self.tls.as_deref_mut() {
            // The socket's bytes go to rustls; what comes out is plaintext
            // (none while handshaking). No short-read shortcut: a read
            // ends at a record, not at the queue's end, so read on until
            // `WouldBlock`.
            let n = match tls.read_from(&mut &self.stream, &mut b.input) {
                Ok(Input::Eof) => return Ok(Read_::Eof),
                Ok(Input::Data(n)) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_ready = false;
                    return Ok(Read_::WouldBlock);
                }
                Err(e) => {
                    // A bad handshake or record: send rustls's alert if
                    // the socket takes it, and close.
                    let _ = tls.write_to(&mut &self.stream);
                    return Err(e);
                }
            };
            if n > 0 && was_empty && self.phase == Phase::ReadingHead {
                let header = cx.timeouts.header;
                self.arm(cx, header);
            }
            self.flush_tls_pending()?;
            return Ok(Read_::Data);
        }
        let start = b.input.len();
        b.input.reserve(READ_CHUNK);
        let room = b.input.capacity() - start;
        b.input.resize(start + room, 0);
        let result = loop {
            match (&self.stream).read(&mut b.input[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *result.as_ref().unwrap_or(&0);
        b.input.truncate(start + n);
        match result {
            Ok(0) => Ok(Read_::Eof),
            Ok(n) => {
                // A short read means the receive queue is empty *now*; on
                // Linux any later segment raises a new edge, so we need not
                // spend a second read(2) just to see EAGAIN (nginx relies on
                // the same). Unless the peer's FIN is queued: then read on.
                if n < room && !self.peer_closed {
                    self.read_ready = false;
                }
                if was_empty && self.phase == Phase::ReadingHead {
                    // A request began: the header timeout runs from here.
                    let header = cx.timeouts.header;
                    self.arm(cx, header);
                }
                Ok(Read_::Data)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.read_ready = false;
                Ok(Read_::WouldBlock)
            }
            Err(e) => Err(e),
        }
    }
    // ANCHOR_END: read

    // ANCHOR: flush
    /// Writes the output buffer, then the file region with `sendfile(2)`,
    /// until done, until the socket's send buffer is full, or until the
    /// turn's budget is spent. Each bit of progress re-arms the send timeout.
    pub(crate) fn flush(&mut self, cx: &mut Ctx<'_>, sent: &mut u64) -> io::Result<Flush> {
        if self.tls.is_some() {
            return self.flush_tls(cx, sent);
        }
        let Some(b) = self.bufs.as_deref_mut() else {
            return Ok(Flush::Done);
        };
        let mut progressed = false;
        let result = (|| {
            while b.written < b.out.len() {
                if !self.write_ready {
                    return Ok(Flush::Blocked);
                }
                let pending = &b.out[b.written..];
                match (&self.stream).write(pending) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        b.written += n;
                        progressed = true;
                        // A short write means the send buffer is full.
                        if n < pending.len() {
                            self.write_ready = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.write_ready = false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            b.out.clear();
            b.written = 0;
            while let Some(region) = b.file.as_mut() {
                if region.len == 0 {
                    b.file = None;
                    break;
                }
                if !self.write_ready {
                    return Ok(Flush::Blocked);
                }
                if *sent >= TURN_BYTES {
                    return Ok(Flush::Yield);
                }
                let count = region.len.min(SENDFILE_CHUNK as u64) as usize;
                match common::sendfile::send_chunk(&self.stream, &region.file, region.offset, count)
                {
                    Ok(n) => {
                        region.offset += n as u64;
                        region.len -= n as u64;
                        *sent += n as u64;
                        // A short sendfile does not prove the send buffer
                        // full, as a short write does: a signal (SIGTERM,
                        // SIGHUP in a stage 5 worker) stops the copy early,
                        // and then no EPOLLOUT edge would ever come. Only
                        // EAGAIN, which the next call returns if it is full,
                        // clears the flag.
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_ready = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Flush::Done)
        })();
        if progressed {
            let send = cx.timeouts.send;
            self.arm(cx, send);
        }
        result
    }
    // ANCHOR_END: flush

    // ANCHOR: flush_tls
    /// [`Connection::flush`] through TLS: the output buffer, then the file
    /// region read in chunks (`sendfile` cannot encrypt), are pushed into
    /// rustls while it takes them, and its records are written while the
    /// socket takes them.
    fn flush_tls(&mut self, cx: &mut Ctx<'_>, sent: &mut u64) -> io::Result<Flush> {
        let (Some(b), Some(tls)) = (self.bufs.as_deref_mut(), self.tls.as_deref_mut()) else {
            return Ok(Flush::Done);
        };
        let mut progressed = false;
        let result = (|| {
            loop {
                // Plaintext in, while rustls has room (it holds 64 KiB).
                loop {
                    if b.written < b.out.len() {
                        let n = tls.push(&b.out[b.written..]);
                        if n == 0 {
                            break;
                        }
                        b.written += n;
                    } else if let Some(region) = b.file.as_mut() {
                        if region.len == 0 {
                            b.file = None;
                        } else if *sent >= TURN_BYTES {
                            break;
                        } else {
                            let n = common::tls::push_region_chunk(tls, region, cx.scratch)?;
                            if n == 0 {
                                break;
                            }
                            region.offset += n as u64;
                            region.len -= n as u64;
                            *sent += n as u64;
                        }
                    } else {
                        break;
                    }
                }
                if !tls.wants_write() {
                    if b.written >= b.out.len() && b.file.is_none() {
                        b.out.clear();
                        b.written = 0;
                        return Ok(Flush::Done);
                    }
                    // The turn's budget stopped the pushing.
                    return Ok(Flush::Yield);
                }
                if !self.write_ready {
                    return Ok(Flush::Blocked);
                }
                match tls.write_to(&mut &self.stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => progressed = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_ready = false,
                    Err(e) => return Err(e),
                }
            }
        })();
        if progressed {
            let send = cx.timeouts.send;
            self.arm(cx, send);
        }
        result
    }
    // ANCHOR_END: flush_tls

    /// Writes what rustls holds (handshake messages, an alert) while the
    /// socket takes it; the rest waits for the next `WRITABLE`.
    fn flush_tls_pending(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        while tls.wants_write() && self.write_ready {
            match tls.write_to(&mut &self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_ready = false,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// With TLS, the end of the data is said with `close_notify` before
    /// the FIN (written if the socket takes it now; it is a few bytes).
    fn tls_goodbye(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.close_notify();
            let _ = self.flush_tls_pending();
        }
    }

    // ANCHOR: linger
    /// Sends our FIN and starts discarding input (see [`Phase::Lingering`]).
    /// The buffers go back to the pool: lingering reads into the loop's
    /// scratch buffer.
    pub(crate) fn start_linger(&mut self, cx: &mut Ctx<'_>) {
        self.tls_goodbye();
        self.release(cx.pool);
        self.phase = Phase::Lingering;
        self.arm(cx, LINGER_TIME);
        if self.stream.shutdown(Shutdown::Write).is_err() {
            // Already reset by the peer: nothing to protect any more.
            self.lingered = LINGER_LIMIT;
        }
    }

    /// Reads and discards until the client closes, the budget is spent or
    /// (via the timer) the linger time is over.
    fn linger(&mut self, cx: &mut Ctx<'_>) -> Progress {
        while self.lingered < LINGER_LIMIT {
            if !self.read_ready {
                return Progress::Wait;
            }
            match (&self.stream).read(cx.scratch) {
                Ok(0) => return Progress::Done,
                Ok(n) => {
                    self.lingered = self
                        .lingered
                        .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
                    if n < cx.scratch.len() && !self.peer_closed {
                        self.read_ready = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.read_ready = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Done,
            }
        }
        Progress::Done
    }
    // ANCHOR_END: linger

    // ANCHOR: on_timeout
    /// The connection's deadline passed. Waiting for a head: answer `408`
    /// if a request had begun (then close), else close quietly. Stuck while
    /// writing, or lingering too long: drop it.
    pub fn on_timeout(&mut self, cx: &mut Ctx<'_>) -> io::Result<Progress> {
        // A TLS handshake still going on: counted as such, and closed
        // without a 408 (there is no channel to send it on yet).
        if self.phase == Phase::ReadingHead
            && let Some(tls) = self.tls.as_deref_mut()
            && tls.timed_out()
        {
            return Ok(Progress::Done);
        }
        let kind = match self.phase {
            Phase::ReadingHead if self.is_waiting() && self.http.served() > 0 => {
                Some(Timeout::KeepAlive)
            }
            Phase::ReadingHead | Phase::SkippingBody => Some(Timeout::Header),
            Phase::Writing => Some(Timeout::Send),
            Phase::Lingering => None,
            Phase::Proxying => return self.exchange_timed_out(cx),
        };
        if let Some(kind) = kind {
            cx.site.counters.timeout(kind);
        }
        match self.phase {
            Phase::ReadingHead | Phase::SkippingBody => {
                let b = self.bufs.get_or_insert_with(|| cx.pool.take());
                let reply = self.http.timeout(&b.input, cx.site, &mut b.out);
                b.input.clear();
                if reply.is_none() {
                    return Ok(Progress::Done);
                }
                self.phase = Phase::Writing;
                let send = cx.timeouts.send;
                self.arm(cx, send);
                self.drive(cx)
            }
            Phase::Writing | Phase::Lingering | Phase::Proxying => Ok(Progress::Done),
        }
    }
    // ANCHOR_END: on_timeout

    /// Returns the buffers to the pool if nothing is buffered.
    fn release_if_idle(&mut self, pool: &mut BufferPool) {
        if self.bufs.as_ref().is_some_and(|b| b.is_idle()) {
            self.release(pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The goal is at most 160 bytes of server memory per idle connection;
    /// the struct (in its slab slot) and its timer entry are most of it.
    /// 88 bytes in a release build (80, plus the pointer to a TLS session
    /// that a plain connection leaves empty); a debug build's mio socket
    /// carries a selector id for its own checks, 12 bytes more (with
    /// padding, 16).
    #[test]
    fn an_idle_connection_is_small() {
        let size = size_of::<Connection>();
        eprintln!("Connection: {size} bytes");
        let limit = if cfg!(debug_assertions) { 104 } else { 88 };
        assert!(size <= limit, "Connection is {size} bytes");
    }
}
