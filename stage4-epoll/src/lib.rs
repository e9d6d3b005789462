//! Stage 4: an HTTP/1.1 static-file server on `mio` event loops.
//!
//! **What this stage demonstrates.** One thread serving tens of thousands of
//! connections: every socket is non-blocking, one `epoll_wait` (through
//! `mio::Poll`) says which sockets are ready, and each connection is a small
//! state machine that does what its socket allows and returns. Timers live
//! in one heap per loop instead of one blocked thread per connection, and
//! I/O buffers are pooled, so an idle keep-alive connection costs about a
//! hundred bytes of user memory instead of a thread stack. `--loops N` runs
//! N such loops, each on its own thread with its own `SO_REUSEPORT`
//! listener, so the kernel spreads connections over them.
//!
//! **And a reverse proxy.** With `--proxy-pass` the same loop forwards
//! requests to another server: an upstream connection is one more
//! non-blocking socket in the `Poll`, and a forwarded request a second
//! state machine in its client's connection ([`proxy`]), with bounded
//! buffers both ways.
//!
//! **What changed since stage 3.** The thread pool is gone, and with it the
//! blocking calls: `read_until` with a deadline became "read until
//! `WouldBlock`, arm a timer", the blocking `sendfile` loop became one that
//! stops when the socket is full and resumes on the next `WRITABLE` event,
//! and the lingering close became a phase of the state machine. The HTTP
//! logic did not change at all: the same `common::http::Conn` answers the
//! same bytes.
//!
//! **What it cannot do.** Anything slow inside the loop stalls every
//! connection of that loop: `open`/`stat` of a file on a cold disk, a large
//! directory listing, a log line when the log pipe is full. nginx has the
//! same problem (and thread pools for `aio`); stage 5 contains the damage
//! to one worker process, and would need `io_uring` to remove it. There is
//! no back-pressure across loops either: `SO_REUSEPORT` hashes a
//! connection to a loop whether or not that loop is busy.
//!
//! # Layout
//! - [`event_loop`]: `Poll`, tokens, accepting, dispatching events and
//!   timers, shutdown; the readiness rules it relies on.
//! - [`connection`]: one connection's state machine over the sans-IO core.
//! - [`proxy`]: the reverse proxy (`--proxy-pass`): upstream connections
//!   as a second kind of socket in the same loop, and the exchange state
//!   machine that moves a request up and its response down.
//! - [`timer`]: deadlines in a binary heap with lazy cancellation.
//! - [`buffer_pool`]: borrowed I/O buffers.
//! - [`serve`], [`bind_reuseport`]: what the binary (and
//!   stage 5) wires together.
//!
//! # Using the loop from another program (stage 5)
//!
//! ```no_run
//! # fn demo(config: stage4_epoll::LoopConfig, listener: std::net::TcpListener,
//! #         source: Box<dyn stage4_epoll::ConnectionSource + Send>) -> std::io::Result<()> {
//! use stage4_epoll::EventLoop;
//! let mut ev = EventLoop::new(config)?;
//! ev.add_listener(listener)?; // optional: a loop may get connections only from a source
//! ev.add_source(source)?; // optional: stage 5's channel from the master
//! let handle = ev.handle(); // Send + Clone: for a signal-watching thread
//! let t = std::thread::spawn(move || ev.run());
//! handle.shutdown(); // graceful: idle connections get one last request, the rest finish
//! t.join().expect("loop thread")?;
//! # Ok(()) }
//! ```

pub mod buffer_pool;
pub mod connection;
pub mod event_loop;
pub mod proxy;
pub mod timer;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use common::signals::Signals;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

pub use event_loop::{
    ConnectionSource, EventLoop, Flow, Handle, ITERATIONS, LoopConfig, POOLED_BUFFERS,
};

