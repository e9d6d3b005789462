//! The master process: binds, forks, hands out connections, supervises.
//!
//! The master never serves a request and never starts a thread: `fork`
//! copies only the calling thread, so a multi-threaded master could fork a
//! child while another thread holds a lock the child then waits on forever.
//! It is one loop around `poll(2)` on the listener and the signal pipe:
//!
//! - the listener is readable (pass model): accept every pending connection
//!   and send each to a worker over its Unix socket (`SCM_RIGHTS`);
//! - SIGCHLD: reap exited workers with `waitpid(WNOHANG)`, and replace any
//!   that died unasked (after a back-off if they keep crashing);
//! - SIGHUP: re-read the configuration and roll the workers one by one;
//! - SIGUSR1: reopen the log and tell the workers to do the same;
//! - SIGTERM/SIGINT: stop accepting, ask every worker to finish, wait for
//!   them within the grace period, exit 0.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::cli::{AcceptModel, Args, Balance};
use crate::fdpass::{MAX_FDS, send_fds};
use crate::scoreboard::{Scoreboard, State};
use crate::worker::{self, EXIT_FATAL, Feed, Spec};
use common::signals::Signals;

/// Scoreboard slots: room for every worker plus their replacements while a
/// reload or a recycling rolls them.
pub const SLOTS: usize = 64;
/// At most this many workers (half the slots, so a full roll always fits).
pub const MAX_WORKERS: usize = SLOTS / 2;
/// How long a new worker may take to report that it is running.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A worker that dies younger than this counts as crashing.
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// The longest wait before replacing a worker that keeps crashing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How soon the master retries a connection no channel could take.
const STALL_RETRY: Duration = Duration::from_millis(1);
/// How long accepting pauses after EMFILE/ENFILE.
use common::limits::ACCEPT_PAUSE;
/// How often the loop wakes up without an event (recycling, back-off).
const TICK: Duration = Duration::from_millis(200);

mod dispatch;
mod pool;
mod supervise;

/// A worker process, as the master sees it.
#[derive(Debug)]
struct Child {
    pid: Pid,
    /// The master's end of the socket pair (pass model).
    channel: Option<UnixStream>,
    started: Instant,
    /// Asked to stop; no more connections are sent to it.
    retiring: bool,
    /// Its loop's busy time when last measured (the pool's sizing).
    sample: Option<pool::Sample>,
}

/// The master's state.
#[derive(Debug)]
pub struct Master {
    /// The command line, re-read on SIGHUP (with its `--config` file).
    argv: Vec<OsString>,
    /// The configuration in force.
    args: Args,
    /// Shared with every worker.
    board: Arc<Scoreboard>,
    /// One entry per scoreboard slot.
    children: Vec<Option<Child>>,
    /// The listening socket (closed when the shutdown starts).
    listener: Option<TcpListener>,
    /// The `--tls-redirect` port: bound here, served by every worker (the
    /// master never accepts on it).
    redirect: Option<common::redirect::Redirect>,
    /// The master's signal flags and self-pipe (a child uninstalls them).
    signals: Option<Signals>,
    /// Next worker for round-robin.
    next: usize,
    /// Workers that died young in a row, for the back-off.
    crashes: u32,
    /// No replacement is started before this time.
    backoff_until: Option<Instant>,
    /// A worker could not start for a reason a restart will not fix.
    fatal: bool,
    /// Out of descriptors: the listener is not polled before this time
    /// (it stays readable, so polling it would spin).
    accept_paused_until: Option<Instant>,
    /// Connections accepted while every channel was full, waiting for one
    /// to drain; the listener is not polled meanwhile (backpressure into
    /// the kernel's accept queue).
    stalled: Vec<dispatch::Accepted>,
    /// A site for the `503` the master sends when every worker is full; no
    /// access log (the master writes none).
    busy_site: Option<common::http::Site>,
    /// How many workers the pool should have now: `--workers`, or what
    /// the self-sizing pool decided last.
    size: usize,
    /// The most workers a self-sizing pool forks in the next interval.
    spawn_rate: usize,
    /// When the workers are measured next.
    next_sizing: Instant,
}

impl Master {
    /// A master for `args`, with the listener already bound (as root, if
    /// the port needs it) and the signal handlers installed.
    pub fn new(
        argv: Vec<OsString>,
        args: Args,
        listener: TcpListener,
        redirect: Option<common::redirect::Redirect>,
        signals: Signals,
    ) -> io::Result<Master> {
        let board = Arc::new(Scoreboard::new(SLOTS)?);
        listener.set_nonblocking(true)?;
        let size = args.worker_count().min(MAX_WORKERS);
        Ok(Master {
            size,
            spawn_rate: 1,
            next_sizing: Instant::now() + pool::SIZING_INTERVAL,
            argv,
            args,
            board,
            children: (0..SLOTS).map(|_| None).collect(),
            listener: Some(listener),
            redirect,
            signals: Some(signals),
            next: 0,
            crashes: 0,
            backoff_until: None,
            fatal: false,
            accept_paused_until: None,
            stalled: Vec::new(),
            busy_site: None,
        })
    }

