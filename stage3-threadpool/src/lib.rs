//! Stage 3: a thread pool, with idle connections in a poller.
//!
//! **What this stage demonstrates.** The threaded server, in the two
//! models real ones have used, side by side (`--idle`):
//! - **classic** (`--idle classic`): one thread, the *acceptor*, does
//!   nothing but `accept` and push each new connection into a bounded
//!   queue; N *workers* pop connections and serve each one from start to
//!   end with stage 2's blocking loop ([`connection`]).
//! - **poller** (the default, [`poller`]): one thread holds every
//!   connection that has nothing to read — new ones until their first
//!   bytes, keep-alive ones between requests, slow heads, lingering closes —
//!   in epoll (mio), and pushes a connection into the queue only when it is
//!   readable. A worker serves what is there and hands the connection back,
//!   with its parse state. This is Apache's event MPM, Tomcat NIO, Jetty.
//!
//! Around that core sit the things every real pool needs:
//! - **two queues**, so you can read the mechanism and then use the tool:
//!   a hand-written `Mutex<VecDeque>` + `Condvar` queue ([`queue`]), model
//!   checked with `loom`, and `crossbeam-channel` (`--queue crossbeam`);
//! - **backpressure**: the queue is bounded (`--queue-depth`); when it is
//!   full the acceptor (or the poller) answers `503 Service Unavailable`
//!   with `Retry-After` at once instead of letting connections pile up;
//! - **a pool that sizes itself** ([`pool`], [`sizer`]) between
//!   `--min-threads` and `--max-threads`: a worker is added when
//!   connections wait in the queue over 10 ms, and retires after
//!   `--thread-idle-timeout` with nothing to do;
//! - **fairness** (classic model): a keep-alive connection would hold its
//!   worker for as long as the client likes. When others are waiting, a
//!   worker ends the keep-alive connection after the current response
//!   (`--fair`);
//! - **panic isolation**: a job that panics is caught; its worker lives on;
//! - **graceful shutdown** by `Drop`, as in the Rust Book: close the queue,
//!   let the workers drain it, join them;
//! - **stats** in atomics, on the status page and logged at shutdown.
//!
//! **What changed since stage 2.** A worker runs stage 2's connection loop
//! (the classic model adds the fairness policy; the poller model stops the
//! loop where it would wait for the client), built from stage 2's pieces
//! (writing and `sendfile`, the timeouts, the lingering close) called as
//! they are. What is new is everything *around* the connection: who runs
//! it, and when.
//!
//! **What it still cannot do.** A client that is slow to *read* a large
//! response holds a worker (for at most `--send-timeout`): the poller only
//! waits for bytes to arrive, not for room to send. Every connection with
//! bytes to work on still costs a thread while it is served, with a stack,
//! a kernel task and context switches; stage 4 serves every connection from
//! one thread with non-blocking state machines. In the classic model, N
//! clients that connect and say nothing stall N workers for the whole
//! `--header-timeout` (the chapter's break-it lab).
//!
//! # Layout
//! - [`run`]: the classic acceptor loop; the `503` it sends is
//!   `common::server::reject_busy` (stage 5's master sends the same).
//! - [`poller`]: the poller model: `Poller` (accept, hold, time out,
//!   linger), `Parked` (a connection between two stretches of work),
//!   `resume` (a worker's job); [`inbox`]: the hand-backs, one wake-up per
//!   batch.
//! - [`serve`]: what a classic worker does with one connection;
//!   [`connection`]: its loop, stage 2's plus the fairness policy.
//! - [`pool`]: `ThreadPool` and its workers, sized between a minimum and a
//!   maximum, shut down by `Drop`; [`sizer`]: the worker count.
//! - [`queue`]: the two bounded queues.
//! - [`stats`]: the counters.
//! - [`line`]: `--protocol line`, stage 1's line protocol on the same pool
//!   (classic model).

pub mod connection;
pub mod inbox;
pub mod line;
#[cfg(all(test, not(loom)))]
mod mistake;
pub mod poller;
pub mod pool;
pub mod queue;
pub mod sizer;
pub mod stats;
mod sync;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use common::http::Site;
use common::server::Timeouts;
use common::signals::Signals;
use stage2_http_seq::Options;

use crate::pool::ThreadPool;
use crate::queue::PushError;
use crate::stats::Stats;

/// How often a worker holding an idle keep-alive connection looks whether
/// other connections are waiting (only with `--fair true`).
pub const RECHECK_EVERY: Duration = Duration::from_millis(20);

/// Where a connection with nothing to read waits (`--idle`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum IdleModel {
    /// In the poller thread: a worker holds a connection only while it
    /// has bytes to work on ([`poller`]).
    Poller,
    /// On its worker: a worker owns a connection from accept to close
    /// ([`connection`]), as in the first version of this stage.
    Classic,
}

/// An accepted connection on its way to a worker.
#[derive(Debug)]
pub struct Incoming {
    /// The socket.
    pub stream: TcpStream,
    /// The client's address, for the logs.
    pub peer: SocketAddr,
}

