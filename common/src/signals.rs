//! Signals, turned into flags and a readable file descriptor.
//!
//! A signal handler may do almost nothing safely: no locks, no allocation, no
//! logging. So the handlers installed here (by `signal-hook`) only set an
//! atomic flag and write one byte to a socket pair — the classic *self-pipe
//! trick*. The main loop of each stage polls that socket next to its listener,
//! so a blocked `poll`/`epoll_wait` wakes up at once, and then reads the flags
//! at its leisure, outside the handler.
//!
//! - SIGINT, SIGTERM: graceful shutdown. A *second* one while the first is
//!   still being handled exits at once with status 1 (what `nginx -s stop`
//!   users expect from pressing Ctrl-C twice).
//! - SIGUSR1: reopen the log files (after `logrotate` moved them).
//! - SIGHUP: reload; only stage 5 acts on it, the others just note it.
//! - SIGCHLD: a child process exited; only stage 5's master has children.
//!
//! A process that forks must not let its children share these handlers and
//! this pipe with it: a worker's SIGTERM would then wake the master. The
//! child calls [`Signals::uninstall`] and installs its own.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use signal_hook::SigId;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::{flag, low_level};

/// The process's signal state: flags set by the handlers and the read end of
/// the self-pipe that wakes a poller.
#[derive(Debug)]
pub struct Signals {
    /// Set by SIGINT/SIGTERM (or [`Signals::trigger_shutdown`]); never reset.
    shutdown: Arc<AtomicBool>,
    /// Set by SIGUSR1; the log writer takes it (swap to false) and reopens.
    reopen: Arc<AtomicBool>,
    /// Set by SIGHUP; taken by whoever implements reload.
    reload: Arc<AtomicBool>,
    /// Set by SIGCHLD; taken by a process that supervises children.
    child: Arc<AtomicBool>,
    /// Every handler registered, so that a forked child can remove them.
    ids: Vec<SigId>,
    /// Readable whenever a signal arrived since the last [`Signals::drain`].
    wake_rx: UnixStream,
    /// Kept so that [`Signals::trigger_shutdown`] can wake the poller too.
    wake_tx: UnixStream,
}

impl Signals {
    /// Installs the handlers. Call it once, early, from the main thread.
    pub fn install() -> io::Result<Signals> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        let child = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            // Order matters: the conditional exit must be registered first, so
            // that it sees the flag as the *previous* signal left it.
            ids.push(flag::register_conditional_shutdown(
                sig,
                1,
                Arc::clone(&shutdown),
            )?);
            ids.push(flag::register(sig, Arc::clone(&shutdown))?);
        }
        ids.push(flag::register(SIGUSR1, Arc::clone(&reopen))?);
        ids.push(flag::register(SIGHUP, Arc::clone(&reload))?);
        ids.push(flag::register(SIGCHLD, Arc::clone(&child))?);
        for sig in [SIGINT, SIGTERM, SIGUSR1, SIGHUP, SIGCHLD] {
            ids.push(low_level::pipe::register(sig, wake_tx.try_clone()?)?);
        }
        Ok(Signals {
            shutdown,
            reopen,
            reload,
            child,
            ids,
            wake_rx,
            wake_tx,
        })
    }

    /// Removes this process's handlers and closes the pipe: for a child
    /// after `fork`, before it installs its own. Signals arriving in between
    /// are ignored (signal-hook keeps its handler installed with no action).
    pub fn uninstall(self) {
        for id in &self.ids {
            low_level::unregister(*id);
        }
    }

    /// Returns true, once, after one or more SIGCHLD.
    pub fn take_child_exited(&self) -> bool {
        self.child.swap(false, Ordering::SeqCst)
    }

    /// True once a graceful shutdown was asked for.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Asks for a graceful shutdown from inside the program (tests, or a
    /// fatal error in one part that should stop the whole server cleanly).
    pub fn trigger_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        // A full pipe already wakes the poller; nothing else can go wrong here.
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// A handle on the shutdown flag for threads that only need to read it.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// A handle on the log-reopen flag, for the log writer thread.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.reopen)
    }

    /// Returns true, once, after each SIGHUP.
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// The descriptor to poll for readability next to a listener.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_rx.as_fd()
    }

    /// A second handle on the self-pipe, for an event loop that wants to own
    /// its source (mio registers a `UnixStream`).
    pub fn wake_stream(&self) -> io::Result<UnixStream> {
        self.wake_rx.try_clone()
    }

    /// Empties the self-pipe so that the next poll blocks again.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.wake_rx).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// Blocks until `fd` is readable (returns `Ok(true)`) or a signal arrives
    /// or `timeout` passes (`Ok(false)`). This is how the blocking stages wait
    /// in `accept` without being deaf to SIGTERM.
    pub fn wait_readable(&self, fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(self.wake_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        // After a shutdown the byte stays in the pipe: every thread that
        // polls it from now on wakes at once. Other signals are drained.
        if fds[1].any().unwrap_or(false) && !self.shutdown_requested() {
            self.drain();
        }
        Ok(fds[0].any().unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn trigger_wakes_a_waiting_poller() {
        let signals = Signals::install().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!signals.shutdown_requested());
        signals.trigger_shutdown();
        // Without the wake-up this would block forever: nobody connects.
        let readable = signals.wait_readable(listener.as_fd(), None).unwrap();
        assert!(!readable);
        assert!(signals.shutdown_requested());
    }

    #[test]
    fn wait_readable_reports_a_pending_connection() {
        let signals = Signals::install().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let readable = signals.wait_readable(listener.as_fd(), None).unwrap();
        assert!(readable);
    }
}
