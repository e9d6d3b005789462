//! The stage 3, 4 and 5 rubrics: what the concurrency stages add, graded
//! from outside the server, for a server written in any language
//! (`bench check --stage 3|4|5 -- COMMAND`).
//!
//! Stage 2's rubric grades *what* a server answers; these grade *how many
//! at once, and for how long*: a client that stalls, a crowd of idle or
//! trickling connections, an overload, a signal under load. Each check is a
//! [`Check`] on a [`Ctx`] like the stage 2 checks, with a milestone and a
//! [`Level`]; [`rubric`] gives a stage's list:
//!
//! - **Stage 3** ([`STAGE3`]): half a request does not stop others; idle
//!   keep-alive clients do not stop a new one for longer than [`BOUND`];
//!   an overload gets 503 or a wait in a queue; SIGTERM under load answers
//!   whole and exits within the grace period. Extra credit: hundreds of
//!   keep-alive connections all progress, and trickling connections leave
//!   normal clients served — a classic pool, a thread per connection for
//!   as long as it lives, cannot do either, and that is the lesson that
//!   leads to stage 4.
//! - **Stage 4** ([`STAGE4`]): stage 3's checks with its extra credit
//!   required, and 10,000 idle connections held (memory per connection
//!   reported), threads that do not grow with connections, a stalled head
//!   timed out, a slow reader that stops no one.
//! - **Stage 5** ([`STAGE5`]): stage 4's, and several processes serve the
//!   port, a worker killed with `kill -9` is replaced, SIGHUP keeps
//!   serving.
//!
//! The server's processes, threads, sockets and memory are read from
//! `/proc` ([`super::procfs`]), starting from the pid the checker spawned.
//! Every figure a check measures is reported as a note ([`note`]), never
//! compared with a speed: the bounds are generous upper limits that only a
//! server that stops serving exceeds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::check::{Check, CheckResult, Failure, Level, fail, note};
use super::client::Client;
use super::procfs;

/// How long a new client may wait for its answer while others hold, stall
/// or trickle: far more than any server that serves it takes, far less
/// than the timeouts a server that does not serve it waits out.
pub const BOUND: Duration = Duration::from_secs(3);
/// Idle keep-alive clients held while a new one asks (more than a small
/// pool has threads).
pub const HOLDERS: usize = 64;
/// Clients that arrive at once in the overload check.
pub const OVERLOAD: usize = 256;
/// How long the overload check waits for all of them.
const OVERLOAD_WAIT: Duration = Duration::from_secs(20);
/// Keep-alive connections that must all progress.
pub const HUNDREDS: usize = 300;
/// Rounds of one request on each of them.
const ROUNDS: usize = 3;
/// How long one round may take.
const ROUND_BOUND: Duration = Duration::from_secs(5);
/// Trickling (slowloris) connections.
pub const TRICKLERS: usize = 128;
/// Normal clients asked to be served alongside a crowd.
const NORMAL: usize = 20;
/// Connections of the load in the signal checks.
pub const LOAD: usize = 8;
/// Connections opened to see whether threads grow (at most).
pub const THREAD_PROBE: usize = 500;
/// The large file the checker adds to the fixture for the slow reader.
pub const LARGE: &str = "large.bin";
/// Its size: more than any socket buffers hold.
const LARGE_SIZE: u64 = 64 << 20;

/// What a stage 3 to 5 check gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Where the server accepts connections.
    pub addr: SocketAddr,
    /// The pid of the process the checker spawned (a wrapper or the
    /// server itself): the root of the tree read from `/proc`.
    pub pid: u32,
    /// The server's header timeout (`--header-timeout`), for the stalled
    /// head check.
    pub header_timeout: Duration,
    /// The server's grace period after SIGTERM (`--grace-period`).
    pub grace_period: Duration,
    /// Idle connections to hold in the stage 4 check (`--idle-connections`).
    pub idle_connections: usize,
}

/// The milestones of the concurrency stages, as the course names them.
pub mod milestone {
    /// Stage 3: serving clients concurrently.
    pub const THREADS: &str = "Thread pool for handling multiple connections";
    /// Stage 3: overload.
    pub const QUEUING: &str = "Connection queuing during high load";
    /// Stage 4: one loop, many connections.
    pub const EVENT_LOOP: &str = "Working epoll/kqueue-based event loop";
    /// Stage 4: nobody waits for a slow peer.
    pub const NON_BLOCKING: &str = "Non-blocking socket I/O";
    /// Stage 4: timers.
    pub const TIMEOUTS: &str = "Connection timeout handling";
    /// Stage 5: processes.
    pub const PREFORK: &str = "Pre-fork worker process model";
    /// Stage 5: supervision.
    pub const MONITORING: &str = "Process monitoring and management";
    /// Stage 5: reload.
    pub const RECYCLING: &str = "Graceful worker process recycling";
    /// Every stage: the last check, which stops the server.
    pub const SHUTDOWN: &str = "Graceful shutdown under load";
}

macro_rules! check {
    ($name:ident, $milestone:ident, $level:ident, $about:literal) => {
        Check {
            name: stringify!($name),
            milestone: milestone::$milestone,
            level: Level::$level,
            about: $about,
            run: $name,
        }
    };
}