    /// Prints the `--tls-redirect` port's line, if there is one.
    pub fn announce_redirect(&self) {
        if let Some(r) = &self.redirect {
            r.announce();
        }
    }

    fn signals(&self) -> &Signals {
        // The master only gives its Signals away in a forked child, which
        // never comes back here.
        self.signals
            .as_ref()
            .expect("the master keeps its signal handlers")
    }

    fn wanted(&self) -> usize {
        self.size
    }

    fn active(&self) -> impl Iterator<Item = (usize, &Child)> {
        self.children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| !c.retiring).map(|c| (i, c)))
    }

    // ANCHOR: run
    /// The master's loop; returns when the server has shut down.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            let paused = self.accept_paused_until.is_some_and(|t| Instant::now() < t);
            let accepting = self.args.accept == AcceptModel::Pass
                && self.listener.is_some()
                && !paused
                && self.stalled.is_empty();
            let readable = {
                let signals = self.signals();
                let mut fds = vec![PollFd::new(signals.wake_fd(), PollFlags::POLLIN)];
                if let (true, Some(l)) = (accepting, &self.listener) {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                // With a stalled connection, look again soon: a worker
                // drains its channel in microseconds, in one wake-up.
                let wait = if !self.stalled.is_empty() {
                    STALL_RETRY
                } else {
                    TICK
                };
                match poll(
                    &mut fds,
                    PollTimeout::try_from(wait).unwrap_or(PollTimeout::NONE),
                ) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                let woke = fds[0].any().unwrap_or(false);
                let conn = fds.get(1).is_some_and(|f| f.any().unwrap_or(false));
                if woke && !signals.shutdown_requested() {
                    signals.drain();
                }
                conn
            };
            if self.signals().take_child_exited() {
                self.reap();
            }
            if self.fatal {
                log::error!("a worker cannot start; stopping");
                self.stop();
                return Err(io::Error::other("a worker could not start"));
            }
            if self.signals().shutdown_requested() {
                self.stop();
                return Ok(());
            }
            if self.signals().take_reload() {
                self.reload();
            }
            if self.signals().reopen_flag().swap(false, Ordering::SeqCst) {
                common::logging::reopen_error_log();
                self.signal_all(Signal::SIGUSR1);
                log::info!("log files reopened");
            }
            if !self.stalled.is_empty() {
                let stalled = std::mem::take(&mut self.stalled);
                if self.hand_out(stalled) && readable {
                    self.accept_all();
                }
            } else if readable {
                self.accept_all();
            }
            self.recycle();
            self.maintain();
            self.size_pool();
        }
    }
    // ANCHOR_END: run

    fn signal_all(&self, sig: Signal) {
        for child in self.children.iter().flatten() {
            let _ = kill(child.pid, sig);
        }
    }

    // ANCHOR: stop
    /// Graceful stop: close the listener, retire every worker, wait for
    /// them within the grace period (plus a little), then kill stragglers.
    fn stop(&mut self) {
        log::info!("shutting down");
        self.listener = None;
        for (stream, peer) in std::mem::take(&mut self.stalled) {
            // Accepted but never passed on: answer it rather than reset it.
            self.reject(stream, peer);
        }
        for slot in 0..SLOTS {
            self.retire(slot);
        }
        let grace = self
            .args
            .http
            .timeouts()
            .map_or(Duration::from_secs(10), |t| t.grace);
        let deadline = Instant::now() + grace + Duration::from_secs(2);
        while self.children.iter().any(Option::is_some) && Instant::now() < deadline {
            let mut fds = [PollFd::new(self.signals().wake_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            self.reap();
        }
        for child in self.children.iter().flatten() {
            log::warn!(
                "worker pid {} did not finish in time; killing it",
                child.pid
            );
            let _ = kill(child.pid, Signal::SIGKILL);
        }
        while self.children.iter().any(Option::is_some) {
            std::thread::sleep(Duration::from_millis(10));
            self.reap();
        }
    }
    // ANCHOR_END: stop
}

/// Checks what a worker would need, before forking workers with it.
pub fn check(args: &Args) -> io::Result<()> {
    args.http.timeouts()?;
    args.http.limits()?;
    args.http.log_settings()?;
    // The certificate and key load (a worker would fail at every respawn).
    args.http.tls()?;
    if args.http.chroot.is_none() {
        args.http.root.canonicalize().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("document root {}: {e}", args.http.root.display()),
            )
        })?;
    }
    if args.worker_count() > MAX_WORKERS {
        return Err(io::Error::other(format!("at most {MAX_WORKERS} workers")));
    }
    if let Some(s) = args.sizing() {
        let problem = if args.workers > 0 {
            Some("--workers sets a fixed pool; a self-sizing one starts from --min-workers")
        } else if s.max_workers > MAX_WORKERS {
            Some("--max-workers is too large")
        } else if s.min_workers == 0 || s.min_workers > s.max_workers {
            Some("--min-workers must be between 1 and --max-workers")
        } else if s.min_spare == 0 || s.max_spare <= s.min_spare {
            Some("--min-spare must be at least 1 and less than --max-spare")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(io::Error::other(format!(
                "{problem} (at most {MAX_WORKERS} workers)"
            )));
        }
    }
    Ok(())
}
