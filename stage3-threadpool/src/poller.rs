//! The poller model (`--idle poller`, the default): idle connections live
//! in one poller thread, and a worker holds a connection only while it has
//! bytes to work on.
//!
//! The classic model gives a connection to a worker at `accept` and takes
//! it back at `close`: a client that says nothing, trickles its head one
//! byte a second, idles between keep-alive requests, or has not closed yet
//! during our lingering close, holds a whole thread all that time. Eight
//! such clients stop an eight-worker server. Apache's event MPM, Tomcat's
//! NIO connector and Jetty all answer the same way: a *poller* thread owns
//! every connection that has nothing to read, and hands a connection to the
//! pool only when the kernel says it is readable.
//!
//! ```text
//!            accept               readable                 served; next request
//! listener ─────────► poller ─────────────► queue ─► worker ─────────────────────┐
//!                    (epoll:     ◄─────────────────────────── not here yet:      │
//!                     waiting,        hand back (+ wake)       wait --worker-wait │
//!                     lingering,                               then hand back ◄───┘
//!                     deadlines)
//! ```
//!
//! - The poller ([`Poller::run`]) accepts, and holds each connection as a
//!   [`Parked`]: the socket, the core's `Conn` and any partial head, the
//!   deadline, and whether it waits for a request or lingers after our FIN.
//!   It times them out (`408`, the keep-alive timeout, the end of a
//!   lingering close), drains lingering ones, and pushes readable waiting
//!   ones into the pool's queue.
//! - A worker ([`resume`]) serves requests while bytes are there. When the
//!   next request has not arrived it waits `--worker-wait` for it (so a busy
//!   keep-alive connection does not pay a hand-off per request) — or not at
//!   all when others wait in the queue — and hands the connection back.
//!   Ending a connection, it sends its FIN and hands it back to linger.
//! - Workers hand connections back through an [`Inbox`], and wake the
//!   poller (a `mio::Waker`, an eventfd) only when the inbox was empty: a
//!   burst of hand-backs costs one wake-up.
//!
//! **Why epoll (mio) and not `poll(2)`.** `poll` is given the whole list of
//! descriptors on every call and the kernel walks all of them: its cost
//! grows with the connections *held*, not with those that are *ready*.
//! Holding 10,000 idle connections is the point of a poller; the chapter
//! measures one `poll` over 10,000 idle sockets against one `epoll_wait`.
//! A connection is registered when it enters the poller and deregistered
//! when it leaves for a worker, so the poller never hears about a
//! connection it does not hold.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::http::{Conn, Step};
use common::limits::{LINGER_BYTES, LINGER_TIME};
use common::stats::Timeout;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::socket::{MsgFlags, recv, send};
use slab::Slab;
use stage2_http_seq::{Options, Track, send_response};

use crate::Context;
use crate::pool::ThreadPool;
use crate::queue::PushError;
use crate::stats::Stats;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);

/// How often the poller looks whether a shutdown has finished.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(10);

// ANCHOR: parked
/// A connection between two stretches of work, with everything needed to
/// resume it on any worker: the poller holds these, the queue carries them.
#[derive(Debug)]
pub struct Parked {
    stream: TcpStream,
    peer: SocketAddr,
    /// The core's state: requests served, a body being skipped, closing.
    conn: Conn,
    /// Bytes received and not yet parsed: a partial head travels with the
    /// connection. Emptied (and its memory freed) while the connection
    /// idles, so that 10,000 idle connections cost no buffers.
    input: Vec<u8>,
    /// When the current request's head began (the header timeout).
    request_began: Instant,
    /// When the last response was sent (the keep-alive timeout).
    last_response: Instant,
    /// When this connection first saw the shutdown (the last-request wait).
    drain_began: Option<Instant>,
    /// When the poller gives up on it.
    deadline: Instant,
    /// What the poller waits for.
    phase: Phase,
    /// Socket options are set once, on the first worker that gets it.
    prepared: bool,
    /// Answered `503` by the poller: not counted as served.
    rejected: bool,
    /// Open (and idle) on the status page until dropped.
    track: Track,
    /// The pool's counters: a connection counts as served when it is
    /// dropped.
    stats: Arc<Stats>,
}

/// What a parked connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its (next) request, or the rest of one: readable means "to a
    /// worker". `idle` is true between requests (the keep-alive timeout
    /// applies), false for a first or a partial request (the header
    /// timeout).
    Waiting { idle: bool },
    /// Our FIN is sent: the client's bytes are read and thrown away until
    /// it closes too, or [`LINGER_TIME`] passes.
    Lingering { drained: usize },
}
// ANCHOR_END: parked