macro_rules! stage3_checks {
    ($extra:ident, $extra_milestone:ident) => {
        [
            check!(
                half_request_does_not_stop_others,
                THREADS,
                Required,
                "a client that sends half a request head does not stop another from being served"
            ),
            check!(
                keepalive_holders_do_not_stop_a_new_client,
                THREADS,
                Required,
                "64 idle keep-alive clients do not keep a new client waiting longer than 3 s"
            ),
            check!(
                overload_gets_503_or_a_queue_wait,
                QUEUING,
                Required,
                "256 clients at once each get 200 or 503, none a reset or a hang, and the server lives"
            ),
            check!(
                hundreds_of_keepalive_connections_progress,
                $extra_milestone,
                $extra,
                "300 keep-alive connections each get 3 answers in turn, none closed or left waiting"
            ),
            check!(
                slowloris_leaves_clients_served,
                $extra_milestone,
                $extra,
                "128 connections trickling a header byte at a time leave normal clients served within 3 s"
            ),
        ]
    };
}

const SIGTERM_CHECK: Check<Ctx> = check!(
    sigterm_drains_under_load,
    SHUTDOWN,
    Required,
    "SIGTERM under load: every answer already started is whole, and the server exits within its grace period"
);

const STAGE3_LIST: [Check<Ctx>; 5] = stage3_checks!(Extra, THREADS);
const STAGE4_FROM3: [Check<Ctx>; 5] = stage3_checks!(Required, EVENT_LOOP);

macro_rules! stage4_checks {
    () => {
        [
            check!(
                idle_connections_held_while_new_clients_are_served,
                EVENT_LOOP,
                Required,
                "10,000 idle keep-alive connections stay open while new clients are served (memory per connection reported)"
            ),
            check!(
                threads_do_not_grow_with_connections,
                EVENT_LOOP,
                Required,
                "the server's thread count does not grow with its connections (a runtime's fixed set is fine)"
            ),
            check!(
                slow_reader_does_not_stop_others,
                NON_BLOCKING,
                Required,
                "a client that stops reading a large file does not stop another from being served"
            ),
            check!(
                stalled_head_gets_408_or_close,
                TIMEOUTS,
                Required,
                "a request head that stalls gets 408 or a close within the header timeout"
            ),
        ]
    };
}

const STAGE5_OWN: [Check<Ctx>; 4] = [
    check!(
        several_processes_serve_the_port,
        PREFORK,
        Required,
        "more than one process started by the command holds the port's sockets"
    ),
    check!(
        killed_worker_is_replaced,
        MONITORING,
        Required,
        "kill -9 of a worker under load: a replacement appears, the load goes on, and no more requests fail than the worker held"
    ),
    check!(
        sighup_keeps_serving,
        RECYCLING,
        Required,
        "SIGHUP under load: the server keeps serving, with no more errors than connections open"
    ),
    check!(
        sighup_loses_nothing,
        RECYCLING,
        Extra,
        "SIGHUP under load loses no request at all"
    ),
];

/// The stage 3 rubric.
pub static STAGE3: [Check<Ctx>; 6] = {
    let [a, b, c, d, e] = STAGE3_LIST;
    [a, b, c, d, e, SIGTERM_CHECK]
};

/// The stage 4 rubric: stage 3's with its extra credit required, and its
/// own.
pub static STAGE4: [Check<Ctx>; 10] = {
    let [a, b, c, d, e] = STAGE4_FROM3;
    let [f, g, h, i] = stage4_checks!();
    [a, b, c, d, e, f, g, h, i, SIGTERM_CHECK]
};

/// The stage 5 rubric: stage 4's and its own.
pub static STAGE5: [Check<Ctx>; 14] = {
    let [a, b, c, d, e] = STAGE4_FROM3;
    let [f, g, h, i] = stage4_checks!();
    let [j, k, l, m] = STAGE5_OWN;
    [a, b, c, d, e, f, g, h, i, j, k, l, m, SIGTERM_CHECK]
};

/// The rubric of `stage` (3, 4 or 5).
pub fn rubric(stage: u8) -> &'static [Check<Ctx>] {
    match stage {
        3 => &STAGE3,
        4 => &STAGE4,
        _ => &STAGE5,
    }
}

/// The milestones of `stage`'s rubric in the order the course teaches
/// them; the shutdown is last, because its check stops the server.
pub fn milestones(stage: u8) -> Vec<&'static str> {
    use milestone::*;
    match stage {
        3 => vec![THREADS, QUEUING, SHUTDOWN],
        4 => vec![
            THREADS,
            QUEUING,
            EVENT_LOOP,
            NON_BLOCKING,
            TIMEOUTS,
            SHUTDOWN,
        ],
        _ => vec![
            THREADS,
            QUEUING,
            EVENT_LOOP,
            NON_BLOCKING,
            TIMEOUTS,
            PREFORK,
            MONITORING,
            RECYCLING,
            SHUTDOWN,
        ],
    }
}

/// Whether the check called `name` stops the server (the checker expects
/// it to exit then, and runs it last).
pub fn ends_the_server(name: &str) -> bool {
    name == SIGTERM_CHECK.name
}

