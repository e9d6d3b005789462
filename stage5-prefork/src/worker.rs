//! A worker process: stage 4's event loop, fed by the master through the
//! loop's extra source (pass model) or by its own accepts on the shared
//! listener (shared model).
//!
//! A worker is a child of `fork`: it starts with a copy of the master's
//! memory and descriptors. The first things it does are to forget what was
//! the master's (signal handlers, the other workers' channels), to ask the
//! kernel for a SIGTERM if the master dies, to pin itself to a CPU and drop
//! privileges if asked, and only then to start threads and open logs.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use stage4_epoll::{ConnectionSource, EventLoop, Flow, Handle, LoopConfig};

use crate::cli::Args;
use crate::fdpass::recv_streams;
use crate::scoreboard::{Scoreboard, Slot, State, Status};

/// Exit status of a worker that cannot start for a reason respawning will
/// not fix (a failed privilege drop, a bad root): the master stops.
pub const EXIT_FATAL: i32 = 78;

/// How a worker gets its connections.
#[derive(Debug)]
pub enum Feed {
    /// Its end of the socket pair the master sends descriptors on.
    Pass(UnixStream),
    /// The listener every worker shares.
    Shared(TcpListener),
}

/// What a worker needs from the master.
#[derive(Debug)]
pub struct Spec {
    /// Its slot in the scoreboard.
    pub slot: usize,
    /// The configuration it was forked with.
    pub args: Args,
    /// The shared scoreboard.
    pub board: Arc<Scoreboard>,
    /// Where its connections come from.
    pub feed: Feed,
    /// The `--tls-redirect` port, which every worker serves on a thread of
    /// its own (see `common::redirect`).
    pub redirect: Option<common::redirect::Redirect>,
}

// ANCHOR: worker_main
/// Runs a worker to the end; returns its exit status.
pub fn run(spec: Spec) -> i32 {
    // If the master dies (even by SIGKILL), the kernel sends us SIGTERM:
    // no orphaned workers serving a port nobody supervises.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        log::warn!("worker {}: prctl(PR_SET_PDEATHSIG): {e}", spec.slot);
    }
    if spec.args.cpu_affinity {
        pin_to_cpu(spec.slot);
    }
    // ANCHOR: counters
    // The scoreboard lives as long as this process: one leaked handle gives
    // the `'static` borrow a `Site` needs. The core and the event loop then
    // count straight into this worker's slot in shared memory.
    let board: &'static Scoreboard = Box::leak(Box::new(Arc::clone(&spec.board)));
    let counters = &board.slot(spec.slot).counters;
    let status = Arc::new(Status(Arc::clone(&spec.board)));
    let server = match spec
        .args
        .http
        .start_with_status(crate::NAME, Some(status), counters)
    {
        Ok(s) => s,
        Err(e) => {
            log::error!("worker {}: {e}", spec.slot);
            return EXIT_FATAL;
        }
    };
    // ANCHOR_END: counters
    if let Some(redirect) = spec.redirect
        && let Err(e) = redirect.spawn(server.timeouts.header)
    {
        log::error!("worker {}: --tls-redirect: {e}", spec.slot);
        return EXIT_FATAL;
    }
    let config = LoopConfig {
        site: Arc::clone(&server.site),
        timeouts: server.timeouts,
        max_connections: spec.args.max_connections,
        tls: server.tls.clone(),
    };
    let mut ev = match EventLoop::new(config) {
        Ok(ev) => ev,
        Err(e) => {
            log::error!("worker {}: event loop: {e}", spec.slot);
            return 1;
        }
    };
    // ANCHOR: feed
    // The connections come to the loop itself: the channel as the loop's
    // extra source (pass model), or the shared listener registered with
    // EPOLLEXCLUSIVE (shared model). No thread, no lock in between.
    let fed = match spec.feed {
        Feed::Pass(channel) => channel
            .set_nonblocking(true)
            .and_then(|()| ev.add_source(Box::new(Channel(channel, Vec::new())))),
        Feed::Shared(listener) => ev.add_listener_exclusive(listener),
    };
    // ANCHOR_END: feed
    if let Err(e) = fed {
        log::error!(
            "worker {}: registering its connections' source: {e}",
            spec.slot
        );
        return 1;
    }
    let handle = ev.handle();
    let slot = spec.board.slot(spec.slot);
    let watcher = {
        let handle = handle.clone();
        let board = Arc::clone(&spec.board);
        let index = spec.slot;
        let signals = server.signals.shutdown_flag();
        let wake = server.signals.wake_stream();
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || match wake {
                Ok(wake) => heartbeat(board.slot(index), &wake, &signals, &handle),
                Err(e) => log::error!("signal pipe: {e}"),
            })
    };
    if let Err(e) = watcher {
        log::error!(
            "worker {}: cannot start its heartbeat thread: {e}",
            spec.slot
        );
        return 1;
    }
    slot.set_state(State::Running);
    log::debug!("worker {} (pid {}) running", spec.slot, std::process::id());
    let result = ev.run();
    slot.set_state(State::Retiring);
    if let Err(e) = result {
        log::error!("worker {}: {e}", spec.slot);
        return 1;
    }
    // Dropping the server flushes this worker's access log.
    drop(server);
    0
}
// ANCHOR_END: worker_main

