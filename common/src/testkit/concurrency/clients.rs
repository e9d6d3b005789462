//! The clients the stage 3 to 5 checks are made of: a new client timed
//! against [`BOUND`](super::BOUND), idle connections held as a browser
//! holds them ([`Held`]), a keep-alive load that tallies what it saw
//! ([`Load`]), a slowloris crowd ([`Trickle`]), and the shell scripts a
//! failure prints to set its scene again ([`Scene`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{BOUND, Ctx, NORMAL, ROUND_BOUND};
use crate::testkit::check::{CheckResult, Failure, fail};
use crate::testkit::client::Client;
use crate::testkit::procfs;

pub(super) fn get_request(path: &str, close: bool) -> String {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{connection}\r\n")
}

/// Sets both timeouts of `c` to `t` (at least a millisecond).
pub(super) fn set_timeouts(c: &Client, t: Duration) {
    let t = Some(t.max(Duration::from_millis(1)));
    let _ = c.stream.set_read_timeout(t);
    let _ = c.stream.set_write_timeout(t);
}

/// A new client asks for `/index.html` and must have its whole answer
/// within [`BOUND`]; `while_` says what else is going on, for the failure.
/// Returns how long it took.
pub(super) fn new_client_is_served(addr: SocketAddr, while_: &str) -> Result<Duration, Failure> {
    let started = Instant::now();
    let mut c =
        Client::try_connect(addr).map_err(|e| fail(format!("a new connection {while_}: {e}")))?;
    set_timeouts(&c, BOUND);
    c.send(get_request("/index.html", true).as_bytes());
    match c.try_response(false) {
        Ok(r) if r.status == 200 && started.elapsed() <= BOUND => Ok(started.elapsed()),
        Ok(r) if r.status == 200 => Err(fail(format!(
            "an answer within {BOUND:?} {while_}; it took {:.1?}",
            started.elapsed()
        ))),
        Ok(r) => Err(fail(format!(
            "200 for /index.html {while_}, not {}",
            r.status
        ))),
        Err(e) => Err(fail(format!(
            "an answer within {BOUND:?} {while_}, not {e} after {:.1?}: the server is not \
             serving this client while the others hold it",
            started.elapsed()
        ))),
    }
}

/// [`NORMAL`] clients one after the other, each served within [`BOUND`];
/// returns the slowest.
pub(super) fn normal_clients_are_served(
    addr: SocketAddr,
    while_: &str,
) -> Result<Duration, Failure> {
    let mut slowest = Duration::ZERO;
    for _ in 0..NORMAL {
        slowest = slowest.max(new_client_is_served(addr, while_)?);
    }
    Ok(slowest)
}

/// Opens `n` keep-alive connections in batches, each asking for
/// `/index.html` once and reading its answer. Returns the connections whose
/// answer came and did not say `Connection: close`, held as a client holds
/// them ([`Held`]), and how many did say it (or got no answer). Stops
/// opening more once more than `give_up` were dropped.
pub(super) fn open_idle(
    addr: SocketAddr,
    n: usize,
    give_up: usize,
) -> Result<(Held, usize), Failure> {
    const BATCH: usize = 200;
    let request = get_request("/index.html", false);
    let mut kept = Vec::with_capacity(n);
    let mut dropped = 0;
    let mut opened = 0;
    while opened < n && dropped <= give_up {
        let mut batch = Vec::new();
        for _ in 0..BATCH.min(n - opened) {
            let mut c = Client::try_connect(addr).map_err(|e| {
                fail(format!(
                    "{n} connections open at once; connection {} failed: {e}",
                    opened + batch.len() + 1
                ))
            })?;
            c.send(request.as_bytes());
            batch.push(c);
        }
        opened += batch.len();
        let deadline = Instant::now() + ROUND_BOUND;
        for mut c in batch {
            set_timeouts(&c, deadline.saturating_duration_since(Instant::now()));
            match c.try_response(false) {
                Ok(r) if r.status == 200 && r.header("Connection") != Some("close") => {
                    kept.push(c.stream)
                }
                _ => dropped += 1,
            }
        }
    }
    Ok((Held::start(kept), dropped))
}