impl Parked {
    fn accepted(stream: TcpStream, peer: SocketAddr, ctx: &Context) -> Parked {
        let now = Instant::now();
        Parked {
            stream,
            peer,
            conn: Conn::new(peer.ip()),
            input: Vec::new(),
            request_began: now,
            last_response: now,
            drain_began: None,
            deadline: now + ctx.timeouts().header,
            phase: Phase::Waiting { idle: false },
            prepared: false,
            rejected: false,
            track: Track::open(ctx.site().counters),
            stats: Arc::clone(&ctx.stats),
        }
    }

    /// Sends our FIN and turns the connection into a lingering one.
    fn linger(&mut self) -> Next {
        self.input = Vec::new();
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Next::Done;
        }
        self.phase = Phase::Lingering { drained: 0 };
        self.deadline = Instant::now() + LINGER_TIME;
        Next::Park
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if !self.rejected {
            Stats::bump(&self.stats.served);
        }
    }
}

/// Where a connection goes after a worker or the poller dealt with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Back to (or stay in) the poller.
    Park,
    /// Closed: drop it.
    Done,
}

/// Where workers hand connections back to the poller (see [`crate::inbox`]:
/// one wake-up per batch, model-checked).
pub type Inbox = crate::inbox::Inbox<Box<Parked>, Waker>;

/// A held connection and the generation of its deadline.
#[derive(Debug)]
struct Slot {
    parked: Box<Parked>,
    /// Matches the timer entry that is current for this slot; older
    /// entries for the same slab key are stale and skipped (lazy
    /// cancellation: a heap cannot remove from its middle cheaply).
    generation: u64,
}

/// The poller: owns the listener and every connection with nothing to
/// read.
#[derive(Debug)]
pub struct Poller {
    poll: Poll,
    listener: Option<TcpListener>,
    /// A second handle on the signal self-pipe, registered with mio.
    _signals: mio::net::UnixStream,
    /// Held connections. `slab` gives each a small integer (its token)
    /// that is reused after it leaves: a `HashMap` would hash on every
    /// event for nothing.
    conns: Slab<Slot>,
    /// Deadlines: (when, slab key, generation), earliest first.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_generation: u64,
    inbox: Arc<Inbox>,
    /// When the poller first saw the shutdown.
    shutdown_began: Option<Instant>,
}