// ANCHOR: channel
/// Pass model: the worker's end of the socket pair, as the event loop's
/// [`ConnectionSource`]. Readable means the master sent one or more
/// messages, each with a batch of sockets; they are taken until
/// `WouldBlock`, all in this one wake-up. End-of-stream means the master
/// closed its end (this worker is being retired, or the master is gone):
/// the loop then finishes what it has and `run` returns.
#[derive(Debug)]
struct Channel(UnixStream, Vec<std::net::TcpStream>);

impl ConnectionSource for Channel {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn on_readable(&mut self, serve: &mut dyn FnMut(std::net::TcpStream)) -> Flow {
        let Channel(channel, batch) = self;
        loop {
            let open = recv_streams(channel, batch);
            // Whatever arrived is served, whatever the call says next.
            batch.drain(..).for_each(&mut *serve);
            match open {
                Ok(true) => {}
                Ok(false) => return Flow::End,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Open,
                Err(e) => {
                    log::error!("receiving connections from the master: {e}");
                    return Flow::End;
                }
            }
        }
    }
}
// ANCHOR_END: channel

/// Beats once a second in the scoreboard, and turns SIGTERM into a
/// graceful stop of the loop.
fn heartbeat(slot: &Slot, wake: &UnixStream, shutdown: &AtomicBool, handle: &Handle) {
    loop {
        slot.heartbeat
            .store(common::time::unix_now(), Ordering::Relaxed);
        if shutdown.load(Ordering::SeqCst) {
            slot.set_state(State::Retiring);
            handle.shutdown();
            return;
        }
        let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                log::error!("heartbeat poll: {e}");
                return;
            }
        }
        if !shutdown.load(Ordering::SeqCst) {
            // SIGUSR1/SIGHUP: the log thread takes its own flag; empty the
            // pipe so the poll blocks again.
            let mut buf = [0u8; 64];
            let _ = nix::unistd::read(wake, &mut buf);
        }
    }
}

/// Pins this process to the `slot`-th CPU (modulo their number) of those
/// it was allowed to run on: a server started under `taskset -c 2,3`
/// keeps its workers on CPUs 2 and 3, where "CPU `slot`" would move them
/// off the CPUs it was given (a process may widen its own mask).
fn pin_to_cpu(slot: usize) {
    let me = nix::unistd::Pid::from_raw(0);
    let allowed: Vec<usize> = match nix::sched::sched_getaffinity(me) {
        Ok(mask) => (0..nix::sched::CpuSet::count())
            .filter(|&cpu| mask.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(e) => {
            log::warn!("worker {slot}: reading the CPU mask: {e}");
            return;
        }
    };
    let Some(&cpu) = allowed.get(slot % allowed.len().max(1)) else {
        return;
    };
    let mut set = nix::sched::CpuSet::new();
    if let Err(e) = set
        .set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(me, &set))
    {
        log::warn!("worker {slot}: pinning to CPU {cpu}: {e}");
    }
}
