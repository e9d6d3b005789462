//! A worker process: stage 4's event loop, fed by the master (pass model)
//! or by its own accepts on the shared listener (shared model).
//!
//! A worker is a child of `fork`: it starts with a copy of the master's
//! memory and descriptors. The first things it does are to forget what was
//! the master's (signal handlers, the other workers' channels), to ask the
//! kernel for a SIGTERM if the master dies, to pin itself to a CPU and drop
//! privileges if asked, and only then to start threads and open logs.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signal::Signal;
use stage4_epoll::{EventLoop, Handle, LoopConfig};

use crate::cli::Args;
use crate::fdpass::recv_stream;
use crate::privs::{self, Target};
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
    /// Who to become.
    pub target: Option<Target>,
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
    if let Err(e) = privs::drop_to(spec.target.as_ref(), spec.args.chroot.as_deref()) {
        log::error!("worker {}: {e}", spec.slot);
        return EXIT_FATAL;
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
    let config = LoopConfig {
        site: Arc::clone(&server.site),
        timeouts: server.timeouts,
        max_connections: spec.args.max_connections,
    };
    let mut ev = match EventLoop::new(config) {
        Ok(ev) => ev,
        Err(e) => {
            log::error!("worker {}: event loop: {e}", spec.slot);
            return 1;
        }
    };
    let handle = ev.handle();
    let feeder = {
        let handle = handle.clone();
        let wake = server.signals.wake_stream();
        let shutdown = server.signals.shutdown_flag();
        std::thread::Builder::new()
            .name("feeder".into())
            .spawn(move || match spec.feed {
                Feed::Pass(channel) => receive(&channel, &handle),
                Feed::Shared(listener) => match wake {
                    Ok(wake) => accept_exclusive(&listener, &wake, &shutdown, &handle),
                    Err(e) => log::error!("signal pipe: {e}"),
                },
            })
    };
    if let Err(e) = feeder {
        log::error!("worker {}: cannot start its feeder thread: {e}", spec.slot);
        return 1;
    }
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

// ANCHOR: receive
/// Pass model: takes sockets from the master and hands them to the loop.
/// When the master closes the channel (this worker is being retired, or
/// the master is gone), the worker finishes what it has and exits.
fn receive(channel: &UnixStream, handle: &Handle) {
    loop {
        match recv_stream(channel) {
            Ok(Some(stream)) => {
                if let Err(e) = handle.hand_over(stream) {
                    log::error!("handing a connection to the loop: {e}");
                }
            }
            Ok(None) => break,
            Err(e) => {
                log::error!("receiving a connection from the master: {e}");
                break;
            }
        }
    }
    handle.shutdown();
}
// ANCHOR_END: receive

// ANCHOR: accept_exclusive
/// Shared model: accepts on the listener every worker shares. Each worker
/// waits in its own epoll instance with `EPOLLEXCLUSIVE`, so the kernel
/// wakes one (or a few) of them per new connection instead of all — the
/// thundering herd — and whoever is woken accepts until `EAGAIN`.
fn accept_exclusive(
    listener: &TcpListener,
    wake: &UnixStream,
    shutdown: &AtomicBool,
    handle: &Handle,
) {
    let setup = || -> io::Result<Epoll> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            listener.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, 0),
        )?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
        Ok(epoll)
    };
    let epoll = match setup() {
        Ok(e) => e,
        Err(e) => {
            log::error!("shared accept: {e}");
            handle.shutdown();
            return;
        }
    };
    let mut events = [EpollEvent::empty(); 2];
    loop {
        let n = match epoll.wait(&mut events, PollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("epoll_wait: {e}");
                return;
            }
        };
        if events[..n].iter().any(|e| e.data() == 1) && shutdown.load(Ordering::SeqCst) {
            // The signal pipe, and it is a shutdown: stop accepting and
            // leave new connections to the other workers. (Other signals
            // are the heartbeat thread's to drain.)
            return;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = handle.hand_over(stream) {
                        log::error!("handing a connection to the loop: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: leave the connection queued for a
                    // sibling and back off instead of spinning.
                    log::error!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
            }
        }
    }
}
// ANCHOR_END: accept_exclusive

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

/// Pins this process to CPU `slot % cpus`.
fn pin_to_cpu(slot: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut set = nix::sched::CpuSet::new();
    let cpu = slot % cpus;
    if let Err(e) = set
        .set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set))
    {
        log::warn!("worker {slot}: pinning to CPU {cpu}: {e}");
    }
}