// ANCHOR: reuseport
/// Binds `n` listening sockets to the same address with `SO_REUSEPORT`, one
/// per event loop: the kernel then spreads incoming connections over them
/// (by a hash of the client's address and port), and no two loops ever
/// compete in `accept` for the same connection. With port 0 the first
/// socket picks the port and the others join it.
pub fn bind_reuseport(addr: SocketAddr, n: usize, backlog: i32) -> io::Result<Vec<TcpListener>> {
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        let family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        setsockopt(&fd, sockopt::ReusePort, &true)?;
        bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
        // The kernel caps the backlog at net.core.somaxconn.
        listen(&fd, Backlog::new(backlog)?)?;
        let listener = TcpListener::from(fd);
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}
// ANCHOR_END: reuseport

/// Appends the event loops' own figures to the status page.
pub fn render_stats(out: &mut String) {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    common::stats::metric(
        out,
        "eventloop_iterations_total",
        "counter",
        "Rounds of epoll_wait, all loops.",
        ITERATIONS.load(Relaxed),
    );
    common::stats::metric(
        out,
        "eventloop_pooled_buffers",
        "gauge",
        "Spare read/write buffers waiting in the pools.",
        POOLED_BUFFERS.load(Relaxed).max(0) as u64,
    );
    let busy = common::stats::PROCESS.loop_busy_us.load(Relaxed);
    let _ = writeln!(
        out,
        "# HELP eventloop_busy_seconds_total Time the loops spent handling events (outside epoll_wait).\n\
         # TYPE eventloop_busy_seconds_total counter\n\
         eventloop_busy_seconds_total {}.{:06}",
        busy / 1_000_000,
        busy % 1_000_000
    );
}

/// Blocks until a graceful shutdown is requested (SIGINT/SIGTERM), sleeping
/// in `poll(2)` on the signal self-pipe; calls `on_reload` for each SIGHUP.
/// Other signals (SIGUSR1 reopens the logs in the log thread) are drained.
pub fn wait_for_shutdown(signals: &Signals, on_reload: &mut dyn FnMut()) {
    while !signals.shutdown_requested() {
        if signals.take_reload() {
            on_reload();
            continue;
        }
        let mut fds = [PollFd::new(signals.wake_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                log::error!("waiting for signals: {e}");
                return;
            }
        }
        if !signals.shutdown_requested() {
            signals.drain();
        }
    }
}

// ANCHOR: serve
/// Runs one event loop per listener, each on its own thread, until a
/// shutdown signal; then wakes every loop through its `mio::Waker` and
/// waits for all of them to finish their grace period. `started` runs
/// once every loop exists (the binary announces `listening on` there:
/// nothing that needs a descriptor is created after the announcement).
/// On SIGHUP `reload` re-reads the configuration; what it returns goes to
/// every loop (`Handle::reconfigure`). With `proxy`, every loop is also
/// a reverse proxy ([`proxy`]).
pub fn serve(
    listeners: Vec<TcpListener>,
    config: &LoopConfig,
    proxy: Option<std::sync::Arc<proxy::ProxyConfig>>,
    signals: &Signals,
    started: impl FnOnce(),
    mut reload: impl FnMut() -> Option<(std::sync::Arc<common::http::Site>, common::server::Timeouts)>,
) -> io::Result<()> {
    let mut handles = Vec::new();
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut ev = EventLoop::new(config.clone())?;
        ev.add_listener(listener)?;
        if let Some(p) = &proxy {
            ev.set_proxy(std::sync::Arc::clone(p));
        }
        handles.push(ev.handle());
        let thread = std::thread::Builder::new()
            .name(format!("loop-{i}"))
            .spawn(move || ev.run())?;
        threads.push(thread);
    }
    started();
    wait_for_shutdown(signals, &mut || {
        if let Some((site, timeouts)) = reload() {
            for handle in &handles {
                handle.reconfigure(std::sync::Arc::clone(&site), timeouts);
            }
        }
    });
    for handle in &handles {
        handle.shutdown();
    }
    let mut result = Ok(());
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::error!("event loop: {e}");
                result = Err(e);
            }
            Err(_) => {
                log::error!("an event loop panicked");
                result = Err(io::Error::other("an event loop panicked"));
            }
        }
    }
    result
}
// ANCHOR_END: serve
