//! The master: it holds the listener, forks the workers, hands each
//! accepted connection to one of them, and supervises them. It serves no
//! request itself, and it never starts a thread (see `spawn`).
//!
//! Its loop waits on two things in one `mio::Poll`: the listener, and the
//! read end of a *self-pipe* that signal-hook's handler writes a byte to
//! when a signal comes, so that a signal is one more event of the loop,
//! handled outside the handler.

use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::raw::c_int;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use mio::net::{TcpListener as MioListener, TcpStream, UnixStream as MioUnixStream};
use mio::{Events, Interest, Poll, Token};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::worker;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);

/// The signals the master handles.
// STEP 2: SIGCHLD. STEP 3: SIGHUP. STEP 4: SIGTERM and SIGINT.
const HANDLED: &[c_int] = &[];

/// A flag that SIGTERM and SIGINT set: how a worker (or a process that
/// serves without a master) is told to stop.
pub fn stop_on_sigterm() -> io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    // STEP 4: register `stop` for SIGTERM and SIGINT
    // (`signal_hook::flag::register`): they then start the loop's drain
    // instead of killing the process.
    Ok(stop)
}

/// A running worker, as the master knows it.
struct Worker {
    pid: Pid,
    /// The master's end of the worker's socket pair (non-blocking).
    channel: UnixStream,
}

pub struct Master {
    cfg: worker::Config,
    poll: Poll,
    /// `None` in a worker, and once the master shuts down.
    listener: Option<MioListener>,
    /// `None` in a worker.
    signals: Option<SignalDelivery<MioUnixStream, SignalOnly>>,
    /// The workers that get new connections.
    workers: Vec<Worker>,
    /// The last worker given a connection (round robin).
    next: usize,
}

impl Master {
    /// Becomes the master of `workers` workers that serve with `cfg`.
    pub fn start(listener: TcpListener, workers: usize, cfg: worker::Config) -> io::Result<Master> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        let mut listener = MioListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        // The self-pipe: signal-hook's handler writes a byte to `write`,
        // which wakes the poll on `read`; `pending()` then says which of
        // the HANDLED signals came.
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let mut read = MioUnixStream::from_std(read);
        poll.registry()
            .register(&mut read, SIGNALS, Interest::READABLE)?;
        let signals = SignalDelivery::with_pipe(read, write, SignalOnly, HANDLED)?;
        let mut master = Master {
            cfg,
            poll,
            listener: Some(listener),
            signals: Some(signals),
            workers: Vec::new(),
            next: 0,
        };
        for _ in 0..workers {
            master.spawn()?;
        }
        Ok(master)
    }

    /// The master's loop; returns once it has shut down.
    pub fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => {
                        for signal in self.pending_signals() {
                            match signal {
                                SIGCHLD => self.reap(),
                                SIGHUP => self.reload(),
                                SIGTERM | SIGINT => return self.shutdown(),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The signals that came since the last call (each once).
    fn pending_signals(&mut self) -> Vec<c_int> {
        match &mut self.signals {
            Some(signals) => signals.pending().collect(),
            None => Vec::new(),
        }
    }

    /// Accepts every waiting connection (until `WouldBlock`).
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => self.dispatch(stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    eprintln!("master: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Forks one worker and adds it to the rotation.
    fn spawn(&mut self) -> io::Result<()> {
        // STEP 1: fork a worker.
        // - First a socket pair (`UnixStream::pair`): the master keeps one
        //   end, the worker gets the other. Make the master's end
        //   non-blocking: a worker that stops reading must not stop the
        //   master (a full channel is then `WouldBlock`: try another).
        // - Then `unsafe { fork() }` (`nix::unistd::fork`), under a
        //   `// SAFETY:` comment that says why it is sound here.
        // - In the child: drop the master's end, and
        //   `std::process::exit(self.become_worker(worker_end))`.
        // - In the parent: drop the worker's end, and push a `Worker` into
        //   `self.workers`.
        Err(io::Error::other("spawn: not written yet (STEP 1)"))
    }

    /// In the child, right after `fork`: lets go of what is the master's,
    /// then runs the worker's loop. Returns the exit status.
    fn become_worker(&mut self, channel: UnixStream) -> i32 {
        // STEP 1: in this order:
        // - `stop_on_sigterm()`, the worker's own flag (STEP 4 makes it
        //   work; it comes first: a signal left with no action at all is
        //   ignored, so a SIGTERM must always find one of the two);
        // - drop the master's signal delivery (`self.signals = None`
        //   unregisters its actions);
        // - drop the listener: only the master accepts;
        // - drop the other workers' channels (`self.workers.clear()`);
        // - `worker::run(Feed::Channel(channel), &self.cfg, &stop)`, and
        //   return 0 if it ended well, 1 if not.
        let _ = channel; // (delete this line: it only silences "unused")
        1
    }

    /// Hands `stream` to one of the workers. The master's copy is closed
    /// when `stream` drops, at the end.
    fn dispatch(&mut self, stream: TcpStream) {
        // STEP 1: send `stream` to the next worker in turn (round robin,
        // with `self.next`) with `fdpass::send_fd`. If that fails (a full
        // channel, a worker that has exited), try the next one; if none
        // takes it, write `http::error_response(503)` to it.
        let _ = stream; // (delete this line)
    }

    /// SIGCHLD: collects the children that exited, and replaces the
    /// workers that died unasked.
    fn reap(&mut self) {
        // STEP 2: `waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))`
        // in a loop, until `StillAlive` or `ECHILD`: one SIGCHLD may stand
        // for several children. A pid still in `self.workers` died unasked
        // (a crash, `kill -9`): take it out (that closes its channel) and
        // `spawn` another.
    }

    /// SIGHUP: replaces every worker without losing a request.
    fn reload(&mut self) {
        // STEP 3: spawn as many new workers as there are now, *then* take
        // the old ones out of `self.workers`: dropping a worker's channel
        // is the end of its stream, and its loop then takes no more
        // connections, finishes those it holds, and exits. Remember their
        // pids (a `retiring` list), so that `reap` does not replace them
        // when they exit, and so that STEP 4 can wait for them.
    }

    /// SIGTERM: stops accepting, lets every worker finish, and returns.
    fn shutdown(&mut self) -> io::Result<()> {
        // STEP 4: close the listener (new connections are then refused);
        // retire every worker and send each child still running SIGTERM
        // (`nix::sys::signal::kill`); wait for them, reaping on SIGCHLD,
        // for `self.cfg.grace_period` at most; SIGKILL those still
        // running then, and return Ok.
        Ok(())
    }
}