impl Poller {
    /// A poller for `listener` (which it makes non-blocking).
    pub fn new(listener: TcpListener, ctx: &Context) -> io::Result<Poller> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let mut signals = mio::net::UnixStream::from_std(ctx.signals.wake_stream()?);
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Poller {
            poll,
            listener: Some(listener),
            _signals: signals,
            conns: Slab::new(),
            timers: BinaryHeap::new(),
            next_generation: 0,
            inbox: Arc::new(Inbox::new(waker)),
            shutdown_began: None,
        })
    }

    /// The handle the workers hand connections back through.
    pub fn inbox(&self) -> Arc<Inbox> {
        Arc::clone(&self.inbox)
    }

    // ANCHOR: run
    /// The poller's loop, until a shutdown has finished: the listener is
    /// closed, and every connection held or in the pool is done (or the
    /// grace period is over).
    pub fn run(mut self, pool: &ThreadPool<Box<Parked>>, ctx: &Context) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            // The pool's growth check wants to be called back too.
            if let Some(t) = pool.tick() {
                timeout = Some(timeout.map_or(t, |d| d.min(t)));
            }
            if self.shutdown_began.is_some() {
                timeout = Some(timeout.map_or(SHUTDOWN_CHECK, |d| d.min(SHUTDOWN_CHECK)));
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(ctx),
                    WAKER => {
                        for p in self.inbox.take() {
                            self.park(p, ctx);
                        }
                    }
                    SIGNALS => {
                        // After a shutdown the byte stays in the pipe for
                        // the other threads; other signals are drained.
                        if !ctx.signals.shutdown_requested() {
                            ctx.signals.drain();
                        }
                        ctx.reload_if_asked();
                    }
                    Token(key) => self.ready(key, pool, ctx),
                }
            }
            self.expire(ctx);
            if ctx.signals.shutdown_requested() && self.drained(ctx) {
                return Ok(());
            }
        }
    }
    // ANCHOR_END: run

    /// Accepts every pending connection and parks it until its first bytes
    /// arrive.
    fn accept_all(&mut self, ctx: &Context) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    Stats::bump(&ctx.stats.accepted);
                    let p = Box::new(Parked::accepted(stream, peer, ctx));
                    self.park(p, ctx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE: out of descriptors. The pending
                    // connection stays queued and the listener readable;
                    // epoll is edge-triggered, so it will not be reported
                    // again by itself: look again after a pause.
                    log::error!("accept: {e}");
                    std::thread::sleep(common::limits::ACCEPT_PAUSE);
                    self.retry_accept_later();
                    return;
                }
            }
        }
    }

    /// Re-arms the listener's registration, so that epoll reports it
    /// again if connections are still pending.
    fn retry_accept_later(&mut self) {
        if let Some(listener) = &self.listener {
            let _ = self.poll.registry().reregister(
                &mut SourceFd(&listener.as_raw_fd()),
                LISTENER,
                Interest::READABLE,
            );
        }
    }

    /// Takes a connection into the poller: registers it and sets its
    /// timer.
    fn park(&mut self, mut p: Box<Parked>, ctx: &Context) {
        if let Phase::Waiting { .. } = p.phase {
            if let Some(began) = self.shutdown_began {
                if p.input.is_empty() {
                    p.deadline = p.deadline.min(began + ctx.timeouts().last_request);
                }
            }
            p.track.idle(p.input.is_empty());
        }
        let fd = p.stream.as_raw_fd();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let registered =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(key), Interest::READABLE);
        if let Err(e) = registered {
            log::debug!("{}: cannot register: {e}", p.peer);
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.timers.push(Reverse((p.deadline, key, generation)));
        entry.insert(Slot {
            parked: p,
            generation,
        });
        ctx.stats.parked.store(self.conns.len(), Ordering::Relaxed);
    }

    /// Takes a connection out of the poller, to a worker (or to be parked
    /// again): it is deregistered, so that epoll reports nothing about it
    /// while the poller does not hold it.
    fn unpark(&mut self, key: usize, ctx: &Context) -> Box<Parked> {
        let p = self.forget(key, ctx);
        let fd: RawFd = p.stream.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        p
    }

    /// Takes a connection out of the poller to close it: no
    /// `epoll_ctl(DEL)`, since closing its only descriptor removes it from
    /// the epoll set anyway.
    fn forget(&mut self, key: usize, ctx: &Context) -> Box<Parked> {
        let slot = self.conns.remove(key);
        ctx.stats.parked.store(self.conns.len(), Ordering::Relaxed);
        slot.parked
    }

    /// A held connection is readable.
    fn ready(&mut self, key: usize, pool: &ThreadPool<Box<Parked>>, ctx: &Context) {
        let Some(slot) = self.conns.get_mut(key) else {
            // Spurious: the connection left already.
            return;
        };
        match slot.parked.phase {
            Phase::Lingering { .. } => {
                if drain(&mut slot.parked) == Next::Done {
                    drop(self.forget(key, ctx));
                }
            }
            Phase::Waiting { .. } => {
                let p = self.unpark(key, ctx);
                match pool.try_execute(p) {
                    Ok(()) => {}
                    Err(PushError::Full(p) | PushError::Closed(p)) => self.reject(p, ctx),
                }
            }
        }
    }

    /// No worker can take a readable connection (the queue is full):
    /// answer `503` with `Retry-After` from here, without blocking, and
    /// linger.
    fn reject(&mut self, mut p: Box<Parked>, ctx: &Context) {
        Stats::bump(&ctx.stats.rejected);
        let site = ctx.site();
        site.counters.rejected();
        if p.conn.served() == 0 {
            p.rejected = true;
        }
        let mut out = Vec::with_capacity(512);
        p.conn.reject_busy(&site, ctx.retry_after, &mut out);
        self.answer_and_linger(p, &out, ctx);
    }

    /// Sends a last answer without waiting, then keeps the connection for
    /// its lingering close. A socket that took no response yet has room for
    /// a few hundred bytes in its send buffer; if it has not, the answer is
    /// lost, not the poller's time.
    fn answer_and_linger(&mut self, mut p: Box<Parked>, out: &[u8], ctx: &Context) {
        let _ = send(
            p.stream.as_raw_fd(),
            out,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
        if p.linger() == Next::Park {
            self.park(p, ctx);
        }
    }

    /// The earliest live deadline.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((when, key, generation))) = self.timers.peek() {
            if self
                .conns
                .get(key)
                .is_some_and(|s| s.generation == generation)
            {
                return Some(when);
            }
            self.timers.pop();
        }
        None
    }

    /// Handles every connection whose deadline has passed.
    fn expire(&mut self, ctx: &Context) {
        let now = Instant::now();
        while let Some(when) = self.next_deadline() {
            if when > now {
                return;
            }
            let Some(Reverse((_, key, _))) = self.timers.pop() else {
                return;
            };
            let mut p = self.forget(key, ctx);
            match p.phase {
                Phase::Lingering { .. } => {}
                Phase::Waiting { idle } => {
                    let site = ctx.site();
                    site.counters.timeout(if idle {
                        Timeout::KeepAlive
                    } else {
                        Timeout::Header
                    });
                    let mut out = Vec::new();
                    if p.conn.timeout(&p.input, &site, &mut out).is_some() {
                        // It stays for its lingering close: registered
                        // again below, so out of the epoll set first.
                        let _ = self
                            .poll
                            .registry()
                            .deregister(&mut SourceFd(&p.stream.as_raw_fd()));
                        self.answer_and_linger(p, &out, ctx);
                    }
                }
            }
        }
    }

    /// During a shutdown: closes the listener at once, gives waiting
    /// connections their `--last-request`, and returns true once nothing
    /// is left — no connection held, queued or on a worker — or the grace
    /// period is over.
    fn drained(&mut self, ctx: &Context) -> bool {
        let now = Instant::now();
        let began = match self.shutdown_began {
            Some(began) => began,
            None => {
                self.begin_shutdown(now, ctx);
                now
            }
        };
        // The order matters: a worker is counted busy *before* its
        // connection leaves the queue gauge (a release), and hands a
        // connection back *before* it stops counting as busy. So reading
        // the queue gauge first (an acquire), then the busy count, cannot
        // miss a connection on its way from the queue to a worker; and once
        // both read zero, every hand-back is in the inbox.
        let idle_pool = ctx.stats.queued.load(Ordering::Acquire) == 0
            && ctx.stats.busy.load(Ordering::SeqCst) == 0;
        if idle_pool {
            for p in self.inbox.take() {
                self.park(p, ctx);
            }
        }
        let over = now > began + ctx.timeouts().grace + LINGER_TIME;
        if (idle_pool && self.conns.is_empty()) || over {
            if over {
                log::warn!(
                    "shutdown: {} connections still held after the grace period",
                    self.conns.len()
                );
            }
            // Hand-backs from now on are finished by their workers.
            drop(self.inbox.close());
            return true;
        }
        false
    }

    /// The first look at a shutdown: stop accepting (connections not yet
    /// accepted are refused from now on), and give each connection waiting
    /// for a request `--last-request` to send it.
    fn begin_shutdown(&mut self, now: Instant, ctx: &Context) {
        self.shutdown_began = Some(now);
        if let Some(listener) = self.listener.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&listener.as_raw_fd()));
        }
        let last = now + ctx.timeouts().last_request;
        let waiting: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| {
                matches!(s.parked.phase, Phase::Waiting { .. })
                    && s.parked.input.is_empty()
                    && s.parked.deadline > last
            })
            .map(|(k, _)| k)
            .collect();
        for key in waiting {
            let mut p = self.unpark(key, ctx);
            p.deadline = last;
            self.park(p, ctx);
        }
        self.expire(ctx);
    }
}