/// The server's processes and what they hold, for notes and failures.
pub(super) fn describe_holders(ctx: &Ctx) -> String {
    let tree = procfs::tree(ctx.pid);
    let held = procfs::holders(ctx.pid, ctx.addr.port());
    if held.is_empty() {
        return "no process of the command holds a socket of the port".into();
    }
    held.iter()
        .map(|(pid, h)| {
            let name = tree
                .iter()
                .find(|p| p.pid == *pid)
                .map_or("?", |p| p.name.as_str());
            let what = match (h.listening, h.connections) {
                (0, c) => format!("{c} connection(s)"),
                (_, 0) => "the listener".to_string(),
                (_, c) => format!("the listener and {c} connection(s)"),
            };
            format!("pid {pid} ({name}): {what}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits up to `limit` for `ready`; false if it never held.
pub(super) fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a [`Load`] has seen so far.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Complete answers with 200.
    ok: AtomicU64,
    /// Complete answers with another status.
    other: AtomicU64,
    /// A reused keep-alive connection closed before a byte of the answer:
    /// retried on a new one, as every HTTP client does (a server may close
    /// an idle connection at any time).
    retried: AtomicU64,
    /// No answer on a fresh connection, or a failed write on one.
    unanswered: AtomicU64,
    /// An answer that started and was cut short.
    cut: AtomicU64,
}

/// The totals of the load (keep-alive clients) a signal check runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// Complete answers with 200.
    pub ok: u64,
    /// Complete answers with another status.
    pub other: u64,
    /// Idle connections closed by the server and retried.
    pub retried: u64,
    /// Requests that got no answer on a fresh connection.
    pub unanswered: u64,
    /// Answers cut short.
    pub cut: u64,
}

impl Seen {
    /// Requests that failed: no answer on a fresh connection, or cut.
    pub fn lost(&self) -> u64 {
        self.unanswered + self.cut
    }
}

/// Keep-alive clients sending `GET path` back to back until stopped or
/// refused (the listener is gone).
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub(super) fn start(addr: SocketAddr, conns: usize, path: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let threads = (0..conns)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let t = Arc::clone(&tally);
                let request = get_request(path, false);
                std::thread::spawn(move || {
                    let mut conn: Option<Client> = None;
                    while !stop.load(Ordering::SeqCst) {
                        let (mut client, reused) = match conn.take() {
                            Some(c) => (c, true),
                            None => match Client::try_connect(addr) {
                                Ok(c) => (c, false),
                                Err(_) => break,
                            },
                        };
                        if client.stream.write_all(request.as_bytes()).is_err() {
                            let n = if reused { &t.retried } else { &t.unanswered };
                            n.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        match client.try_response(false) {
                            Ok(r) => {
                                let n = if r.status == 200 { &t.ok } else { &t.other };
                                n.fetch_add(1, Ordering::SeqCst);
                                if r.header("Connection") != Some("close") {
                                    conn = Some(client);
                                }
                            }
                            Err(_) if client.buffered() > 0 => {
                                t.cut.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) if reused => {
                                t.retried.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => {
                                t.unanswered.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            threads,
        }
    }

    pub(super) fn ok(&self) -> u64 {
        self.tally.ok.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` until `n` more answers than now have come.
    pub(super) fn progresses(&self, n: u64, limit: Duration) -> bool {
        let start = self.ok();
        wait_for(limit, || self.ok() >= start + n)
    }

    pub(super) fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let t = &self.tally;
        Seen {
            ok: t.ok.load(Ordering::SeqCst),
            other: t.other.load(Ordering::SeqCst),
            retried: t.retried.load(Ordering::SeqCst),
            unanswered: t.unanswered.load(Ordering::SeqCst),
            cut: t.cut.load(Ordering::SeqCst),
        }
    }
}

/// Connections that each send a request head one byte at a time, every
/// 100 ms, and never finish it; closed on drop. (The checker's own: the
/// test kit's `abuse::Slowloris` takes the tests' many-connections lock,
/// which a test running the checker already holds.)
pub(super) struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    /// Opens `n` connections (returning how many opened) and trickles.
    pub(super) fn start(addr: SocketAddr, n: usize) -> (Trickle, usize) {
        let mut conns: Vec<TcpStream> = (0..n)
            .filter_map(|_| {
                let mut s = TcpStream::connect_timeout(&addr, BOUND).ok()?;
                s.set_write_timeout(Some(Duration::from_millis(200))).ok()?;
                s.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                    .ok()?;
                Some(s)
            })
            .collect();
        let opened = conns.len();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                // A failed write: the server dropped it (a timeout).
                conns.retain_mut(|s| s.write_all(b"a").is_ok());
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        (
            Trickle {
                stop,
                thread: Some(thread),
            },
            opened,
        )
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connections held open as a real client holds them: their answers are
/// read (and counted), and a connection the server closes is closed on
/// this side too, at once, as a browser does. (A client that left the
/// server's FIN unanswered would hold a lingering server's thread until
/// its linger timeout, and grade the checker instead of the server.)
pub(super) struct Held {
    stop: Arc<AtomicBool>,
    /// Connections that have received an answer (any byte).
    answered: Arc<AtomicU64>,
    /// Connections still open.
    open: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Held {
    pub(super) fn start(conns: Vec<TcpStream>) -> Held {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(conns.len() as u64));
        let (flag, got, left) = (Arc::clone(&stop), Arc::clone(&answered), Arc::clone(&open));
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<(TcpStream, bool)> = conns.into_iter().map(|c| (c, false)).collect();
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::SeqCst) && !conns.is_empty() {
                let ready: Vec<usize> = {
                    let mut fds: Vec<PollFd<'_>> = conns
                        .iter()
                        .map(|(c, _)| PollFd::new(c.as_fd(), PollFlags::POLLIN))
                        .collect();
                    if poll(&mut fds, PollTimeout::from(50u16)).is_err() {
                        continue;
                    }
                    fds.iter()
                        .enumerate()
                        .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                        .map(|(i, _)| i)
                        .collect()
                };
                let mut closed = Vec::new();
                for i in ready {
                    let (c, seen) = &mut conns[i];
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => closed.push(i),
                        Ok(_) => {
                            if !*seen {
                                *seen = true;
                                got.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
                for i in closed.into_iter().rev() {
                    conns.swap_remove(i);
                    left.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
        Held {
            stop,
            answered,
            open,
            thread: Some(thread),
        }
    }

    pub(super) fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    pub(super) fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn sum_threads(pids: impl IntoIterator<Item = u32>) -> usize {
    pids.into_iter().map(procfs::threads).sum()
}

pub(super) fn sum_rss(pids: impl IntoIterator<Item = u32>) -> u64 {
    pids.into_iter().map(procfs::rss_kib).sum()
}

/// A keep-alive GET of `/index.html`, as `printf` text.
pub(super) const KEEP: &str = r"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n";
/// The same with `Connection: close`.
pub(super) const CLOSE: &str = r"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
/// Half a request head.
pub(super) const HALF: &str = r"GET /index.html HTTP/1.1\r\nHost: t\r\n";

/// What a failure's script needs to know about the server.
pub(super) struct Scene {
    /// `127.0.0.1 PORT`, for `nc`.
    pub(super) a: String,
    /// `127.0.0.1:PORT`, for a URL.
    pub(super) a_url: String,
    /// The port.
    pub(super) port: u16,
    /// The process the signals go to.
    pub(super) main: u32,
    /// A new client, timed.
    pub(super) newcomer: String,
}

impl Scene {
    pub(super) fn of(ctx: &Ctx) -> Scene {
        let port = ctx.addr.port();
        let a = format!("{} {port}", ctx.addr.ip());
        Scene {
            newcomer: format!("time (printf '{CLOSE}' | nc {a})"),
            a,
            a_url: ctx.addr.to_string(),
            port,
            main: procfs::main_pid(ctx.pid, port),
        }
    }
}

/// A failure of `result` gets `script` to set its scene again (unless it
/// has one).
pub(super) fn with_scene(result: CheckResult, script: impl FnOnce() -> String) -> CheckResult {
    result.map_err(|f| {
        if f.script.is_some() {
            f
        } else {
            f.with_script(script())
        }
    })
}
