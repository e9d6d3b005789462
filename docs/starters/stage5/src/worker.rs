//! The worker's event loop: your stage 4 goes here.
//!
//! This file is given complete, because stage 5 is about processes, not
//! about the loop: one thread, one `mio::Poll` (epoll on Linux), every
//! socket non-blocking. It keeps connections alive and answers pipelined
//! requests in order, finishes a partial write when the socket is
//! `WRITABLE` again, answers a request head that stalls past the header
//! timeout with 408, and a connection over the cap with 503. Swap in your
//! own stage 4 if you like (the stage 4 rubric grades it, `bench check
//! --stage 4`).
//!
//! What stage 5 needs from it:
//!
//! - a [`Feed`] of new connections: a listener to accept on, or the
//!   worker's end of a socket pair on which the master passes accepted
//!   connections (`fdpass::recv_fd`); the end of that stream means "no
//!   more";
//! - a way to stop: once `stop` is set (or the channel ends), the loop
//!   *drains*: it takes no new connections, closes those that are idle
//!   between requests, lets the others finish the request they are on
//!   (with a close after it), and returns when none is left, or when the
//!   grace period is over.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener as MioListener, TcpStream, UnixStream as MioUnixStream};
use mio::{Events, Interest, Poll, Registry, Token};

use crate::{fdpass, http};

/// What a worker needs to know.
pub struct Config {
    /// The folder served.
    pub root: PathBuf,
    /// How long a request head may take to arrive, from its first byte
    /// (then 408).
    pub header_timeout: Duration,
    /// How long a drain may take; then the loop returns anyway.
    pub grace_period: Duration,
    /// Connections held at most; more are answered 503 and closed.
    pub max_connections: usize,
}

/// Where new connections come from.
pub enum Feed {
    /// Accept them on this listener.
    Listener(TcpListener),
    /// Receive them from the master on this end of a socket pair.
    #[allow(dead_code)] // the master makes it from STEP 1 on
    Channel(UnixStream),
}

/// The open feed, registered in the poll.
enum Source {
    Listener(MioListener),
    Channel(MioUnixStream),
}

/// The feed's token; connections get the ones after it.
const FEED: Token = Token(0);
/// How often deadlines are looked at (and the longest the loop sleeps).
const TICK: Duration = Duration::from_millis(100);
/// How long a connection may sit idle (before its first request, or
/// between requests), or make no progress on a response.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the loop on `feed` until it has drained (see the module's doc).
pub fn run(feed: Feed, cfg: &Config, stop: &AtomicBool) -> io::Result<()> {
    let poll = Poll::new()?;
    let mut source = match feed {
        Feed::Listener(l) => {
            l.set_nonblocking(true)?;
            Source::Listener(MioListener::from_std(l))
        }
        Feed::Channel(c) => {
            c.set_nonblocking(true)?;
            Source::Channel(MioUnixStream::from_std(c))
        }
    };
    match &mut source {
        Source::Listener(l) => poll.registry().register(l, FEED, Interest::READABLE)?,
        Source::Channel(c) => poll.registry().register(c, FEED, Interest::READABLE)?,
    }
    let mut lp = Loop {
        cfg,
        poll,
        feed: Some(source),
        conns: HashMap::new(),
        next_token: 1,
        draining_until: None,
    };
    lp.run(stop)
}

/// The loop's state.
struct Loop<'a> {
    cfg: &'a Config,
    poll: Poll,
    /// `None` once draining.
    feed: Option<Source>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// Set when the drain starts: when it must be over.
    draining_until: Option<Instant>,
}

