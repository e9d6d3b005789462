//! The load generator: many HTTP/1.1 connections driven by `mio` event
//! loops, one per thread, with latencies in an HdrHistogram.
//!
//! # Modes
//! - [`Mode::Closed`]: each connection keeps `pipeline` requests in flight
//!   and sends the next as soon as a response arrives (wrk's model). The
//!   offered load adapts to the server: a slow server is asked less.
//! - [`Mode::Open`]: requests are *scheduled* at a constant total rate,
//!   whatever the server does, and each latency is measured from the time
//!   the request was *meant* to be sent. A server that stalls for a second
//!   is charged for every request that should have gone out during that
//!   second: no coordinated omission (see the benchmarks chapter).
//! - [`Mode::ConnPerRequest`]: connect, send one request, read the
//!   response, close, again. The latency includes the TCP handshake.
//! - [`Mode::Hold`]: connect, send one request, read the response, then
//!   hold the connection idle until told to stop (the 10,000 idle
//!   keep-alive connections of scenario 5).
//!
//! Only responses that complete inside the measured window (after the
//! warm-up) are counted. Per-connection counts are kept so that a server
//! that serves one connection and starves the others is seen doing it.

pub mod reader;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::latency::{self, LatencySummary};
use crate::stats::Fairness;
use reader::{Response, ResponseReader};

/// How the connections send requests. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Keep `pipeline` requests in flight per connection (1: no pipelining).
    Closed {
        /// Requests in flight per connection.
        pipeline: usize,
    },
    /// A constant total rate in requests per second, spread evenly over
    /// the connections; latency counts from the intended send time.
    Open {
        /// Requests per second, all connections together.
        rate: f64,
    },
    /// A new connection for every request.
    ConnPerRequest,
    /// One request per connection, then hold it idle until stopped.
    Hold,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The server.
    pub addr: SocketAddr,
    /// The bytes of one request, sent as they are.
    pub request: Vec<u8>,
    /// Connections, all together.
    pub connections: usize,
    /// Event-loop threads the connections are spread over.
    pub threads: usize,
    /// Load before the measured window starts (not counted).
    pub warmup: Duration,
    /// The measured window (for [`Mode::Hold`]: the longest hold).
    pub duration: Duration,
    /// How requests are sent.
    pub mode: Mode,
    /// A request still unanswered this long when the run ends counts as a
    /// timeout.
    pub timeout: Duration,
}

impl Spec {
    /// Closed-loop keep-alive load of `GET path` with default settings.
    pub fn get(addr: SocketAddr, path: &str, connections: usize, duration: Duration) -> Spec {
        Spec {
            addr,
            request: request(addr, path, false),
            connections,
            threads: 1,
            warmup: Duration::ZERO,
            duration,
            mode: Mode::Closed { pipeline: 1 },
            timeout: Duration::from_secs(2),
        }
    }
}

/// The bytes of a minimal `GET` request, as wrk sends it (plus
/// `Connection: close` when asked).
pub fn request(addr: SocketAddr, path: &str, close: bool) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Shared between the caller and the generator threads while a run goes on.
#[derive(Debug, Default)]
pub struct Control {
    /// Set to end the run early (every thread looks at it at least every
    /// 50 ms).
    pub stop: AtomicBool,
    /// [`Mode::Hold`]: connections currently held open after their one
    /// response.
    pub held: AtomicUsize,
    /// Failed requests so far, in the window or not (errors of every kind
    /// but the end-of-run timeouts, and non-2xx responses): the cluster
    /// lab samples it while it kills a backend, to see *when* clients
    /// failed, not only how many.
    pub failed: AtomicU64,
}

/// Errors by kind, as wrk reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// `connect` failed (refused, no free port, reset during handshake).
    pub connect: u64,
    /// `read` failed (typically a reset).
    pub read: u64,
    /// `write` failed.
    pub write: u64,
    /// Requests still unanswered after the timeout when the run ended.
    pub timeout: u64,
    /// The response could not be parsed.
    pub parse: u64,
    /// Requests lost because the server closed the connection without
    /// announcing it (no `Connection: close`) while they were in flight.
    pub closed: u64,
}

