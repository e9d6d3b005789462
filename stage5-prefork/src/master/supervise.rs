//! Supervision: forking workers, reaping them, replacing the ones that
//! die, recycling, and rolling them all on a reload.

use super::*;
use common::server::{RESTART_ONLY, Reloaded, compare, log_reload};

/// The threads of this process, from `/proc/self/task`.
pub(super) fn thread_count() -> io::Result<usize> {
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

impl Master {
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
    pub(super) fn spawn(&mut self) -> io::Result<usize> {
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
                    sample: None,
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
    pub(super) fn become_worker(&mut self, slot: usize, channel: Option<UnixStream>) -> i32 {
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
            redirect: self.redirect.take(),
        })
    }
    // ANCHOR_END: become_worker

    /// Waits until the worker in `slot` reports `Running`, reaping meanwhile.
    pub(super) fn wait_running(&mut self, slot: usize) -> io::Result<()> {
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

    // ANCHOR: reap
    /// Collects every exited worker (SIGCHLD may stand for several).
    pub(super) fn reap(&mut self) {
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
    pub(super) fn maintain(&mut self) {
        if self.backoff_until.is_some_and(|t| Instant::now() < t) || self.fatal {
            return;
        }
        // A worker told to stop by someone else (`kill -TERM` of its pid)
        // marks itself retiring: retire it properly (close its channel, so
        // that it can finish) and let it be replaced below.
        let stopping: Vec<usize> = self
            .active()
            .filter(|(i, _)| self.board.slot(*i).state() == State::Retiring)
            .map(|(i, _)| i)
            .collect();
        for slot in stopping {
            log::warn!("worker {slot} is stopping unasked (a signal from outside?); replacing it");
            // No SIGTERM of ours: a second one makes a worker exit at once.
            self.let_go(slot);
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
    pub(super) fn retire(&mut self, slot: usize) {
        // Once only: a second SIGTERM makes a worker exit at once (a stop
        // during a roll must not cut the retiring workers short).
        if self.children[slot].as_ref().is_none_or(|c| c.retiring) {
            return;
        }
        if let Some(pid) = self.let_go(slot) {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    /// Stops giving the worker in `slot` work: marks it retiring and closes
    /// its channel, whose end lets it finish. Returns its pid.
    fn let_go(&mut self, slot: usize) -> Option<Pid> {
        let child = self.children[slot].as_mut()?;
        child.retiring = true;
        child.channel = None;
        self.board.slot(slot).set_state(State::Retiring);
        Some(child.pid)
    }

    // ANCHOR: replace
    /// Replaces the worker in `slot`: the new one runs before the old one
    /// stops taking work, so no connection finds nobody to serve it.
    pub(super) fn replace(&mut self, slot: usize) -> io::Result<()> {
        let new = self.spawn()?;
        self.wait_running(new)?;
        self.retire(slot);
        Ok(())
    }
    // ANCHOR_END: replace

    /// `--max-requests-per-worker`: replaces workers past their quota.
    pub(super) fn recycle(&mut self) {
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

    /// A reload that cannot be applied: said in the log, counted on the
    /// status page, and the running configuration stays.
    fn refuse_reload(&self, e: &dyn std::fmt::Display) {
        log::error!("reload: {e}; keeping the running configuration");
        self.board
            .master()
            .reloads_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    // ANCHOR: reload
    /// SIGHUP: re-reads the command line and its `--config` file. If the
    /// new configuration is valid, every worker is replaced, one by one, by
    /// a worker forked with it; if not, the error is logged and nothing
    /// changes.
    pub(super) fn reload(&mut self) {
        let new: Args = match common::config::load_from(self.argv.clone()) {
            Ok(a) => a,
            Err(e) => {
                self.refuse_reload(&e);
                return;
            }
        };
        if let Err(e) = check(&new) {
            self.refuse_reload(&e);
            return;
        }
        // What the master itself holds cannot change without a restart
        // (the listening socket, how it is shared, who runs): everything
        // else reaches the workers, since every one of them is replaced.
        let applies = |key: &str| !RESTART_ONLY.contains(&key) && key != "accept";
        let Reloaded {
            config: new,
            changed,
            restart,
        } = match compare(&self.args, new, applies) {
            Ok(r) => r,
            Err(e) => {
                self.refuse_reload(&e);
                return;
            }
        };
        // The master's own error log moves first (the new workers inherit
        // it); each new worker opens the access log the new file names.
        let logs_of = |a: &Args| {
            let h = &a.http;
            (
                h.error_log.clone(),
                h.log_level.clone(),
                h.log_max_bytes,
                h.log_keep,
            )
        };
        if logs_of(&new) != logs_of(&self.args) {
            if let Err(e) = new
                .http
                .log_settings()
                .and_then(|s| common::logging::switch_error_log(&s))
            {
                self.refuse_reload(&e);
                return;
            }
        }
        self.board
            .master()
            .reloads_applied
            .fetch_add(1, Ordering::Relaxed);
        self.args = new;
        self.size = match self.args.sizing() {
            // A self-sizing pool keeps its size, within the new bounds.
            Some(s) => self.size.clamp(s.min_workers, s.max_workers),
            None => self.args.worker_count().min(MAX_WORKERS),
        };
        log_reload(&changed, &restart, "; rolling the workers");
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
}
