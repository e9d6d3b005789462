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
use crate::fdpass::send_fd;
use crate::privs::Target;
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

/// What became of a connection the master tried to pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dispatch {
    /// A worker has it.
    Sent,
    /// Every worker is at `--max-connections` (or none can take any).
    AtCapacity,
    /// Every worker's channel is full for the moment.
    ChannelsFull,
}

/// The threads of this process, from `/proc/self/task`.
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// How a worker ended, as `waitpid` says: matched as a value, written out
/// only for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// It called `exit` with this status.
    Code(i32),
    /// A signal ended it.
    Signal(Signal),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit status {code}"),
            Exit::Signal(sig) => write!(f, "signal {sig}"),
        }
    }
}

/// A worker process, as the master sees it.
#[derive(Debug)]
struct Child {
    pid: Pid,
    /// The master's end of the socket pair (pass model).
    channel: Option<UnixStream>,
    started: Instant,
    /// Asked to stop; no more connections are sent to it.
    retiring: bool,
}

/// The master's state.
#[derive(Debug)]
pub struct Master {
    /// The command line, re-read on SIGHUP (with its `--config` file).
    argv: Vec<OsString>,
    /// The configuration in force.
    args: Args,
    /// Who workers run as.
    target: Option<Target>,
    /// Shared with every worker.
    board: Arc<Scoreboard>,
    /// One entry per scoreboard slot.
    children: Vec<Option<Child>>,
    /// The listening socket (closed when the shutdown starts).
    listener: Option<TcpListener>,
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
    /// A connection accepted while every channel was full, waiting for
    /// one to drain; the listener is not polled meanwhile (backpressure
    /// into the kernel's accept queue).
    stalled: Option<(std::net::TcpStream, std::net::SocketAddr)>,
    /// A site for the `503` the master sends when every worker is full; no
    /// access log (the master writes none).
    busy_site: Option<common::http::Site>,
}

impl Master {
    /// A master for `args`, with the listener already bound (as root, if
    /// the port needs it) and the signal handlers installed.
    pub fn new(
        argv: Vec<OsString>,
        args: Args,
        target: Option<Target>,
        listener: TcpListener,
        signals: Signals,
    ) -> io::Result<Master> {
        let board = Arc::new(Scoreboard::new(SLOTS)?);
        listener.set_nonblocking(true)?;
        Ok(Master {
            argv,
            args,
            target,
            board,
            children: (0..SLOTS).map(|_| None).collect(),
            listener: Some(listener),
            signals: Some(signals),
            next: 0,
            crashes: 0,
            backoff_until: None,
            fatal: false,
            accept_paused_until: None,
            stalled: None,
            busy_site: None,
        })
    }

    fn signals(&self) -> &Signals {
        // The master only gives its Signals away in a forked child, which
        // never comes back here.
        self.signals
            .as_ref()
            .expect("the master keeps its signal handlers")
    }

    fn wanted(&self) -> usize {
        self.args.worker_count().min(MAX_WORKERS)
    }