impl Errors {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.parse + self.closed
    }

    /// Adds `o`'s counts into these.
    pub fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.parse += o.parse;
        self.closed += o.closed;
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Responses completed in the measured window.
    pub requests: u64,
    /// Of those, responses whose status was not 2xx.
    pub non_2xx: u64,
    /// Body bytes received in the window.
    pub body_bytes: u64,
    /// Errors, by kind.
    pub errors: Errors,
    /// Connections re-opened after the server closed them (after a
    /// `Connection: close` response, or an error).
    pub reconnects: u64,
    /// Pipelined requests the server never answered because it announced
    /// `Connection: close` on an earlier response. Not an error: HTTP lets
    /// a server do that, and a client sends them again on a new connection
    /// (here: new requests take their place).
    pub dropped_by_close: u64,
    /// The measured window's real length.
    pub elapsed: Duration,
    /// Latencies of the counted responses, in microseconds.
    pub latency: Histogram<u64>,
    /// Responses each connection completed in the window.
    pub per_conn: Vec<u64>,
}

impl Outcome {
    /// Responses per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Body bytes per second.
    pub fn body_bytes_per_sec(&self) -> f64 {
        self.body_bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency percentiles.
    pub fn latency_summary(&self) -> LatencySummary {
        LatencySummary::of(&self.latency)
    }

    /// How evenly the connections were served.
    pub fn fairness(&self) -> Fairness {
        Fairness::of(&self.per_conn)
    }
}

/// Runs `spec` to completion and returns what it measured. Never blocks
/// longer than `warmup + duration` plus about 50 ms, whatever the server
/// does.
pub fn run(spec: &Spec, control: &Arc<Control>) -> io::Result<Outcome> {
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let spec = spec.clone();
            let control = Arc::clone(control);
            let ids: Vec<usize> = (t..spec.connections).step_by(threads).collect();
            thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || Worker::new(&spec, &ids, start)?.run(&control))
        })
        .collect::<io::Result<_>>()?;
    let mut out = Outcome {
        requests: 0,
        non_2xx: 0,
        body_bytes: 0,
        errors: Errors::default(),
        reconnects: 0,
        dropped_by_close: 0,
        elapsed: Duration::ZERO,
        latency: latency::histogram(),
        per_conn: vec![0; spec.connections],
    };
    for h in handles {
        let part = h
            .join()
            .map_err(|_| io::Error::other("a load generator thread panicked"))??;
        out.requests += part.requests;
        out.non_2xx += part.non_2xx;
        out.body_bytes += part.body_bytes;
        out.errors.add(&part.errors);
        out.reconnects += part.reconnects;
        out.dropped_by_close += part.dropped_by_close;
        out.elapsed = out.elapsed.max(part.elapsed);
        out.latency
            .add(&part.latency)
            .map_err(|e| io::Error::other(format!("merging histograms: {e:?}")))?;
        for (id, n) in part.per_conn {
            out.per_conn[id] = n;
        }
    }
    Ok(out)
}

/// What one thread measured.
struct Part {
    requests: u64,
    non_2xx: u64,
    body_bytes: u64,
    errors: Errors,
    reconnects: u64,
    dropped_by_close: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    per_conn: Vec<(usize, u64)>,
}

/// How long to wait before reconnecting after an error, so a dead server
/// is not hammered in a busy loop.
const RETRY_AFTER: Duration = Duration::from_millis(10);

/// The longest a thread sleeps in `poll` before looking at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Bytes read per `read` call.
const READ_BUF: usize = 64 * 1024;