/// What every worker shares: built once, behind an `Arc`.
pub struct Context {
    /// The site to serve and the timeouts, replaced by a SIGHUP reload
    /// (each connection reads them when it starts: [`Context::site`]).
    pub live: common::server::Live,
    /// SIGHUP: re-reads the configuration; `None` keeps what runs.
    pub reload: Box<dyn Fn() -> Option<(Arc<Site>, Timeouts)> + Send + Sync>,
    /// The shutdown flag and self-pipe. The workers need it too: an idle
    /// keep-alive connection is closed at once when a shutdown starts.
    pub signals: Arc<Signals>,
    /// The counters.
    pub stats: Arc<Stats>,
    /// The fairness policy: end keep-alive while others wait (`--fair`,
    /// the classic model only).
    pub fair: bool,
    /// How long a worker of the poller model waits for a keep-alive
    /// connection's next request before handing it back (`--worker-wait`).
    pub worker_wait: Duration,
    /// `Retry-After` seconds in a `503`.
    pub retry_after: u32,
    /// Testing only: a request for this path makes the worker panic.
    pub panic_path: Option<String>,
    /// `--protocol line`: the workers serve stage 1's line protocol in
    /// this shared room instead of HTTP.
    pub line: Option<line::LineRoom>,
    /// With `--tls-cert` (the classic model): each connection is served by
    /// stage 2's TLS loop on its worker.
    pub tls: Option<Arc<common::tls::ServerConfig>>,
}

impl Context {
    /// The site to serve now.
    pub fn site(&self) -> Arc<Site> {
        self.live.site()
    }

    /// The timeouts now.
    pub fn timeouts(&self) -> Timeouts {
        self.live.timeouts()
    }

    /// Takes a pending SIGHUP and applies what the configuration says now.
    pub fn reload_if_asked(&self) {
        if self.signals.take_reload() {
            if let Some((site, timeouts)) = (self.reload)() {
                self.live.set(site, timeouts);
            }
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("live", &self.live)
            .field("fair", &self.fair)
            .field("worker_wait", &self.worker_wait)
            .finish_non_exhaustive()
    }
}

// ANCHOR: serve
/// A worker's job: serve one connection to its end with
/// [`connection::serve_connection`], stage 2's loop plus the fairness policy.
/// Errors belong to the connection: they are logged, never returned.
pub fn serve(incoming: Incoming, ctx: &Context) {
    if let Some(room) = &ctx.line {
        return line::serve(incoming, ctx, room);
    }
    let Incoming { stream, peer } = incoming;
    if let Some(path) = &ctx.panic_path {
        if asks_for(&stream, path) {
            panic!("{peer} asked for --panic-path {path}");
        }
    }
    let site = ctx.site();
    let opts = Options {
        site: &site,
        timeouts: ctx.timeouts(),
        signals: &ctx.signals,
        tls: ctx.tls.as_ref(),
    };
    let served = match &ctx.tls {
        Some(config) => stage2_http_seq::tls::serve_tls_connection(stream, peer, &opts, config),
        None => connection::serve_connection(stream, peer, &opts, ctx),
    };
    if let Err(e) = served {
        log::debug!("{peer}: {e}");
    }
    Stats::bump(&ctx.stats.served);
}
// ANCHOR_END: serve

/// Testing only: true if the first bytes the client sent are
/// `GET {path} `. Peeks (the bytes stay for the real parser) once, with a
/// short timeout; a test client sends its request in one write.
pub(crate) fn asks_for(stream: &TcpStream, path: &str) -> bool {
    let want = format!("GET {path} ");
    let mut buf = vec![0; want.len()];
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    matches!(stream.peek(&mut buf), Ok(n) if buf[..n] == *want.as_bytes())
}

// ANCHOR: accept_loop
/// The acceptor: accepts connections and hands them to the pool until a
/// shutdown is requested. When the queue is full, the connection is
/// answered `503` right here and closed.
pub fn run(listener: &TcpListener, pool: &ThreadPool<Incoming>, ctx: &Context) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    while !ctx.signals.shutdown_requested() {
        ctx.reload_if_asked();
        // Block in poll(2) on the listener and the signal self-pipe (and
        // wake for the pool's growth check while connections wait).
        if !ctx.signals.wait_readable(listener.as_fd(), pool.tick())? {
            pool.tick();
            continue;
        }
        // Take every connection that is ready: a burst of clients is
        // queued in one wake-up.
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    Stats::bump(&ctx.stats.accepted);
                    match pool.try_execute(Incoming { stream, peer }) {
                        Ok(()) => {}
                        Err(PushError::Full(incoming) | PushError::Closed(incoming)) => {
                            Stats::bump(&ctx.stats.rejected);
                            let site = ctx.site();
                            site.counters.rejected();
                            match &ctx.line {
                                // A plaintext 503 on a TLS port would be a
                                // protocol error: close instead.
                                None if ctx.tls.is_some() => drop(incoming),
                                None => common::server::reject_busy(
                                    incoming.stream,
                                    incoming.peer,
                                    &site,
                                    ctx.retry_after,
                                ),
                                Some(room) => {
                                    let _ = (&incoming.stream).write_all(&line::refusal(room));
                                }
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE: out of descriptors. The pending
                    // connection stays queued; back off instead of spinning.
                    log::error!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
    Ok(())
}
// ANCHOR_END: accept_loop