/// Reads and throws away what a lingering connection sent, without
/// blocking. `Done` once the client has closed (or sent too much).
fn drain(p: &mut Parked) -> Next {
    let Phase::Lingering { drained } = &mut p.phase else {
        return Next::Park;
    };
    let mut buf = [0u8; 4096];
    loop {
        match recv(p.stream.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Next::Done,
            Ok(n) => {
                *drained += n;
                if *drained >= LINGER_BYTES {
                    return Next::Done;
                }
            }
            Err(nix::errno::Errno::EAGAIN) => return Next::Park,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Next::Done,
        }
    }
}

// ANCHOR: resume
/// A worker's job in the poller model: serve the requests whose bytes are
/// there, then hand the connection back to the poller (waiting for its
/// next request, or lingering after our FIN) or close it.
pub fn resume(mut p: Box<Parked>, ctx: &Context, inbox: &Inbox) {
    if let Some(path) = &ctx.panic_path {
        if !p.prepared && crate::asks_for(&p.stream, path) {
            panic!("{} asked for --panic-path {path}", p.peer);
        }
    }
    let site = ctx.site();
    let opts = Options {
        site: &site,
        timeouts: ctx.timeouts(),
        signals: &ctx.signals,
        tls: None,
    };
    let next = match serve_parked(&mut p, &opts, ctx) {
        Ok(next) => next,
        Err(e) => {
            log::debug!("{}: {e}", p.peer);
            Next::Done
        }
    };
    if next == Next::Done {
        return;
    }
    Stats::bump(&ctx.stats.handed_back);
    if let Err(p) = inbox.hand_back(p) {
        // The poller has exited (the shutdown is over): finish here.
        if let Phase::Lingering { .. } = p.phase {
            stage2_http_seq::io::linger_close(&p.stream);
        }
    }
}
// ANCHOR_END: resume