/// One client connection (or, in connection-per-request mode, one client
/// slot whose connections come and go).
struct Client {
    /// The global connection number, for the per-connection counts.
    id: usize,
    /// The socket; `None` between an error and the reconnect.
    stream: Option<TcpStream>,
    /// The handshake has completed.
    connected: bool,
    /// Splits the byte stream into responses.
    reader: ResponseReader,
    /// Request bytes not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// When each request in flight was sent (or, open loop, was due).
    inflight: VecDeque<Instant>,
    /// The server announced it will close after the last response.
    closing: bool,
    /// Responses completed in the measured window.
    completed: u64,
    /// Open loop: when the next request is due.
    due: Instant,
    /// The pending timer (reconnect or next due request), to recognise
    /// stale heap entries.
    timer: Option<Instant>,
    /// Connection-per-request: when the current connection was started.
    started: Instant,
    /// Hold mode: this connection got its response and is now held.
    held: bool,
}

struct Worker<'s> {
    spec: &'s Spec,
    poll: Poll,
    clients: Vec<Client>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The measured window.
    t0: Instant,
    end: Instant,
    /// Open loop: the interval between two requests on one connection.
    interval: Duration,
    latency: Histogram<u64>,
    requests: u64,
    non_2xx: u64,
    body_bytes: u64,
    errors: Errors,
    reconnects: u64,
    dropped_by_close: u64,
    /// Responses completed by the current `feed`, processed after it.
    scratch: Vec<Response>,
}

impl<'s> Worker<'s> {
    fn new(spec: &'s Spec, ids: &[usize], start: Instant) -> io::Result<Worker<'s>> {
        let t0 = start + spec.warmup;
        let interval = match spec.mode {
            Mode::Open { rate } => {
                Duration::from_secs_f64(spec.connections as f64 / rate.max(1e-3))
            }
            _ => Duration::ZERO,
        };
        let clients = ids
            .iter()
            .map(|&id| Client {
                id,
                stream: None,
                connected: false,
                reader: ResponseReader::new(),
                out: Vec::new(),
                written: 0,
                inflight: VecDeque::new(),
                closing: false,
                completed: 0,
                // Spread the connections' schedules evenly over one interval.
                due: start + interval.mul_f64(id as f64 / spec.connections as f64),
                timer: None,
                started: start,
                held: false,
            })
            .collect();
        Ok(Worker {
            spec,
            poll: Poll::new()?,
            clients,
            timers: BinaryHeap::new(),
            t0,
            end: t0 + spec.duration,
            interval,
            latency: latency::histogram(),
            requests: 0,
            non_2xx: 0,
            body_bytes: 0,
            errors: Errors::default(),
            reconnects: 0,
            dropped_by_close: 0,
            scratch: Vec::new(),
        })
    }

    fn run(mut self, control: &Control) -> io::Result<Part> {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUF];
        for i in 0..self.clients.len() {
            self.connect(i, control);
        }
        loop {
            let now = Instant::now();
            if now >= self.end || control.stop.load(Ordering::Relaxed) {
                break;
            }
            while let Some(&Reverse((at, i))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                if self.clients[i].timer == Some(at) {
                    self.clients[i].timer = None;
                    self.on_timer(i, control);
                }
            }
            let mut wait = (self.end - now).min(STOP_CHECK);
            if let Some(&Reverse((at, _))) = self.timers.peek() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if self.clients[i].stream.is_none() {
                    continue;
                }
                if !self.clients[i].connected {
                    if !(ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                        continue;
                    }
                    if !self.finish_connect(i, control) {
                        continue;
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.on_readable(i, &mut buf, control);
                }
                if ev.is_writable() && self.clients[i].stream.is_some() {
                    self.flush(i, control);
                }
            }
        }
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(self.t0)
            .min(self.spec.duration);
        for c in &mut self.clients {
            let late = c
                .inflight
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) >= self.spec.timeout)
                .count();
            self.errors.timeout += late as u64;
            if c.held {
                control.held.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(Part {
            requests: self.requests,
            non_2xx: self.non_2xx,
            body_bytes: self.body_bytes,
            errors: self.errors,
            reconnects: self.reconnects,
            dropped_by_close: self.dropped_by_close,
            elapsed,
            latency: self.latency,
            per_conn: self.clients.iter().map(|c| (c.id, c.completed)).collect(),
        })
    }