/// How long a check of these rubrics may take, for a server with `ctx`'s
/// timeouts: the signal checks wait out a grace period, the stalled head
/// a header timeout.
pub fn time_limit(ctx: &Ctx) -> Duration {
    Duration::from_secs(60)
        .max(ctx.grace_period + Duration::from_secs(30))
        .max(ctx.header_timeout * 2 + Duration::from_secs(10))
}

/// Adds what these rubrics need to the fixture root: [`LARGE`], a 64 MiB
/// file (sparse: it costs no disk) for the slow reader.
pub fn add_fixture_files(root: &Path) -> std::io::Result<()> {
    let f = std::fs::File::create(root.join(LARGE))?;
    f.set_len(LARGE_SIZE)
}

// ---------------------------------------------------------------------
// Helpers.

fn get_request(path: &str, close: bool) -> String {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{connection}\r\n")
}

/// Sets both timeouts of `c` to `t` (at least a millisecond).
fn set_timeouts(c: &Client, t: Duration) {
    let t = Some(t.max(Duration::from_millis(1)));
    let _ = c.stream.set_read_timeout(t);
    let _ = c.stream.set_write_timeout(t);
}

/// A new client asks for `/index.html` and must have its whole answer
/// within [`BOUND`]; `while_` says what else is going on, for the failure.
/// Returns how long it took.
fn new_client_is_served(addr: SocketAddr, while_: &str) -> Result<Duration, Failure> {
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
fn normal_clients_are_served(addr: SocketAddr, while_: &str) -> Result<Duration, Failure> {
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
fn open_idle(addr: SocketAddr, n: usize, give_up: usize) -> Result<(Held, usize), Failure> {
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
fn describe_holders(ctx: &Ctx) -> String {
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
fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
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
struct Tally {
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

/// The totals of a [`Load`].
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
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, conns: usize, path: &str) -> Load {
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

    fn ok(&self) -> u64 {
        self.tally.ok.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` until `n` more answers than now have come.
    fn progresses(&self, n: u64, limit: Duration) -> bool {
        let start = self.ok();
        wait_for(limit, || self.ok() >= start + n)
    }

    fn finish(self) -> Seen {
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
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    /// Opens `n` connections (returning how many opened) and trickles.
    fn start(addr: SocketAddr, n: usize) -> (Trickle, usize) {
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
struct Held {
    stop: Arc<AtomicBool>,
    /// Connections that have received an answer (any byte).
    answered: Arc<AtomicU64>,
    /// Connections still open.
    open: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Held {
    fn start(conns: Vec<TcpStream>) -> Held {
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

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    fn open(&self) -> u64 {
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

fn sum_threads(pids: impl IntoIterator<Item = u32>) -> usize {
    pids.into_iter().map(procfs::threads).sum()
}

fn sum_rss(pids: impl IntoIterator<Item = u32>) -> u64 {
    pids.into_iter().map(procfs::rss_kib).sum()
}

/// A keep-alive GET of `/index.html`, as `printf` text.
const KEEP: &str = r"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n";
/// The same with `Connection: close`.
const CLOSE: &str = r"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
/// Half a request head.
const HALF: &str = r"GET /index.html HTTP/1.1\r\nHost: t\r\n";

/// What a failure's script needs to know about the server.
struct Scene {
    /// `127.0.0.1 PORT`, for `nc`.
    a: String,
    /// `127.0.0.1:PORT`, for a URL.
    a_url: String,
    port: u16,
    /// The process the signals go to.
    main: u32,
    /// A new client, timed.
    newcomer: String,
}

impl Scene {
    fn of(ctx: &Ctx) -> Scene {
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
fn with_scene(result: CheckResult, script: impl FnOnce() -> String) -> CheckResult {
    result.map_err(|f| {
        if f.script.is_some() {
            f
        } else {
            f.with_script(script())
        }
    })
}

// ---------------------------------------------------------------------
// Stage 3.

/// Half a request head on one connection; a whole request on another must
/// be answered meanwhile. A sequential server waits for the first client
/// (until its header timeout).
pub fn half_request_does_not_stop_others(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(half_request_does_not_stop_others_here(ctx), || {
        format!("(printf '{HALF}'; sleep 60) | nc {a} &\n{newcomer}")
    })
}

fn half_request_does_not_stop_others_here(ctx: &Ctx) -> CheckResult {
    let mut holder = Client::open(ctx.addr)?;
    holder.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\n");
    let took = new_client_is_served(
        ctx.addr,
        "while another connection holds half a request head",
    )?;
    note(format!(
        "answered in {took:.1?} while another client held half a request"
    ));
    drop(holder);
    Ok(())
}

/// [`HOLDERS`] clients ask once and keep their connections idle; a new
/// client must be answered within [`BOUND`]. A server may close idle
/// connections to make room (our stage 3's `--fair`), or hold them all
/// (stage 4); it may not make the newcomer wait for their timeouts.
pub fn keepalive_holders_do_not_stop_a_new_client(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(keepalive_holders_do_not_stop_a_new_client_here(ctx), || {
        format!(
            "for i in $(seq {HOLDERS}); do (printf '{KEEP}'; sleep 60) | nc {a} > /dev/null & done\n{newcomer}"
        )
    })
}

fn keepalive_holders_do_not_stop_a_new_client_here(ctx: &Ctx) -> CheckResult {
    let request = get_request("/index.html", false);
    let mut conns = Vec::new();
    for _ in 0..HOLDERS {
        if let Ok(mut s) = TcpStream::connect_timeout(&ctx.addr, BOUND)
            && s.write_all(request.as_bytes()).is_ok()
        {
            conns.push(s);
        }
    }
    let opened = conns.len();
    let holders = Held::start(conns);
    // Their answers, for at most BOUND: a sequential server answers one and
    // then waits on it.
    wait_for(BOUND, || holders.answered() >= opened as u64);
    let took = new_client_is_served(
        ctx.addr,
        &format!(
            "while {opened} other clients hold idle keep-alive connections ({} of them were \
             answered)",
            holders.answered(),
        ),
    )?;
    note(format!(
        "answered in {took:.1?} beside {opened} keep-alive clients ({} answered, {} still open)",
        holders.answered(),
        holders.open()
    ));
    Ok(())
}

/// [`OVERLOAD`] clients connect and ask at once; each must get a whole
/// answer, 200 or 503, within [`OVERLOAD_WAIT`] (a wait in a queue is
/// fine), and the server must serve a new client afterwards.
pub fn overload_gets_503_or_a_queue_wait(ctx: &Ctx) -> CheckResult {
    let Scene { a, .. } = Scene::of(ctx);
    with_scene(overload_gets_503_or_a_queue_wait_here(ctx), || {
        format!(
            "for i in $(seq {OVERLOAD}); do printf '{CLOSE}' | nc {a} | head -1 & done | sort | uniq -c"
        )
    })
}

fn overload_gets_503_or_a_queue_wait_here(ctx: &Ctx) -> CheckResult {
    let request = get_request("/index.html", true);
    let started = Instant::now();
    let mut conns = Vec::new();
    for i in 0..OVERLOAD {
        let mut c = Client::try_connect(ctx.addr).map_err(|e| {
            fail(format!(
                "{OVERLOAD} connections at once; connection {} was not accepted: {e}",
                i + 1
            ))
        })?;
        c.send(request.as_bytes());
        conns.push(c);
    }
    let deadline = started + OVERLOAD_WAIT;
    let (mut ok, mut busy) = (0, 0);
    // Each connection is closed once answered, as a client does (a server
    // that lingers after its answer waits for that).
    for (i, mut c) in conns.into_iter().enumerate() {
        set_timeouts(&c, deadline.saturating_duration_since(Instant::now()));
        match c.try_response(false) {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) if r.status == 503 => busy += 1,
            Ok(r) => {
                return Err(fail(format!(
                    "200 or 503 for each of {OVERLOAD} clients at once; client {} got {}",
                    i + 1,
                    r.status
                )));
            }
            Err(e) => {
                return Err(fail(format!(
                    "200 or 503 for each of {OVERLOAD} clients at once, within {OVERLOAD_WAIT:?}; \
                     client {} got no answer ({e}) after {ok} got 200 and {busy} got 503: an \
                     overloaded server answers 503 or lets the client wait, it does not drop \
                     or forget it",
                    i + 1
                )));
            }
        }
    }
    let slowest = started.elapsed();
    new_client_is_served(ctx.addr, "after the overload")?;
    note(format!(
        "{OVERLOAD} clients at once: {ok} got 200, {busy} got 503, the last answer after {slowest:.1?}"
    ));
    Ok(())
}

/// [`HUNDREDS`] keep-alive connections, [`ROUNDS`] rounds of one request
/// on each: every connection must get every answer, none closed and none
/// kept waiting longer than [`ROUND_BOUND`]. A classic pool serves as many
/// connections at once as it has threads: the others wait, or are closed
/// to make room.
pub fn hundreds_of_keepalive_connections_progress(ctx: &Ctx) -> CheckResult {
    let Scene { a, .. } = Scene::of(ctx);
    with_scene(hundreds_of_keepalive_connections_progress_here(ctx), || {
        format!(
            "for i in $(seq {HUNDREDS}); do (for r in 1 2 3; do printf '{KEEP}'; sleep 1; done; sleep 5) | nc {a} | grep -c '^HTTP/1.1 200' & done | sort | uniq -c   # each connection should count 3"
        )
    })
}

fn hundreds_of_keepalive_connections_progress_here(ctx: &Ctx) -> CheckResult {
    let request = get_request("/index.html", false);
    let mut conns = Vec::new();
    for i in 0..HUNDREDS {
        conns.push(Client::try_connect(ctx.addr).map_err(|e| {
            fail(format!(
                "{HUNDREDS} connections open at once; connection {} failed: {e}",
                i + 1
            ))
        })?);
    }
    let mut slowest = Duration::ZERO;
    for round in 1..=ROUNDS {
        let started = Instant::now();
        for c in &mut conns {
            c.send(request.as_bytes());
        }
        let deadline = started + ROUND_BOUND;
        let (mut closed, mut waiting) = (0, 0);
        for c in &mut conns {
            set_timeouts(c, deadline.saturating_duration_since(Instant::now()));
            match c.try_response(false) {
                Ok(r) if r.status == 200 && r.header("Connection") != Some("close") => {}
                Ok(_) => closed += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    waiting += 1
                }
                Err(_) => closed += 1,
            }
        }
        slowest = slowest.max(started.elapsed());
        if closed + waiting > 0 {
            return Err(Failure::new(format!(
                "every one of {HUNDREDS} keep-alive connections answered in round {round} of \
                 {ROUNDS} (one GET each), and kept open; {closed} were closed (or answered \
                 `Connection: close`) and {waiting} got no answer within {ROUND_BOUND:?}. A \
                 server that gives each connection a thread for as long as it is open serves \
                 only as many connections as it has threads: the rest wait, or are closed to \
                 make room. An event loop (stage 4) holds them all"
            )));
        }
    }
    note(format!(
        "{HUNDREDS} connections x {ROUNDS} rounds, slowest round {slowest:.1?}"
    ));
    Ok(())
}

/// [`TRICKLERS`] connections trickle a request head a byte every 100 ms;
/// [`NORMAL`] normal clients must each be served within [`BOUND`]. A pool
/// whose threads each wait on a trickling head serves no one until the
/// header timeouts cut them off.
pub fn slowloris_leaves_clients_served(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(slowloris_leaves_clients_served_here(ctx), || {
        format!(
            "for i in $(seq {TRICKLERS}); do (printf 'GET /index.html HTTP/1.1\\r\\nHost: t\\r\\nX-Slow: '; while sleep 0.1; do printf a; done) | nc {a} > /dev/null & done\n{newcomer}"
        )
    })
}

fn slowloris_leaves_clients_served_here(ctx: &Ctx) -> CheckResult {
    let (crowd, opened) = Trickle::start(ctx.addr, TRICKLERS);
    let slowest = normal_clients_are_served(
        ctx.addr,
        &format!(
            "while {opened} connections trickle a request head one byte every 100 ms (a \
             slowloris attack): a thread that waits for a head is lost to everyone else \
             until the header timeout; an event loop waits for none"
        ),
    )?;
    drop(crowd);
    note(format!(
        "{NORMAL} normal clients beside {opened} trickling connections, slowest {slowest:.1?}"
    ));
    Ok(())
}

/// SIGTERM while [`LOAD`] keep-alive clients download `/big.bin`: every
/// answer that had started must arrive whole, and every process of the
/// server must be gone within its grace period (plus a second). A server
/// that does not handle SIGTERM and dies of it fails too.
pub fn sigterm_drains_under_load(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(sigterm_drains_under_load_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 30 http://{a_url}/big.bin &   # or any load generator\nsleep 2; kill -TERM {main}; time wait"
        )
    })
}

fn sigterm_drains_under_load_here(ctx: &Ctx) -> CheckResult {
    let port = ctx.addr.port();
    let load = Load::start(ctx.addr, LOAD, "/big.bin");
    if !load.progresses(2 * LOAD as u64, Duration::from_secs(20)) {
        let seen = load.finish();
        return Err(Failure::new(format!(
            "{LOAD} clients downloading /big.bin to be answered before the SIGTERM: {seen:?}"
        )));
    }
    let main = procfs::main_pid(ctx.pid, port);
    let mut pids = procfs::server_pids(ctx.pid, port);
    pids.extend(procfs::tree(ctx.pid).iter().map(|p| p.pid));
    let _ = kill(Pid::from_raw(main as i32), Signal::SIGTERM);
    let signalled = Instant::now();
    let limit = ctx.grace_period + Duration::from_secs(1);
    let gone = wait_for(limit, || pids.iter().all(|&p| !procfs::alive(p)));
    let took = signalled.elapsed();
    let seen = load.finish();
    let left: Vec<u32> = pids.iter().copied().filter(|&p| procfs::alive(p)).collect();
    if !gone {
        return Err(Failure::new(format!(
            "every process of the server gone within its grace period of {:?} (+1 s) after \
             SIGTERM to pid {main}; still running: {left:?} (a server stops accepting, \
             finishes what is in flight, and exits; tell the checker a longer \
             --grace-period if yours is)",
            ctx.grace_period
        )));
    }
    if seen.cut > 0 {
        return Err(Failure::new(format!(
            "every answer that had started before the close arrives whole; {} of {} were \
             cut short (the server closed connections in the middle of a response instead \
             of finishing it)",
            seen.cut,
            seen.cut + seen.ok + seen.other
        )));
    }
    if main == ctx.pid
        && let Some(code) = exit_code(main)
        && code & 0x7f == Signal::SIGTERM as i32
    {
        return Err(Failure::new(
            "a graceful exit on SIGTERM; the server died of the signal (its default action): \
             catch it, stop accepting, finish what is in flight, then exit",
        ));
    }
    note(format!(
        "SIGTERM to pid {main} under {LOAD} downloads: all gone after {took:.1?}; {} whole \
         answers, none cut",
        seen.ok + seen.other
    ));
    Ok(())
}

/// The wait status of a zombie child (`exit_code` of `/proc/PID/stat`,
/// before it is reaped).
fn exit_code(pid: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    // exit_code is field 52 of the line; the fields here start at 3.
    rest.split_whitespace().nth(49)?.parse().ok()
}

// ---------------------------------------------------------------------
// Stage 4.

/// Opens [`Ctx::idle_connections`] keep-alive connections (each asks once)
/// and keeps them idle; at least 95% of them must be held open by the
/// server (read from `/proc`) while [`NORMAL`] new clients are served
/// within [`BOUND`]. Reports the server's memory per connection.
pub fn idle_connections_held_while_new_clients_are_served(ctx: &Ctx) -> CheckResult {
    let Scene {
        a, main, newcomer, ..
    } = Scene::of(ctx);
    with_scene(
        idle_connections_held_while_new_clients_are_served_here(ctx),
        || {
            format!(
                "ulimit -n 20000\nfor i in $(seq {n}); do (printf '{KEEP}'; sleep 120) | nc {a} > /dev/null & done\nls -l /proc/{main}/fd | grep -c socket; grep VmRSS /proc/{main}/status\n{newcomer}",
                n = ctx.idle_connections
            )
        },
    )
}

fn idle_connections_held_while_new_clients_are_served_here(ctx: &Ctx) -> CheckResult {
    let n = ctx.idle_connections;
    let port = ctx.addr.port();
    let limit = crate::limits::raise_fd_limit().unwrap_or(1024);
    if limit < n as u64 + 200 {
        return Err(Failure::new(format!(
            "room for {n} connections in the checker: its open-files limit is {limit} (the \
             hard limit, `ulimit -Hn`); raise it, or ask for fewer with --idle-connections"
        )));
    }
    let pids = procfs::server_pids(ctx.pid, port);
    let rss_before = sum_rss(pids.iter().copied());
    let started = Instant::now();
    let (idle, dropped) = open_idle(ctx.addr, n, n / 20)?;
    let opened_in = started.elapsed();
    let held: usize = procfs::holders(ctx.pid, port)
        .values()
        .map(|h| h.connections)
        .sum();
    let pids = procfs::server_pids(ctx.pid, port);
    let rss_after = sum_rss(pids.iter().copied());
    let want = n - n / 20;
    if held < want {
        return Err(Failure::new(format!(
            "{n} idle keep-alive connections held open; of the {} the checker opened, \
             the server holds {held} and closed {dropped} after their answer (or gave \
             none), so the checker stopped there. A thread or a process per connection \
             runs out long before 10,000; an event loop holds each in a few KiB. (If \
             your keep-alive timeout is shorter than the {:.1?} this took, raise it for \
             the check.) Its processes: {}",
            idle.open() as usize + dropped,
            opened_in,
            describe_holders(ctx)
        )));
    }
    let slowest = normal_clients_are_served(
        ctx.addr,
        &format!("while the server holds {held} idle keep-alive connections"),
    )?;
    let per = (rss_after.saturating_sub(rss_before) as f64) / (n as f64);
    note(format!(
        "{held} idle connections held ({} open on our side); memory (VmRSS) {:.1} MiB -> {:.1} MiB \
         across {} process(es): {per:.1} KiB per connection; new clients served in at most \
         {slowest:.1?}",
        idle.open(),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        pids.len()
    ));
    drop(idle);
    Ok(())
}

/// Counts the server's threads with one connection and with
/// [`THREAD_PROBE`] (or the idle-connection count, if smaller) open: the
/// count may not grow by a tenth of the connections.
pub fn threads_do_not_grow_with_connections(ctx: &Ctx) -> CheckResult {
    let Scene { a, main, .. } = Scene::of(ctx);
    with_scene(threads_do_not_grow_with_connections_here(ctx), || {
        format!(
            "ls /proc/{main}/task | wc -l\nfor i in $(seq {THREAD_PROBE}); do (printf '{KEEP}'; sleep 30) | nc {a} > /dev/null & done\nsleep 2; ls /proc/{main}/task | wc -l"
        )
    })
}

fn threads_do_not_grow_with_connections_here(ctx: &Ctx) -> CheckResult {
    let port = ctx.addr.port();
    let n = THREAD_PROBE.min(ctx.idle_connections).max(50);
    let (one, _) = open_idle(ctx.addr, 1, 1)?;
    let before = sum_threads(procfs::server_pids(ctx.pid, port));
    drop(one);
    let (many, _) = open_idle(ctx.addr, n, n)?;
    let pids = procfs::server_pids(ctx.pid, port);
    let after = sum_threads(pids.iter().copied());
    drop(many);
    let grew = after.saturating_sub(before);
    if grew >= n / 10 {
        return Err(Failure::new(format!(
            "the same threads for {n} connections as for one; the server's {} process(es) \
             had {before} threads with one connection and {after} with {n}: a thread per \
             connection (an event loop serves them all from one thread)",
            pids.len()
        )));
    }
    note(format!(
        "{before} thread(s) with 1 connection, {after} with {n} (in {} process(es))",
        pids.len()
    ));
    Ok(())
}

/// A client with a 4 KiB window starts downloading the 64 MiB
/// [`LARGE`] file and stops reading; another client must be served within
/// [`BOUND`] meanwhile.
pub fn slow_reader_does_not_stop_others(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(slow_reader_does_not_stop_others_here(ctx), || {
        format!(
            "(printf 'GET /{LARGE} HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n'; sleep 60) | nc {a} | sleep 60 &   # a reader that never reads\n{newcomer}"
        )
    })
}

fn slow_reader_does_not_stop_others_here(ctx: &Ctx) -> CheckResult {
    let mut slow = Client::connect_small_window(ctx.addr);
    slow.send(get_request(&format!("/{LARGE}"), false).as_bytes());
    let mut first = [0u8; 1024];
    let got = slow
        .stream
        .read(&mut first)
        .map_err(|e| fail(format!("the start of /{LARGE}: {e}")))?;
    if got == 0 {
        return Err(fail(format!(
            "the start of /{LARGE}; the connection closed"
        )));
    }
    let took = new_client_is_served(
        ctx.addr,
        &format!(
            "while another client has stopped reading /{LARGE} (64 MiB): a server that \
             blocks in write() on that client serves no one else"
        ),
    )?;
    note(format!("answered in {took:.1?} beside a stalled download"));
    drop(slow);
    Ok(())
}

/// Half a request head, then silence: the server must answer 408 or close
/// within its header timeout (the checker's `--header-timeout`), with half
/// again and two seconds of slack.
pub fn stalled_head_gets_408_or_close(ctx: &Ctx) -> CheckResult {
    let Scene { a, .. } = Scene::of(ctx);
    with_scene(stalled_head_gets_408_or_close_here(ctx), || {
        format!("time (printf '{HALF}'; sleep 60) | nc {a}")
    })
}

fn stalled_head_gets_408_or_close_here(ctx: &Ctx) -> CheckResult {
    let limit = ctx.header_timeout.mul_f64(1.5) + Duration::from_secs(2);
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\n");
    set_timeouts(&c, limit);
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let answer = c.stream.read(&mut buf);
    let took = started.elapsed();
    match answer {
        Ok(0) => note(format!("closed after {took:.1?}")),
        Ok(n) => {
            super::check::record_received(&buf[..n]);
            let head = String::from_utf8_lossy(&buf[..n]);
            if !(head.starts_with("HTTP/1.1 408") || head.starts_with("HTTP/1.0 408")) {
                return Err(fail("408 (or a close) for a stalled request head"));
            }
            note(format!("408 after {took:.1?}"));
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(fail(format!(
                "408 or a close within {limit:.1?} of a request head that stalled (the \
                 server's header timeout is {:?}, says --header-timeout); nothing came: a \
                 connection that never finishes its head holds the server's memory, or a \
                 thread, for ever",
                ctx.header_timeout
            )));
        }
        Err(_) => note(format!("reset after {took:.1?}")),
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Stage 5.

/// With [`LOAD`] keep-alive connections open (each answered once), more
/// than one process of the command's tree must hold a socket of the port:
/// the listener, or accepted connections.
pub fn several_processes_serve_the_port(ctx: &Ctx) -> CheckResult {
    let Scene { port, .. } = Scene::of(ctx);
    with_scene(several_processes_serve_the_port_here(ctx), || {
        format!("ss -tanp '( sport = :{port} )'")
    })
}

fn several_processes_serve_the_port_here(ctx: &Ctx) -> CheckResult {
    let (open, _) = open_idle(ctx.addr, 2 * LOAD, 2 * LOAD)?;
    let held = procfs::holders(ctx.pid, ctx.addr.port());
    let who = describe_holders(ctx);
    drop(open);
    if held.len() < 2 {
        return Err(Failure::new(format!(
            "more than one process holding the port's sockets (read from /proc/PID/fd and \
             /proc/net/tcp) with {} connections open; found {}: {who}",
            2 * LOAD,
            held.len()
        )));
    }
    note(who);
    Ok(())
}

/// Under a [`LOAD`] of keep-alive clients, `kill -9` of the worker that
/// holds the most connections (not the shallowest process that holds the
/// port: that is the master): a new process must appear in the tree within
/// 10 s, the load must go on, and no more requests may fail than the
/// connections that worker held.
pub fn killed_worker_is_replaced(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(killed_worker_is_replaced_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 30 http://{a_url}/index.html &\nsleep 2; ps -o pid,cmd --ppid {main}; kill -9 WORKER; sleep 1; ps -o pid,cmd --ppid {main}; wait"
        )
    })
}

fn killed_worker_is_replaced_here(ctx: &Ctx) -> CheckResult {
    let port = ctx.addr.port();
    let load = Load::start(ctx.addr, LOAD, "/index.html");
    if !load.progresses(50, Duration::from_secs(10)) {
        load.finish();
        return Err(Failure::new("the load to be answered before the kill"));
    }
    let before: Vec<u32> = procfs::tree(ctx.pid).iter().map(|p| p.pid).collect();
    let main = procfs::main_pid(ctx.pid, port);
    let held = procfs::holders(ctx.pid, port);
    let victim = held
        .iter()
        .filter(|(pid, h)| **pid != main && h.connections > 0)
        .max_by_key(|(_, h)| h.connections)
        .map(|(pid, h)| (*pid, h.connections));
    let Some((victim, holding)) = victim else {
        let who = describe_holders(ctx);
        load.finish();
        return Err(Failure::new(format!(
            "a worker to kill: a process below the one holding the listener that holds \
             connections; found none ({who})"
        )));
    };
    let _ = kill(Pid::from_raw(victim as i32), Signal::SIGKILL);
    let killed = Instant::now();
    let replaced = wait_for(Duration::from_secs(10), || {
        let now: Vec<u32> = procfs::tree(ctx.pid).iter().map(|p| p.pid).collect();
        now.len() >= before.len() && now.iter().any(|p| !before.contains(p))
    });
    let replaced_in = killed.elapsed();
    if !replaced {
        load.finish();
        return Err(Failure::new(format!(
            "a new process in place of worker {victim}, killed with SIGKILL, within 10 s; \
             the server's processes are now: {}. A master must notice a dead worker \
             (SIGCHLD, waitpid) and fork another",
            describe_holders(ctx)
        )));
    }
    let went_on = load.progresses(50, Duration::from_secs(10));
    let seen = load.finish();
    if !went_on {
        return Err(Failure::new(format!(
            "the load to go on after the replacement; it stopped ({seen:?})"
        )));
    }
    if seen.lost() > holding as u64 {
        return Err(Failure::new(format!(
            "no more failed requests than the {holding} connection(s) the killed worker \
             held; {} failed ({seen:?})",
            seen.lost()
        )));
    }
    note(format!(
        "killed worker {victim} (it held {holding} connection(s)); a new process after \
         {replaced_in:.1?}; {} requests failed, {} answered",
        seen.lost(),
        seen.ok
    ));
    Ok(())
}

/// SIGHUP to the server under a [`LOAD`]; returns the failures and the
/// load's totals, or a failure if it stopped serving.
fn sighup_under_load(ctx: &Ctx) -> Result<(u32, Seen), Failure> {
    let port = ctx.addr.port();
    let load = Load::start(ctx.addr, LOAD, "/index.html");
    if !load.progresses(50, Duration::from_secs(10)) {
        load.finish();
        return Err(Failure::new("the load to be answered before the SIGHUP"));
    }
    let main = procfs::main_pid(ctx.pid, port);
    let _ = kill(Pid::from_raw(main as i32), Signal::SIGHUP);
    let went_on = load.progresses(200, Duration::from_secs(15));
    let seen = load.finish();
    if !went_on || !procfs::alive(main) {
        return Err(Failure::new(format!(
            "the server to keep serving after SIGHUP to pid {main} (re-read the \
             configuration, replace the workers); it stopped ({seen:?}; {})",
            describe_holders(ctx)
        )));
    }
    new_client_is_served(ctx.addr, "after the SIGHUP")?;
    Ok((main, seen))
}

/// SIGHUP under load: the server keeps serving, and no more requests fail
/// than the [`LOAD`] connections open when it came.
pub fn sighup_keeps_serving(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(sighup_keeps_serving_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 20 http://{a_url}/index.html &\nsleep 2; kill -HUP {main}; wait"
        )
    })
}

fn sighup_keeps_serving_here(ctx: &Ctx) -> CheckResult {
    let (main, seen) = sighup_under_load(ctx)?;
    let errors = seen.lost() + seen.other;
    if errors > LOAD as u64 {
        return Err(Failure::new(format!(
            "no more errors than the {LOAD} connections open at the SIGHUP; {errors} \
             ({seen:?})"
        )));
    }
    note(format!(
        "SIGHUP to pid {main} under {LOAD} connections: {} answered, {errors} errors",
        seen.ok
    ));
    Ok(())
}

/// SIGHUP under load loses no request (extra credit: the old workers
/// finish what they hold while the new ones take the new connections).
pub fn sighup_loses_nothing(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(sighup_loses_nothing_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 20 http://{a_url}/index.html &\nsleep 2; kill -HUP {main}; wait"
        )
    })
}

fn sighup_loses_nothing_here(ctx: &Ctx) -> CheckResult {
    let (main, seen) = sighup_under_load(ctx)?;
    let errors = seen.lost() + seen.other;
    if errors > 0 {
        return Err(Failure::new(format!(
            "no request lost to the SIGHUP; {errors} were ({seen:?}): a worker retired by a \
             reload finishes what it holds before it exits"
        )));
    }
    note(format!(
        "SIGHUP to pid {main}: {} answered, none lost",
        seen.ok
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rubrics build on each other: stage 4 holds every stage 3 check,
    /// its extra credit required; stage 5 holds every stage 4 check; the
    /// shutdown comes last everywhere, and names are unique.
    #[test]
    fn the_rubrics_build_on_each_other() {
        for stage in 3..=5u8 {
            let r = rubric(stage);
            assert!(ends_the_server(r[r.len() - 1].name));
            let mut names: Vec<&str> = r.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), r.len());
            for c in r {
                assert!(milestones(stage).contains(&c.milestone), "{}", c.name);
            }
        }
        for c in rubric(3) {
            let in4 = rubric(4).iter().find(|d| d.name == c.name).unwrap();
            assert_eq!(in4.level, Level::Required, "{}", c.name);
        }
        for c in rubric(4) {
            assert!(rubric(5).iter().any(|d| d.name == c.name), "{}", c.name);
        }
    }
}