impl Loop<'_> {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut swept = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                self.drain();
            }
            if let Some(until) = self.draining_until
                && (self.conns.is_empty() || Instant::now() >= until)
            {
                return Ok(());
            }
            // A signal interrupts the wait (EINTR): then look at `stop`.
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    FEED => self.take_new(),
                    token => self.ready(token),
                }
            }
            if swept.elapsed() >= TICK {
                self.expire();
                swept = Instant::now();
            }
        }
    }

    /// Takes every new connection the feed has (edge-triggered: until
    /// `WouldBlock`).
    fn take_new(&mut self) {
        loop {
            let next = match &self.feed {
                Some(Source::Listener(l)) => l.accept().map(|(stream, _)| Some(stream)),
                Some(Source::Channel(c)) => {
                    fdpass::recv_fd(c.as_fd()).map(|fd| fd.map(TcpStream::from))
                }
                None => return,
            };
            match next {
                Ok(Some(stream)) => self.add(stream),
                // The master closed its end: no more connections.
                Ok(None) => return self.drain(),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    eprintln!("worker {}: new connection: {e}", std::process::id());
                    return;
                }
            }
        }
    }

    fn add(&mut self, mut stream: TcpStream) {
        if self.conns.len() >= self.cfg.max_connections {
            // Too many: a short answer (it fits the empty send buffer).
            let _ = stream.write(&http::error_response(503));
            return;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        // Edge-triggered, but a socket that is readable already (its
        // request has arrived) is reported at once.
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            eprintln!("worker {}: register: {e}", std::process::id());
            return;
        }
        self.conns.insert(token, Conn::new(stream));
    }

    /// Moves the connection on as far as it goes without waiting.
    fn ready(&mut self, token: Token) {
        let draining = self.draining_until.is_some();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.advance(self.cfg, draining) && conn.watch(self.poll.registry(), token) {
            return;
        }
        self.close(token);
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    /// Closes the connections past their deadline: a request head that
    /// stalled gets 408 first.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            if let Some(conn) = self.conns.get_mut(&token)
                && conn.output.is_empty()
                && !conn.input.is_empty()
            {
                let _ = conn.stream.write(&http::error_response(408));
            }
            self.close(token);
        }
    }

    /// Stops taking connections, and lets the ones held finish.
    fn drain(&mut self) {
        if self.draining_until.is_some() {
            return;
        }
        self.draining_until = Some(Instant::now() + self.cfg.grace_period);
        // What is already queued (passed by the master, or in the
        // listener's backlog) is served too, then the feed is closed.
        self.take_new();
        self.feed = None;
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            self.ready(token);
        }
    }
}

/// One connection.
struct Conn {
    stream: TcpStream,
    /// Received and not answered yet.
    input: Vec<u8>,
    /// The response being written, and how much of it is written.
    output: Vec<u8>,
    written: usize,
    /// Close once `output` is written.
    close_after: bool,
    /// It has answered a request (so, with nothing received, it is idle
    /// between requests).
    answered: bool,
    /// When it is closed if nothing happens.
    deadline: Instant,
    /// Registered for `WRITABLE` too.
    writable: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            close_after: false,
            answered: false,
            // Nothing received yet: the header timeout starts with the
            // first byte.
            deadline: Instant::now() + IDLE_TIMEOUT,
            writable: false,
        }
    }

    /// Writes, answers and reads until the socket would block; false when
    /// the connection is done.
    fn advance(&mut self, cfg: &Config, draining: bool) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            // 1. The response being written, as far as the socket takes it.
            while self.written < self.output.len() {
                match self.stream.write(&self.output[self.written..]) {
                    Ok(0) => return false,
                    Ok(n) => {
                        self.written += n;
                        self.deadline = Instant::now() + IDLE_TIMEOUT;
                    }
                    // The rest when the socket is WRITABLE again.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            if !self.output.is_empty() {
                self.output.clear();
                self.written = 0;
                if self.close_after {
                    return false;
                }
                let wait = if self.input.is_empty() {
                    IDLE_TIMEOUT
                } else {
                    cfg.header_timeout
                };
                self.deadline = Instant::now() + wait;
            }
            // 2. A request received whole: its response.
            if !self.input.is_empty()
                && let http::Decision::Respond {
                    consumed,
                    response,
                    close,
                } = http::decide(&self.input, &cfg.root)
            {
                self.input.drain(..consumed);
                self.output = response;
                self.close_after = close || draining;
                self.answered = true;
                continue;
            }
            // 3. More bytes.
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if self.input.is_empty() {
                        self.deadline = Instant::now() + cfg.header_timeout;
                    }
                    self.input.extend_from_slice(&buf[..n]);
                }
                // Nothing more for now. A drain closes a connection that
                // is idle between requests.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return !(draining && self.answered && self.input.is_empty());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Asks for `WRITABLE` while a response is half written, and only for
    /// `READABLE` otherwise; false if the registry refused.
    fn watch(&mut self, registry: &Registry, token: Token) -> bool {
        let writable = self.written < self.output.len();
        if writable == self.writable {
            return true;
        }
        self.writable = writable;
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry
            .reregister(&mut self.stream, token, interest)
            .is_ok()
    }
}