    fn active(&self) -> impl Iterator<Item = (usize, &Child)> {
        self.children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| !c.retiring).map(|c| (i, c)))
    }

    /// Forks the first workers and waits until each reports it is running.
    pub fn start_workers(&mut self) -> io::Result<()> {
        for _ in 0..self.wanted() {
            let slot = self.spawn()?;
            self.wait_running(slot)?;
        }
        Ok(())
    }

    // ANCHOR: spawn
    /// Forks one worker into a free slot; returns the slot.
    #[allow(unsafe_code, reason = "fork(2), in a process that has no other thread")]
    fn spawn(&mut self) -> io::Result<usize> {
        let slot = (0..SLOTS)
            .find(|&i| self.children[i].is_none())
            .ok_or_else(|| io::Error::other("no free scoreboard slot"))?;
        let pair = match self.args.accept {
            AcceptModel::Pass => Some(UnixStream::pair()?),
            AcceptModel::Shared => None,
        };
        self.board.slot(slot).reset(0, common::time::unix_now());
        // The safety argument below holds only in a process with one
        // thread; checked, not assumed (a thread started by a library, or
        // by a later change, would make it false).
        let threads = thread_count()?;
        if threads != 1 {
            return Err(io::Error::other(format!(
                "refusing to fork: the master has {threads} threads, and a child \
                 could inherit a lock held by one that does not exist in it"
            )));
        }
        // SAFETY: the master has exactly one thread (checked just above),
        // so the child cannot inherit a lock held by a thread that does not
        // exist in it. The child only runs `become_worker` and exits.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = self.become_worker(slot, pair.map(|(_, worker_end)| worker_end));
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                self.board
                    .slot(slot)
                    .pid
                    .store(child.as_raw(), Ordering::Release);
                let channel = match pair {
                    Some((master_end, _worker_end)) => {
                        // Non-blocking: a stuck worker must not stall the
                        // master; a full channel means "try another".
                        master_end.set_nonblocking(true)?;
                        Some(master_end)
                    }
                    None => None,
                };
                self.children[slot] = Some(Child {
                    pid: child,
                    channel,
                    started: Instant::now(),
                    retiring: false,
                });
                log::info!("started worker {slot} (pid {child})");
                Ok(slot)
            }
        }
    }
    // ANCHOR_END: spawn

    // ANCHOR: become_worker
    /// In the child, right after `fork`: give up everything that is the
    /// master's, then run the worker.
    fn become_worker(&mut self, slot: usize, channel: Option<UnixStream>) -> i32 {
        // The master's signal handlers would wake the *master's* pipe.
        if let Some(signals) = self.signals.take() {
            signals.uninstall();
        }
        // The other workers' channels: holding them open would hide a dead
        // sibling's end-of-stream from the master, and leak descriptors.
        for child in self.children.iter_mut().flatten() {
            child.channel = None;
        }
        let listener = self.listener.take();
        let feed = match (channel, listener) {
            // Pass model: the worker never accepts; close the listener.
            (Some(channel), _) => Feed::Pass(channel),
            (None, Some(listener)) => Feed::Shared(listener),
            (None, None) => return 1,
        };
        worker::run(Spec {
            slot,
            args: self.args.clone(),
            board: Arc::clone(&self.board),
            feed,
            target: self.target.clone(),
        })
    }
    // ANCHOR_END: become_worker

    /// Waits until the worker in `slot` reports `Running`, reaping meanwhile.
    fn wait_running(&mut self, slot: usize) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.board.slot(slot).state() == State::Running {
                return Ok(());
            }
            self.reap();
            if self.fatal {
                return Err(io::Error::other(
                    "a worker could not start (see the log above)",
                ));
            }
            if self.children[slot].is_none() {
                return Err(io::Error::other(format!(
                    "worker {slot} exited while starting"
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "worker {slot} did not start within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // ANCHOR: run
    /// The master's loop; returns when the server has shut down.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            let paused = self.accept_paused_until.is_some_and(|t| Instant::now() < t);
            let accepting = self.args.accept == AcceptModel::Pass
                && self.listener.is_some()
                && !paused
                && self.stalled.is_none();
            let readable = {
                let signals = self.signals();
                let mut fds = vec![PollFd::new(signals.wake_fd(), PollFlags::POLLIN)];
                if let (true, Some(l)) = (accepting, &self.listener) {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                // With a stalled connection, look again soon: a worker's
                // feeder thread drains its channel in microseconds.
                let wait = if self.stalled.is_some() {
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
            if let Some((stream, peer)) = self.stalled.take() {
                if self.hand_out(stream, peer) && readable {
                    self.accept_all();
                }
            } else if readable {
                self.accept_all();
            }
            self.recycle();
            self.maintain();
        }
    }
    // ANCHOR_END: run

    // ANCHOR: dispatch
    /// Accepts every pending connection and passes each to a worker.
    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if !self.hand_out(stream, peer) {
                        // Every channel is full: leave the rest of the burst
                        // in the kernel's accept queue until the workers
                        // catch up.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued and the
                    // listener readable. Stop polling it for a moment
                    // instead of spinning on it.
                    log::error!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Passes `stream` to a worker, answers 503 if every worker is at
    /// `--max-connections`, or keeps it as `stalled` if every worker's
    /// channel is full for now (returns false then).
    fn hand_out(&mut self, stream: std::net::TcpStream, peer: std::net::SocketAddr) -> bool {
        match self.dispatch(&stream) {
            // `stream` is dropped here: the master's copy closes and the
            // connection lives on in the worker.
            Dispatch::Sent => true,
            Dispatch::AtCapacity => {
                // Say so with a 503 rather than a reset.
                log::warn!("every worker is full; answering {peer} 503");
                self.reject(stream, peer);
                true
            }
            Dispatch::ChannelsFull => {
                self.stalled = Some((stream, peer));
                false
            }
        }
    }

    /// Sends one connection to a worker chosen by the balance policy.
    fn dispatch(&mut self, stream: &std::net::TcpStream) -> Dispatch {
        // Workers at --max-connections take no more (nginx's
        // worker_connections).
        let max = self.args.max_connections as u64;
        let board = &self.board;
        let mut order: Vec<usize> = self
            .active()
            .filter(|(i, c)| {
                c.channel.is_some() && board.slot(*i).counters.active.load(Ordering::Relaxed) < max
            })
            .map(|(i, _)| i)
            .collect();
        if order.is_empty() {
            return Dispatch::AtCapacity;
        }
        match self.args.balance {
            Balance::RoundRobin => {
                let start = order.iter().position(|&i| i >= self.next).unwrap_or(0);
                order.rotate_left(start);
            }
            Balance::LeastConn => {
                let live = |i: usize| self.board.slot(i).counters.active.load(Ordering::Relaxed);
                // Ties go round-robin, so a burst faster than the workers
                // update their counts still spreads out.
                let start = order.iter().position(|&i| i >= self.next).unwrap_or(0);
                order.rotate_left(start);
                order.sort_by_key(|&i| live(i));
            }
        }
        let mut busy = false;
        for i in order {
            let Some(child) = self.children[i].as_mut() else {
                continue;
            };
            let Some(channel) = &child.channel else {
                continue;
            };
            match send_fd(channel, stream.as_fd()) {
                Ok(()) => {
                    self.next = i + 1;
                    return Dispatch::Sent;
                }
                // Its channel is full (a burst faster than the worker
                // receives; a Unix socket holds a few hundred passed
                // descriptors): try another.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => busy = true,
                Err(e) => {
                    log::warn!(
                        "worker {i} (pid {}) cannot take connections: {e}",
                        child.pid
                    );
                    child.channel = None;
                }
            }
        }
        if busy {
            Dispatch::ChannelsFull
        } else {
            Dispatch::AtCapacity
        }
    }
    // ANCHOR_END: dispatch

    /// Answers `503 Service Unavailable` with `Retry-After` and closes: the
    /// same answer stage 3 gives when its queue is full (`common`'s function).
    fn reject(&mut self, stream: std::net::TcpStream, peer: std::net::SocketAddr) {
        if self.busy_site.is_none() {
            let site =
                self.args
                    .http
                    .site(crate::NAME, common::logging::AccessLog::disabled(), None);
            match site {
                Ok(site) => self.busy_site = Some(site),
                Err(e) => {
                    log::error!("cannot build the 503 page: {e}");
                    return;
                }
            }
        }
        if let Some(site) = &self.busy_site {
            common::server::reject_busy(stream, peer, site, 1);
        }
    }

    // ANCHOR: reap
    /// Collects every exited worker (SIGCHLD may stand for several).
    fn reap(&mut self) {
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("waitpid: {e}");
                    return;
                }
            };
            let Some(slot) = self
                .children
                .iter()
                .position(|c| c.as_ref().is_some_and(|c| c.pid == pid))
            else {
                continue;
            };
            let child = self.children[slot].take().expect("found just above");
            let s = self.board.slot(slot);
            s.set_state(State::Free);
            s.pid.store(0, Ordering::Release);
            let how = exit.to_string();
            if exit == Exit::Code(EXIT_FATAL) {
                log::error!("worker {slot} (pid {pid}) cannot start ({how}); not replacing it");
                self.fatal = true;
                continue;
            }
            if child.retiring {
                log::info!("worker {slot} (pid {pid}) finished ({how})");
                continue;
            }
            // Died unasked: replace it, at once if it had been running a
            // while, after a growing pause if it keeps dying young.
            if child.started.elapsed() < STABLE_AFTER {
                self.crashes += 1;
                let pause = Duration::from_millis(100 << self.crashes.min(6)).min(MAX_BACKOFF);
                self.backoff_until = Some(Instant::now() + pause);
                log::warn!(
                    "worker {slot} (pid {pid}) died young ({how}); replacing it in {pause:?}"
                );
            } else {
                self.crashes = 0;
                self.backoff_until = None;
                log::warn!("worker {slot} (pid {pid}) died ({how}); replacing it");
            }
        }
    }
    // ANCHOR_END: reap

    /// Starts workers until the wanted number run, and retires extras.
    fn maintain(&mut self) {
        if self.backoff_until.is_some_and(|t| Instant::now() < t) || self.fatal {
            return;
        }
        let active: Vec<usize> = self.active().map(|(i, _)| i).collect();
        if active.len() < self.wanted() {
            for _ in active.len()..self.wanted() {
                if let Err(e) = self.spawn() {
                    log::error!("starting a worker: {e}");
                    self.backoff_until = Some(Instant::now() + MAX_BACKOFF);
                    return;
                }
            }
        } else {
            for &i in active.iter().skip(self.wanted()) {
                self.retire(i);
            }
        }
    }

    /// Asks the worker in `slot` to finish and exit: no new connections,
    /// end-of-stream on its channel, SIGTERM.
    fn retire(&mut self, slot: usize) {
        let Some(child) = self.children[slot].as_mut() else {
            return;
        };
        child.retiring = true;
        child.channel = None;
        self.board.slot(slot).set_state(State::Retiring);
        let _ = kill(child.pid, Signal::SIGTERM);
    }

    // ANCHOR: replace
    /// Replaces the worker in `slot`: the new one runs before the old one
    /// stops taking work, so no connection finds nobody to serve it.
    fn replace(&mut self, slot: usize) -> io::Result<()> {
        let new = self.spawn()?;
        self.wait_running(new)?;
        self.retire(slot);
        Ok(())
    }
    // ANCHOR_END: replace

    /// `--max-requests-per-worker`: replaces workers past their quota.
    fn recycle(&mut self) {
        let max = self.args.max_requests_per_worker;
        if max == 0 {
            return;
        }
        let due: Vec<usize> = self
            .active()
            .filter(|(i, _)| self.board.slot(*i).counters.requests() >= max)
            .map(|(i, _)| i)
            .collect();
        for slot in due {
            log::info!("worker {slot} served {max} requests; recycling it");
            if let Err(e) = self.replace(slot) {
                log::error!("recycling worker {slot}: {e}");
                return;
            }
        }
    }

    // ANCHOR: reload
    /// SIGHUP: re-reads the command line and its `--config` file. If the
    /// new configuration is valid, every worker is replaced, one by one, by
    /// a worker forked with it; if not, the error is logged and nothing
    /// changes.
    fn reload(&mut self) {
        let mut new: Args = match common::config::load_from(self.argv.clone()) {
            Ok(a) => a,
            Err(e) => {
                log::error!("reload: {e}; keeping the running configuration");
                return;
            }
        };
        if let Err(e) = check(&new) {
            log::error!("reload: {e}; keeping the running configuration");
            return;
        }
        // What the master itself holds cannot change without a restart.
        if new.http.addr != self.args.http.addr
            || new.accept != self.args.accept
            || new.user != self.args.user
            || new.chroot != self.args.chroot
        {
            log::warn!(
                "reload: addr, accept, user and chroot need a restart; keeping the running ones"
            );
            new.http.addr = self.args.http.addr;
            new.accept = self.args.accept;
            new.user = self.args.user.clone();
            new.chroot = self.args.chroot.clone();
        }
        self.args = new;
        log::info!("reload: configuration re-read; rolling the workers");
        let old: Vec<usize> = self.active().map(|(i, _)| i).collect();
        for (n, slot) in old.into_iter().enumerate() {
            if n >= self.wanted() {
                self.retire(slot);
            } else if let Err(e) = self.replace(slot) {
                log::error!("reload: replacing worker {slot}: {e}");
                return;
            }
        }
        self.maintain();
    }
    // ANCHOR_END: reload

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
        if let Some((stream, peer)) = self.stalled.take() {
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
    if args.chroot.is_none() {
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
    Ok(())
}
