//! The event loop: one thread, one `mio::Poll`, thousands of connections.
//!
//! # The readiness rules this loop relies on
//!
//! mio on Linux is `epoll` in **edge-triggered** mode: an event says "this
//! socket *became* readable/writable", once, not "it is readable" on every
//! call. From that follow the rules. Rules 1, 2, 3 and 5 are mio's, as
//! its `Poll` documentation states them; rule 4 is a Linux-specific
//! shortcut of ours, which departs from mio's contract. Where this crate
//! keeps each one:
//!
//! 1. **Drain readiness.** After a readable event, read until `WouldBlock`
//!    (or a short read, below); after a writable one, write until
//!    `WouldBlock` or done. Otherwise no new event will ever come for the
//!    bytes left behind. The flags `read_ready` / `write_ready` in
//!    [`Connection`] remember readiness we have not used up yet, e.g. while
//!    a connection is busy writing and does not want to read.
//! 2. **Expect spurious events.** An event may report readiness that is no
//!    longer there (or was never there); every operation copes with
//!    `WouldBlock`, which simply clears the flag.
//! 3. **Accept until `WouldBlock` too**: a listener's event may stand for
//!    many pending connections. If we *stop* early (max connections, out
//!    of file descriptors), no new event comes for the ones still queued,
//!    so the loop must come back to them by itself (`AcceptState`).
//! 4. **A short read or write ends the readiness — on Linux, with epoll.**
//!    mio's contract is rule 1 to the letter: drain until `WouldBlock`. We
//!    depart from it on purpose, because it is what keeps a request at
//!    about two system calls instead of three: on Linux a `read` of a TCP
//!    socket that returns fewer bytes than asked emptied the receive queue,
//!    and any segment arriving later raises a new edge; the same holds for
//!    a short `write` and the send buffer. So one `read(2)` per request
//!    suffices, not a second one that returns `EAGAIN` — nginx relies on
//!    the same (`ready = 0` after a short `recv` in its epoll module). It
//!    would not hold with kqueue or IOCP, for a socket type whose reads may
//!    be short for other reasons, or with several threads reading one
//!    socket; then rule 1 applies as written. (The FIN is an exception here
//!    too: once `EPOLLRDHUP` was reported, we read on until end-of-file.)
//! 5. **Tokens are ours.** A token is just a number given back with the
//!    event; here it is the connection's key in a [`Slab`], so looking a
//!    connection up is an index, not a hash (a `HashMap<Token, _>` would
//!    hash on every event). Events for a key that was closed earlier in
//!    the same batch are skipped.
//!
//! Connections are registered once for `READABLE | WRITABLE` and never
//! re-registered, so the steady state costs no `epoll_ctl` per request;
//! closing the socket removes it from the epoll set, so closing needs no
//! `deregister` either.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::Site;
use common::server::Timeouts;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use slab::Slab;

use crate::buffer_pool::BufferPool;
use crate::connection::{Connection, Ctx, Progress};
use crate::proxy::{ProxyConfig, UPSTREAM_TOKENS, Upstreams};
use crate::timer::Timers;

/// The waker's token (slab keys never get near it).
const WAKER: Token = Token(usize::MAX - 1);
/// The listener's token: a loop accepts on one listener at most (with
/// `--loops N`, each loop has its own `SO_REUSEPORT` socket).
const LISTENER: Token = Token(usize::MAX - 2);
/// The token of the loop's extra [`ConnectionSource`], if it has one.
const SOURCE: Token = Token(usize::MAX - 3);
/// How long accepting pauses after `EMFILE`/`ENFILE` (unless a connection
/// closes first and frees a descriptor).
pub use common::limits::ACCEPT_PAUSE;
/// Events handled per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;
/// Size of the loop-wide scratch buffer for discarded bytes.
const SCRATCH: usize = 16 * 1024;

/// Rounds of `epoll_wait` done by every loop of this process (status page).
pub static ITERATIONS: AtomicU64 = AtomicU64::new(0);
/// Spare buffers in the pools of every loop of this process (status page).
pub static POOLED_BUFFERS: AtomicI64 = AtomicI64::new(0);

/// What every event loop needs to know; cheap to clone (one per loop).
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// The site to serve.
    pub site: Arc<Site>,
    /// Header, keep-alive, send and grace timeouts.
    pub timeouts: Timeouts,
    /// Connections this loop holds at most; at the limit it stops accepting
    /// until one closes (like nginx's `worker_connections`, per loop).
    pub max_connections: usize,
    /// With `--tls-cert`: every connection speaks TLS first.
    pub tls: Option<Arc<common::tls::ServerConfig>>,
}

