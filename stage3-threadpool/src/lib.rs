//! Stage 3: an acceptor thread and a fixed pool of worker threads.
//!
//! **What this stage demonstrates.** The classic threaded server. One
//! thread, the *acceptor*, does nothing but `accept` and push each new
//! connection into a bounded queue. N *workers* pop connections and serve
//! each one from start to end with stage 2's blocking loop. N clients are
//! served at once; the kernel runs the workers in parallel on every core.
//! Around that core sit the things every real pool needs:
//! - **two queues**, so you can read the mechanism and then use the tool:
//!   a hand-written `Mutex<VecDeque>` + `Condvar` queue ([`queue`]), model
//!   checked with `loom`, and `crossbeam-channel` (`--queue crossbeam`);
//! - **backpressure**: the queue is bounded (`--queue-depth`); when it is
//!   full the acceptor answers `503 Service Unavailable` with `Retry-After`
//!   at once instead of letting connections pile up unseen;
//! - **fairness**: a keep-alive connection would hold its worker for as
//!   long as the client likes. When others are waiting, a worker ends the
//!   keep-alive connection after the current response (`--fair`);
//! - **panic isolation**: a job that panics is caught; its worker lives on;
//! - **graceful shutdown** by `Drop`, as in the Rust Book: close the queue,
//!   let the workers drain it, join them;
//! - **stats** in atomics, logged at shutdown.
//!
//! **What changed since stage 2.** A worker runs stage 2's connection loop
//! with the fairness policy added ([`connection`]: it ends keep-alive when
//! others wait), built from stage 2's pieces (reading with a deadline,
//! `sendfile`, the timeouts, the lingering close) called as they are. What
//! is new is everything *around* the connection: who runs it, and when.
//!
//! **What it still cannot do.** Hold more connections than it has threads
//! *cheaply*. Each busy connection pins a whole thread (a stack, a kernel
//! task, context switches), even while it only waits for the client. A
//! client that connects and says nothing holds a worker for the whole
//! `--header-timeout`; N such clients stall the server (see the chapter's
//! break-it lab). Stage 4 serves thousands of idle connections from one
//! thread with an event loop.
//!
//! # Layout
//! - [`run`]: the acceptor loop; the `503` it sends is
//!   `common::server::reject_busy` (stage 5's master sends the same).
//! - [`serve`]: what a worker does with one connection;
//!   [`connection`]: its loop, stage 2's plus the fairness policy.
//! - [`pool`]: `ThreadPool` and its workers, shut down by `Drop`.
//! - [`queue`]: the two bounded queues.
//! - [`stats`]: the counters.
//! - [`line`]: `--protocol line`, stage 1's line protocol on the same pool.

pub mod connection;
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
#[derive(Debug)]
pub struct Context {
    /// The site to serve.
    pub site: Arc<Site>,
    /// The shutdown flag and self-pipe. The workers need it too: an idle
    /// keep-alive connection is closed at once when a shutdown starts.
    pub signals: Arc<Signals>,
    /// Header, keep-alive, send and grace timeouts.
    pub timeouts: Timeouts,
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
    let opts = Options {
        site: &ctx.site,
        timeouts: ctx.timeouts,
        signals: &ctx.signals,
    };
    if let Err(e) = connection::serve_connection(stream, peer, &opts, ctx) {
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
                            ctx.site.counters.rejected();
                            match &ctx.line {
                                None => common::server::reject_busy(
                                    incoming.stream,
                                    incoming.peer,
                                    &ctx.site,
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