    /// Starts a non-blocking connect for client `i`.
    fn connect(&mut self, i: usize, control: &Control) {
        let c = &mut self.clients[i];
        c.reader.reset();
        c.out.clear();
        c.written = 0;
        c.inflight.clear();
        c.closing = false;
        c.connected = false;
        c.started = Instant::now();
        match TcpStream::connect(self.spec.addr) {
            Ok(mut s) => {
                match self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => c.stream = Some(s),
                    Err(_) => self.fail(i, Kind::Connect, control),
                }
            }
            Err(_) => self.fail(i, Kind::Connect, control),
        }
    }

    /// The socket became writable during the handshake: did it succeed?
    /// Returns true once connected.
    fn finish_connect(&mut self, i: usize, control: &Control) -> bool {
        let Some(s) = self.clients[i].stream.as_ref() else {
            return false;
        };
        match s.take_error() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                self.fail(i, Kind::Connect, control);
                return false;
            }
        }
        match s.peer_addr() {
            Ok(_) => {}
            // Spurious wake-up: the handshake is still going on.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
            Err(_) => {
                self.fail(i, Kind::Connect, control);
                return false;
            }
        }
        let _ = s.set_nodelay(true);
        self.clients[i].connected = true;
        self.pump(i, control);
        true
    }

    /// Sends whatever the mode says should be in flight now.
    fn pump(&mut self, i: usize, control: &Control) {
        let now = Instant::now();
        let c = &mut self.clients[i];
        if c.stream.is_none() || !c.connected || c.closing {
            return;
        }
        match self.spec.mode {
            Mode::Closed { pipeline } => {
                let want = pipeline.max(1).saturating_sub(c.inflight.len());
                for _ in 0..want {
                    c.out.extend_from_slice(&self.spec.request);
                    c.inflight.push_back(now);
                }
            }
            // ANCHOR: open_loop
            Mode::Open { .. } => {
                // The request goes out at `due` or, if the connection was
                // still busy then, as soon as it is free; either way its
                // latency is counted from `due`, the time it was meant to
                // be sent. A stall of the server is charged to every
                // request that should have been sent during it.
                if c.inflight.is_empty() && c.due <= now {
                    c.out.extend_from_slice(&self.spec.request);
                    c.inflight.push_back(c.due);
                    c.due += self.interval;
                }
                if c.inflight.is_empty() {
                    let at = c.due;
                    c.timer = Some(at);
                    self.timers.push(Reverse((at, i)));
                }
            }
            // ANCHOR_END: open_loop
            Mode::ConnPerRequest | Mode::Hold => {
                if c.inflight.is_empty() && !c.held {
                    c.out.extend_from_slice(&self.spec.request);
                    c.inflight.push_back(c.started);
                }
            }
        }
        self.flush(i, control);
    }

    /// Writes pending request bytes until done or the socket is full.
    fn flush(&mut self, i: usize, control: &Control) {
        let c = &mut self.clients[i];
        let Some(s) = c.stream.as_mut() else { return };
        while c.written < c.out.len() {
            match s.write(&c.out[c.written..]) {
                Ok(0) => {
                    self.fail(i, Kind::Write, control);
                    return;
                }
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail(i, Kind::Write, control);
                    return;
                }
            }
        }
        c.out.clear();
        c.written = 0;
    }

    fn on_readable(&mut self, i: usize, buf: &mut [u8], control: &Control) {
        loop {
            let Some(s) = self.clients[i].stream.as_mut() else {
                return;
            };
            match s.read(buf) {
                Ok(0) => {
                    let c = &mut self.clients[i];
                    if let Some(r) = c.reader.eof() {
                        self.scratch.push(r);
                    }
                    self.complete(i, control);
                    self.on_eof(i, control);
                    return;
                }
                Ok(n) => {
                    let scratch = &mut self.scratch;
                    if self.clients[i]
                        .reader
                        .feed(&buf[..n], &mut |r| scratch.push(r))
                        .is_err()
                    {
                        self.scratch.clear();
                        self.fail(i, Kind::Parse, control);
                        return;
                    }
                    self.complete(i, control);
                    // The connection may have been replaced by a new one
                    // (connection per request, or after `Connection:
                    // close`): its bytes are not ours to read.
                    if !self.clients[i].connected {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail(i, Kind::Read, control);
                    return;
                }
            }
        }
        self.pump(i, control);
    }

    /// Accounts for the responses the last `feed` completed.
    fn complete(&mut self, i: usize, control: &Control) {
        if self.scratch.is_empty() {
            return;
        }
        let now = Instant::now();
        let counted = now >= self.t0 && now < self.end;
        let mut responses = std::mem::take(&mut self.scratch);
        for r in responses.drain(..) {
            let c = &mut self.clients[i];
            let Some(sent) = c.inflight.pop_front() else {
                // A response nobody asked for: the stream is out of step.
                self.errors.parse += 1;
                continue;
            };
            let failed = !(200..300).contains(&r.status);
            if failed {
                control.failed.fetch_add(1, Ordering::Relaxed);
            }
            if counted {
                latency::record(
                    &mut self.latency,
                    now.saturating_duration_since(sent).as_micros() as u64,
                );
                self.requests += 1;
                self.body_bytes += r.body_len;
                if failed {
                    self.non_2xx += 1;
                }
                c.completed += 1;
            }
            if r.close {
                c.closing = true;
            }
        }
        self.scratch = responses;
        let c = &mut self.clients[i];
        match self.spec.mode {
            Mode::ConnPerRequest if c.inflight.is_empty() => {
                self.drop_stream(i);
                self.connect(i, control);
            }
            Mode::Hold if c.inflight.is_empty() && !c.held && !c.closing => {
                c.held = true;
                control.held.fetch_add(1, Ordering::Relaxed);
            }
            Mode::Closed { .. } | Mode::Open { .. } if c.closing => {
                // Requests pipelined behind the announced close will never
                // be answered on this connection.
                self.dropped_by_close += c.inflight.len() as u64;
                self.reconnects += 1;
                self.drop_stream(i);
                self.connect(i, control);
            }
            _ => {}
        }
    }

    /// The server closed the connection.
    fn on_eof(&mut self, i: usize, control: &Control) {
        let c = &mut self.clients[i];
        if c.stream.is_none() {
            return;
        }
        let lost = c.inflight.len() as u64;
        self.errors.closed += lost;
        control.failed.fetch_add(lost, Ordering::Relaxed);
        if c.held {
            c.held = false;
            control.held.fetch_sub(1, Ordering::Relaxed);
        }
        self.drop_stream(i);
        if self.spec.mode == Mode::Hold {
            if lost > 0 {
                self.retry_later(i);
            }
            return;
        }
        self.reconnects += 1;
        self.connect(i, control);
    }

    fn drop_stream(&mut self, i: usize) {
        if let Some(mut s) = self.clients[i].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.clients[i].connected = false;
    }

    /// Counts an error, drops the connection and schedules a reconnect.
    fn fail(&mut self, i: usize, kind: Kind, control: &Control) {
        match kind {
            Kind::Connect => self.errors.connect += 1,
            Kind::Read => self.errors.read += 1,
            Kind::Write => self.errors.write += 1,
            Kind::Parse => self.errors.parse += 1,
        }
        control.failed.fetch_add(1, Ordering::Relaxed);
        let c = &mut self.clients[i];
        if c.held {
            c.held = false;
            control.held.fetch_sub(1, Ordering::Relaxed);
        }
        c.inflight.clear();
        self.drop_stream(i);
        self.retry_later(i);
    }

    fn retry_later(&mut self, i: usize) {
        let at = Instant::now() + RETRY_AFTER;
        self.clients[i].timer = Some(at);
        self.timers.push(Reverse((at, i)));
    }

    fn on_timer(&mut self, i: usize, control: &Control) {
        if self.clients[i].stream.is_none() {
            self.connect(i, control);
        } else {
            self.pump(i, control);
        }
    }
}

/// Which error counter a failure goes to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Connect,
    Read,
    Write,
    Parse,
}