/// The part of a loop other threads (a signal watcher) can reach.
#[derive(Debug)]
struct Shared {
    /// Wakes the loop out of `epoll_wait` (an `eventfd` on Linux).
    waker: Waker,
    /// A graceful shutdown was asked for.
    stop: AtomicBool,
    /// A reloaded site and timeouts, waiting for the loop to take them.
    next: Mutex<Option<(Arc<Site>, Timeouts)>>,
}

// ANCHOR: handle
/// A handle on a running [`EventLoop`] from another thread: ask it to shut
/// down. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Starts a graceful shutdown: the loop stops accepting, gives each idle
    /// connection one last request (`--last-request`), finishes the others
    /// within the grace period, and `run` returns.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.shared.waker.wake() {
            log::error!("waking an event loop: {e}");
        }
    }

    /// SIGHUP: serve the next requests with this site and these timeouts
    /// (the loop takes them when it wakes; requests in flight finish with
    /// the old ones).
    pub fn reconfigure(&self, site: Arc<Site>, timeouts: Timeouts) {
        *self.shared.next.lock().unwrap_or_else(|e| e.into_inner()) = Some((site, timeouts));
        if let Err(e) = self.shared.waker.wake() {
            log::error!("waking an event loop: {e}");
        }
    }
}
// ANCHOR_END: handle

// ANCHOR: source
/// The loop's one extension point: an extra descriptor it watches besides
/// its listener and its connections, with a handler of its own, which
/// turns readiness into connections to serve. A stage 5 worker registers
/// the Unix socket its master passes accepted sockets on, as an nginx
/// worker registers its channel in its own epoll: no thread and no lock
/// between the socket and the loop.
///
/// The descriptor is registered edge-triggered, like everything else in
/// this loop (rule 1): `on_readable` must take everything there is, until
/// `WouldBlock`.
pub trait ConnectionSource: std::fmt::Debug {
    /// The descriptor to watch for readability.
    fn fd(&self) -> BorrowedFd<'_>;

    /// The descriptor is readable: hand every connection there is to
    /// `serve` (each is then served as if this loop had accepted it), and
    /// say whether the source is still open. [`Flow::End`] (the other side
    /// closed it) starts the loop's graceful shutdown.
    fn on_readable(&mut self, serve: &mut dyn FnMut(std::net::TcpStream)) -> Flow;
}

/// Whether a [`ConnectionSource`] has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// More may come: keep watching.
    Open,
    /// Finished for good: stop watching, and shut the loop down gracefully.
    End,
}
// ANCHOR_END: source

/// Why accepting is paused, if it is.
#[derive(Debug, Default)]
struct AcceptState {
    /// At `max_connections`: resume when a connection closes.
    full: bool,
    /// Out of file descriptors: resume at this time, or earlier when a
    /// connection closes. Retrying at once would spin: the pending
    /// connection stays in the queue and the listener stays readable.
    paused_until: Option<Instant>,
    /// When `EMFILE` was last logged, so a flood logs once a second.
    last_logged: Option<Instant>,
}

// ANCHOR: event_loop
/// One event loop: a `Poll`, the listener it accepts on, and its
/// connections. Run one per thread (`--loops N`), or one per process
/// (stage 5).
#[derive(Debug)]
pub struct EventLoop {
    /// The epoll instance.
    poll: Poll,
    /// Listening sockets; empty for a loop that only gets handed streams.
    listener: Option<TcpListener>,
    /// The extra source of connections, if any (stage 5's channel).
    source: Option<Box<dyn ConnectionSource + Send>>,
    /// Every open connection; its key is its token.
    conns: Slab<Connection>,
    /// Deadlines of all connections.
    timers: Timers,
    /// Spare buffers; idle connections hold none.
    pool: BufferPool,
    /// Discarded bytes (lingering) land here.
    scratch: Box<[u8]>,
    /// Shared with the [`Handle`]s.
    shared: Arc<Shared>,
    /// Site, timeouts, limits.
    config: LoopConfig,
    /// Whether and why accepting is paused.
    accept: AcceptState,
    /// Connections that yielded their turn and must be driven again
    /// without waiting for an event (no new edge would come).
    again: Vec<usize>,
    /// Source of [`Connection::serial`].
    next_serial: u32,
    /// Set once a shutdown began: the end of the grace period.
    grace_deadline: Option<Instant>,
    /// This loop's share of [`POOLED_BUFFERS`] last reported.
    reported_spare: i64,
    /// The upstream connections, if the loop is a reverse proxy
    /// (`--proxy-pass`): a second kind of socket in the same `Poll`, under
    /// tokens from [`UPSTREAM_TOKENS`] up.
    proxy: Option<Upstreams>,
}
// ANCHOR_END: event_loop