// ANCHOR: serve_parked
/// Serves `p` while its bytes last; says where it goes next.
fn serve_parked(p: &mut Parked, opts: &Options<'_>, ctx: &Context) -> io::Result<Next> {
    p.track.idle(false);
    if !p.prepared {
        // Once per connection: blocking writes bounded by the send
        // timeout, no Nagle delay, and a receive timeout that is the
        // worker's short wait for the next request.
        p.stream.set_nodelay(true)?;
        p.stream.set_write_timeout(Some(opts.timeouts.send))?;
        // (A zero timeout would mean "block forever": no wait at all is
        // `MSG_DONTWAIT` below instead.)
        if !ctx.worker_wait.is_zero() {
            p.stream.set_read_timeout(Some(ctx.worker_wait))?;
        }
        p.prepared = true;
    }
    let site = opts.site;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Once a shutdown has started, the next response is the last one.
        let draining = opts.signals.shutdown_requested();
        let (used, step) = p.conn.next(&p.input, site, draining, &mut out);
        p.input.drain(..used);
        match step {
            Step::Respond(reply) => {
                send_response(&p.stream, &mut out, &reply, opts, &p.track)?;
                Stats::bump(&ctx.stats.requests);
                ctx.stats.bytes.fetch_add(reply.body_len, Ordering::Relaxed);
                if !reply.keep_alive {
                    return Ok(p.linger());
                }
                p.last_response = Instant::now();
                p.request_began = p.last_response;
            }
            Step::Close => return Ok(p.linger()),
            Step::NeedInput => {
                // Nothing received: waiting for a first request (header
                // timeout from the accept) or between requests
                // (keep-alive timeout).
                let waiting = p.input.is_empty() && !p.conn.skipping_body();
                let idle = waiting && p.conn.served() > 0;
                p.deadline = if idle {
                    p.last_response + opts.timeouts.keepalive
                } else {
                    p.request_began + opts.timeouts.header
                };
                if waiting && draining {
                    let began = *p.drain_began.get_or_insert_with(Instant::now);
                    p.deadline = p.deadline.min(began + opts.timeouts.last_request);
                }
                if Instant::now() >= p.deadline {
                    return time_out(p, idle, ctx, &mut out);
                }
                // Wait for more only while nobody else waits for a worker.
                let flags = if ctx.worker_wait.is_zero() || ctx.stats.others_waiting() {
                    MsgFlags::MSG_DONTWAIT
                } else {
                    MsgFlags::empty()
                };
                match read_some(p, flags)? {
                    Some(0) => return Ok(Next::Done),
                    Some(_) => {
                        if waiting {
                            p.request_began = Instant::now();
                        }
                    }
                    None => {
                        // Not here yet: let the poller hold it.
                        p.phase = Phase::Waiting { idle };
                        if p.input.is_empty() {
                            p.input = Vec::new();
                        }
                        return Ok(Next::Park);
                    }
                }
            }
        }
    }
}
// ANCHOR_END: serve_parked

/// One `recv` into the end of the input: `Some(n)` bytes (0: the client
/// closed), `None` if nothing came within the receive timeout (or at
/// once, with `MSG_DONTWAIT`).
fn read_some(p: &mut Parked, flags: MsgFlags) -> io::Result<Option<usize>> {
    let mut buf = [0u8; 8192];
    loop {
        match recv(p.stream.as_raw_fd(), &mut buf, flags) {
            Ok(n) => {
                p.input.extend_from_slice(&buf[..n]);
                return Ok(Some(n));
            }
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A deadline passed while a worker held the connection: count it, send
/// the core's `408` if a request had begun, and linger (or close).
fn time_out(p: &mut Parked, idle: bool, ctx: &Context, out: &mut Vec<u8>) -> io::Result<Next> {
    let site = ctx.site();
    site.counters.timeout(if idle {
        Timeout::KeepAlive
    } else {
        Timeout::Header
    });
    out.clear();
    if p.conn.timeout(&p.input, &site, out).is_some() {
        io::Write::write_all(&mut p.stream, out)?;
        return Ok(p.linger());
    }
    Ok(Next::Done)
}