impl EventLoop {
    /// A loop with no listener and no connection yet.
    pub fn new(config: LoopConfig) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(EventLoop {
            poll,
            listener: None,
            source: None,
            conns: Slab::new(),
            timers: Timers::new(),
            pool: BufferPool::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            shared: Arc::new(Shared {
                waker,
                stop: AtomicBool::new(false),
                next: Mutex::new(None),
            }),
            config,
            accept: AcceptState::default(),
            again: Vec::new(),
            next_serial: 0,
            grace_deadline: None,
            reported_spare: 0,
            proxy: None,
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Gives the loop its listening socket, already bound and listening (it
    /// is set non-blocking here). A loop has one at most; a stage 5 worker
    /// in the pass model has none and gets its connections from a
    /// [`ConnectionSource`].
    pub fn add_listener(&mut self, listener: std::net::TcpListener) -> io::Result<()> {
        if self.listener.is_some() {
            return Err(io::Error::other("this event loop has a listener already"));
        }
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        self.listener = Some(listener);
        Ok(())
    }

    // ANCHOR: add_listener_exclusive
    /// Like [`add_listener`](Self::add_listener), for a listener that other
    /// processes watch too (stage 5's shared accept model): registered with
    /// `EPOLLEXCLUSIVE`, so a new connection wakes one of the waiting
    /// epoll instances (or a few), not all of them — the thundering herd.
    /// mio has no flag for it, so this one registration is a raw
    /// `epoll_ctl(EPOLL_CTL_ADD)` on (a duplicate of) the loop's epoll
    /// descriptor; events come back under the listener's token as usual.
    pub fn add_listener_exclusive(&mut self, listener: std::net::TcpListener) -> io::Result<()> {
        if self.listener.is_some() {
            return Err(io::Error::other("this event loop has a listener already"));
        }
        listener.set_nonblocking(true)?;
        let epoll = Epoll(self.poll.registry().as_fd().try_clone_to_owned()?);
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE | EpollFlags::EPOLLET;
        epoll.add(&listener, EpollEvent::new(flags, LISTENER.0 as u64))?;
        self.listener = Some(TcpListener::from_std(listener));
        Ok(())
    }
    // ANCHOR_END: add_listener_exclusive

    /// Makes the loop a reverse proxy: the requests `config` says are
    /// forwarded to its upstream, over connections of this loop's own.
    pub fn set_proxy(&mut self, config: Arc<ProxyConfig>) {
        self.proxy = Some(Upstreams::new(config));
    }

    /// Adds the loop's [`ConnectionSource`] (one at most).
    pub fn add_source(&mut self, source: Box<dyn ConnectionSource + Send>) -> io::Result<()> {
        if self.source.is_some() {
            return Err(io::Error::other("this event loop has a source already"));
        }
        let fd = source.fd().as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), SOURCE, Interest::READABLE)?;
        self.source = Some(source);
        Ok(())
    }

    // ANCHOR: run
    /// Runs until a shutdown was asked for (through a [`Handle`]) and every
    /// connection is finished or the grace period is over.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let counters = self.config.site.counters;
        // When the last `epoll_wait` returned: the time from then to the
        // next one is this loop's busy time (stage 5 sizes its pool by it).
        let mut woke: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(t) = woke {
                let busy = now.duration_since(t).as_micros();
                counters
                    .loop_busy_us
                    .fetch_add(u64::try_from(busy).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            if self.shared.stop.load(Ordering::SeqCst) && self.grace_deadline.is_none() {
                self.begin_shutdown(now);
            }
            if let Some(grace) = self.grace_deadline {
                // A source that has not ended may still hold connections
                // passed before the stop (stage 5: the master closes the
                // channel when it retires a worker): take them first.
                if (self.conns.is_empty() && self.source.is_none()) || now >= grace {
                    break;
                }
            }
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            woke = Some(now);
            self.report_stats();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.take_reconfigure(),
                    LISTENER => self.accept_all(now),
                    SOURCE => self.take_from_source(now),
                    Token(t) if t >= UPSTREAM_TOKENS => {
                        // An upstream socket: drive the client it serves.
                        let client = self
                            .proxy
                            .as_mut()
                            .and_then(|p| p.on_event(t - UPSTREAM_TOKENS, event));
                        if let Some(key) = client {
                            self.drive(key, now);
                        }
                    }
                    Token(key) => {
                        // The connection may have been closed earlier in
                        // this batch: then the event is stale.
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.on_event(event);
                            self.drive(key, now);
                        }
                    }
                }
            }
            self.run_again(now);
            self.expire_timers(now);
            self.resume_accepting(now);
        }
        let left = self.conns.len();
        if left > 0 {
            log::warn!("grace period over: dropping {left} connection(s)");
        }
        Ok(())
    }
    // ANCHOR_END: run

    /// How long `epoll_wait` may sleep: until the next timer, the end of an
    /// accept pause or of the grace period; not at all if connections wait
    /// for another turn.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        [
            self.timers.next_wakeup(),
            self.accept.paused_until,
            self.grace_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    /// Adds this round to the process-wide figures of the status page:
    /// two relaxed atomic adds, no lock.
    fn report_stats(&mut self) {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let spare = self.pool.spare() as i64;
        if spare != self.reported_spare {
            POOLED_BUFFERS.fetch_add(spare - self.reported_spare, Ordering::Relaxed);
            self.reported_spare = spare;
        }
    }

    /// Builds the context a connection borrows and drives it; closes it if
    /// it is done or failed.
    fn drive(&mut self, key: usize, now: Instant) {
        self.with_conn(key, now, |conn, cx| conn.drive(cx));
    }

    fn with_conn(
        &mut self,
        key: usize,
        now: Instant,
        f: impl FnOnce(&mut Connection, &mut Ctx<'_>) -> io::Result<Progress>,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut cx = Ctx {
            site: &self.config.site,
            timeouts: self.config.timeouts,
            pool: &mut self.pool,
            timers: &mut self.timers,
            scratch: &mut self.scratch,
            now,
            draining: self.grace_deadline.is_some(),
            key,
            proxy: self.proxy.as_mut(),
            registry: self.poll.registry(),
        };
        let was_waiting = conn.is_waiting();
        let result = f(conn, &mut cx);
        // Keep the status page's idle gauge in step with the phase.
        if let Some(conn) = self.conns.get(key) {
            let waiting = conn.is_waiting();
            if waiting != was_waiting {
                self.config.site.counters.idle(waiting);
            }
        }
        match result {
            Ok(Progress::Wait) => {}
            Ok(Progress::Yield) => self.again.push(key),
            Ok(Progress::Done) => self.close(key),
            Err(e) => {
                // One connection's error is its own business: log, drop it.
                log::debug!("connection {key}: {e}");
                self.close(key);
            }
        }
    }

    /// Drops a connection: the socket closes (and leaves the epoll set),
    /// its buffers go back to the pool, its timer entry becomes stale.
    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            // An exchange cut short leaves its upstream connection in an
            // unknown state: close it too.
            if let (Some(up), Some(proxy)) = (conn.upstream(), self.proxy.as_mut()) {
                proxy.discard(up);
            }
            conn.release(&mut self.pool);
            let counters = self.config.site.counters;
            if conn.is_waiting() {
                counters.idle(false);
            }
            counters.closed();
        }
        // A descriptor and a slot were freed: accepting may resume.
        if self.accept.paused_until.is_some() {
            self.accept.paused_until = Some(Instant::now());
        }
    }

    /// Drives again the connections that yielded their turn.
    fn run_again(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.again) {
            self.drive(key, now);
        }
    }

    // ANCHOR: expire
    /// Handles every timer that is due.
    fn expire_timers(&mut self, now: Instant) {
        while let Some((key, serial, at)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.serial != serial || !self.timers.fire(&mut conn.deadline, at, now, key, serial)
            {
                continue;
            }
            self.with_conn(key, now, |conn, cx| conn.on_timeout(cx));
        }
    }
    // ANCHOR_END: expire

    // ANCHOR: accept
    /// Accepts until `WouldBlock`, unless paused.
    fn accept_all(&mut self, now: Instant) {
        if self.accept.paused_until.is_some() || self.grace_deadline.is_some() {
            return;
        }
        loop {
            if self.conns.len() >= self.config.max_connections {
                // Leave the rest in the kernel's queue; `close` and
                // `resume_accepting` come back for them.
                self.accept.full = true;
                return;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = self.add_connection(stream, peer, now) {
                        log::warn!("registering a connection: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The client gave up while queued: next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection
                    // stays queued and the listener stays readable.
                    // Retrying now would spin at 100% CPU: pause.
                    if self
                        .accept
                        .last_logged
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                    {
                        log::error!("accept: {e}; pausing accepting for {ACCEPT_PAUSE:?}");
                        self.accept.last_logged = Some(now);
                    }
                    self.accept.paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Comes back to the listener after a pause: the queued connections
    /// raise no new event (rule 3).
    fn resume_accepting(&mut self, now: Instant) {
        if self.accept.paused_until.is_some_and(|t| t <= now) {
            self.accept.paused_until = None;
            self.accept_all(now);
        } else if self.accept.full && self.conns.len() < self.config.max_connections {
            self.accept.full = false;
            self.accept_all(now);
        }
    }
    // ANCHOR_END: accept

    /// Registers a new connection and starts its header timeout.
    fn add_connection(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
    ) -> io::Result<()> {
        // Responses are written whole; Nagle would only delay the last one.
        stream.set_nodelay(true)?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.next_serial = self.next_serial.wrapping_add(1);
        let serial = self.next_serial;
        let tls = match &self.config.tls {
            Some(config) => Some(Box::new(common::tls::Session::new(
                config,
                self.config.site.counters,
            )?)),
            None => None,
        };
        let mut conn = Connection::new(stream, peer.ip(), serial, tls);
        self.timers.arm(
            &mut conn.deadline,
            now + self.config.timeouts.header,
            key,
            serial,
        );
        entry.insert(conn);
        // A new connection waits for its first request: open and idle.
        let counters = self.config.site.counters;
        counters.opened();
        counters.idle(true);
        Ok(())
    }

    /// Takes the site and timeouts a reload left (see
    /// [`Handle::reconfigure`]).
    fn take_reconfigure(&mut self) {
        let next = self
            .shared
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((site, timeouts)) = next {
            self.config.site = site;
            self.config.timeouts = timeouts;
        }
    }

    // ANCHOR: take_from_source
    /// Registers every connection the [`ConnectionSource`] has ready; when
    /// the source ends, stops watching it and begins the graceful shutdown.
    fn take_from_source(&mut self, now: Instant) {
        let Some(mut source) = self.source.take() else {
            return;
        };
        let flow = source.on_readable(&mut |stream| {
            let added = stream.set_nonblocking(true).and_then(|()| {
                let peer = stream.peer_addr()?;
                self.add_connection(TcpStream::from_std(stream), peer, now)
            });
            if let Err(e) = added {
                // Usually the client gave up before the worker got the socket.
                log::debug!("a connection from the source: {e}");
            }
        });
        match flow {
            Flow::Open => self.source = Some(source),
            Flow::End => {
                let fd = source.fd().as_raw_fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                self.shared.stop.store(true, Ordering::SeqCst);
            }
        }
    }
    // ANCHOR_END: take_from_source

    // ANCHOR: shutdown
    /// Stops accepting and starts the grace period: every connection's next
    /// response says `Connection: close`. An idle connection is not closed
    /// at once: its client may have sent its next request already, and a
    /// close that crosses it resets the connection under a request the
    /// client cannot know was unread. So it gets `last_request` for one
    /// more request (`--last-request`), and is then closed as an idle
    /// connection is (its timer fires).
    fn begin_shutdown(&mut self, now: Instant) {
        self.grace_deadline = Some(now + self.config.timeouts.grace);
        if let Some(mut listener) = self.listener.take() {
            // Closing it is enough to leave epoll; deregister to be explicit.
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let last = now + self.config.timeouts.last_request;
        for (key, conn) in self.conns.iter_mut() {
            if conn.is_waiting() && self.timers.is_later(&conn.deadline, last) {
                self.timers.arm(&mut conn.deadline, last, key, conn.serial);
            }
        }
        log::info!(
            "shutting down: {} connection(s) in flight",
            self.conns.len()
        );
    }
    // ANCHOR_END: shutdown
}
