//! Checks as values: a check is a named function that returns
//! `Result<(), Failure>`, so that one check can be run, listed, timed and
//! reported on its own, by `cargo test NAME` and by the stage checker
//! (`bench check --stage N -- COMMAND`) alike.
//!
//! A [`Failure`] is written for the person whose server failed: the request
//! that was sent, what was expected, what came back (the status line and
//! the first bytes) and a one-line reproduction,
//! `printf '…' | nc 127.0.0.1 PORT`.
//!
//! The request and the answer are not passed around by hand: the test
//! client ([`super::client::Client`]) records every connection's bytes in a
//! per-thread [`Exchange`], and [`fail`] builds the failure from the latest
//! one. The macros [`ensure!`](crate::ensure) and
//! [`ensure_eq!`](crate::ensure_eq) are `assert!` and `assert_eq!` that
//! return such a failure instead of panicking.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How much of a request a failure keeps (a reproduction of a 1 MiB body
/// would be unreadable; the note says how much was left out).
const KEEP_SENT: usize = 2048;
/// How much of an answer a failure keeps.
const KEEP_GOT: usize = 512;

/// What a check that did not pass reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The bytes sent on the connection that failed (the first
    /// [`KEEP_SENT`] of them), empty if the check failed before sending.
    pub request: Vec<u8>,
    /// How many bytes were sent in all (a `u32`, with the two flags below,
    /// keeps a `Result<(), Failure>` small; no check sends 4 GiB).
    pub request_len: u32,
    /// What the server should have done.
    pub expected: String,
    /// The first bytes the server sent back on that connection (status
    /// line first), empty if it sent nothing.
    pub got: Vec<u8>,
    /// The server's address, for the reproduction.
    pub addr: Option<SocketAddr>,
    /// True when the check could not run (a missing tool): a SKIP, not a
    /// FAIL.
    pub skipped: bool,
    /// The connection spoke HTTP (the answer should start with a status
    /// line).
    pub http: bool,
    /// A shell script that sets the scene again, for a check that is more
    /// than one request (a crowd of connections, a signal under load):
    /// printed after the request's own reproduction. (Boxed: it is rare,
    /// and a `Result<(), Failure>` stays small.)
    pub script: Option<Box<String>>,
}

/// The names a check macro lists after `marker` up to its `);` (in
/// `src`, the macro's own source file), for the unit tests that keep
/// `conformance_tests!` and `echo_tests!` equal to their tables.
#[cfg(test)]
pub(crate) fn macro_list(src: &str, marker: &str) -> Vec<String> {
    let start = src.find(marker).expect("the macro") + marker.len();
    let end = start + src[start..].find(");").expect("the end of the list");
    src[start..end]
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// What every check returns.
pub type CheckResult = Result<(), Failure>;

impl Failure {
    /// A failure with an explanation and no recorded exchange.
    pub fn new(expected: impl Into<String>) -> Failure {
        Failure {
            request: Vec::new(),
            request_len: 0,
            expected: expected.into(),
            got: Vec::new(),
            addr: None,
            skipped: false,
            http: false,
            script: None,
        }
    }

    /// The same failure with `script` as the way to set the scene again.
    pub fn with_script(mut self, script: impl Into<String>) -> Failure {
        self.script = Some(Box::new(script.into()));
        self
    }

    /// A check that could not run, with the reason.
    pub fn skip(reason: impl Into<String>) -> Failure {
        Failure {
            skipped: true,
            ..Failure::new(reason)
        }
    }

    /// The status line of the answer, or a note that there was none.
    pub fn status_line(&self) -> String {
        if self.got.is_empty() {
            return "(nothing: the connection closed or timed out before a byte)".into();
        }
        let end = self
            .got
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(self.got.len())
            .min(120);
        let line = String::from_utf8_lossy(&self.got[..end]).into_owned();
        if line.starts_with("HTTP/") || !self.http {
            line
        } else {
            format!("{line:?} (not a status line: no `HTTP/1.x CODE REASON` first)")
        }
    }

    /// `printf '…' | nc 127.0.0.1 PORT`, with the request escaped for
    /// `printf` inside single quotes. `None` when nothing was sent.
    pub fn reproduction(&self) -> Option<String> {
        if self.request.is_empty() {
            return None;
        }
        let port = self.addr.map_or(8080, |a| a.port());
        let mut s = String::from("printf '");
        for &b in &self.request {
            match b {
                b'\r' => s.push_str("\\r"),
                b'\n' => s.push_str("\\n"),
                b'\t' => s.push_str("\\t"),
                b'\\' => s.push_str("\\\\"),
                b'%' => s.push_str("%%"),
                b'\'' => s.push_str("\\047"),
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\{b:03o}")),
            }
        }
        s.push_str(&format!("' | nc 127.0.0.1 {port}"));
        if self.request_len as usize > self.request.len() {
            s.push_str(&format!(
                "   # the first {} of {} bytes sent",
                self.request.len(),
                self.request_len
            ));
        }
        Some(s)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "expected: {}", self.expected)?;
        if !self.request.is_empty() {
            let req = String::from_utf8_lossy(&self.request);
            let first = shorten(req.lines().next().unwrap_or(""), 100);
            writeln!(f, "request:  {first:?} ({} bytes)", self.request_len)?;
            writeln!(f, "got:      {}", self.status_line())?;
            if !self.got.is_empty() {
                let got = String::from_utf8_lossy(&self.got);
                writeln!(f, "first bytes: {:?}", shorten(&got, 300))?;
            }
        }
        if let Some(r) = self.reproduction() {
            if r.len() > 600 {
                let cut = shorten(&r, 400);
                writeln!(
                    f,
                    "reproduce: {cut}   # cut short here; --json FILE has the first {} bytes",
                    self.request.len()
                )?;
            } else {
                writeln!(f, "reproduce: {r}")?;
            }
        }
        if let Some(script) = &self.script {
            let mut lines = script.lines();
            writeln!(f, "set the scene: {}", lines.next().unwrap_or(""))?;
            for line in lines {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// `s` cut to at most `max` characters, with `…` when it was cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// The bytes of the latest connection a check opened on this thread.
#[derive(Debug, Default, Clone)]
pub struct Exchange {
    /// Where it went.
    pub addr: Option<SocketAddr>,
    /// The first bytes sent.
    pub sent: Vec<u8>,
    /// How many bytes were sent in all.
    pub sent_len: usize,
    /// The first bytes received.
    pub got: Vec<u8>,
    /// It spoke HTTP.
    pub http: bool,
}

thread_local! {
    static LAST: RefCell<Exchange> = RefCell::new(Exchange::default());
    static STRICT_FRAMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// On this thread, demand `Content-Length` on every response with a body,
/// as our stages always send it (the strict suite); otherwise chunked and
/// close-delimited bodies are read too, as the RFCs permit (the checker).
pub fn set_strict_framing(on: bool) {
    STRICT_FRAMING.with(|s| s.set(on));
}

/// See [`set_strict_framing`].
pub fn strict_framing() -> bool {
    STRICT_FRAMING.with(|s| s.get())
}

/// A new connection to `addr`: the exchange starts over.
pub fn record_connect(addr: SocketAddr) {
    LAST.with(|l| {
        *l.borrow_mut() = Exchange {
            addr: Some(addr),
            ..Exchange::default()
        }
    });
}

/// The latest connection speaks HTTP.
pub fn record_http() {
    LAST.with(|l| l.borrow_mut().http = true);
}

/// Bytes sent on the latest connection.
pub fn record_sent(bytes: &[u8]) {
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        let room = KEEP_SENT.saturating_sub(l.sent.len());
        l.sent.extend_from_slice(&bytes[..room.min(bytes.len())]);
        l.sent_len += bytes.len();
    });
}

/// Bytes received on the latest connection.
pub fn record_received(bytes: &[u8]) {
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        let room = KEEP_GOT.saturating_sub(l.got.len());
        l.got.extend_from_slice(&bytes[..room.min(bytes.len())]);
    });
}

/// The latest exchange on this thread.
pub fn last_exchange() -> Exchange {
    LAST.with(|l| l.borrow().clone())
}

/// A failure explained by `expected`, carrying the latest exchange.
pub fn fail(expected: impl Into<String>) -> Failure {
    let ex = last_exchange();
    Failure {
        request: ex.sent,
        request_len: u32::try_from(ex.sent_len).unwrap_or(u32::MAX),
        expected: expected.into(),
        got: ex.got,
        addr: ex.addr,
        skipped: false,
        http: ex.http,
        script: None,
    }
}

/// `assert!` for checks: returns a [`Failure`] from the enclosing function
/// (built by [`fail`]) when the condition is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::testkit::check::fail(format!($($msg)+)));
        }
    };
    ($cond:expr) => {
        if !$cond {
            return Err($crate::testkit::check::fail(stringify!($cond)));
        }
    };
}

/// `assert_eq!(got, want)` for checks: returns a [`Failure`] saying what
/// was wanted and what came instead.
#[macro_export]
macro_rules! ensure_eq {
    ($got:expr, $want:expr, $($msg:tt)+) => {
        match (&$got, &$want) {
            (got, want) => {
                if !(*got == *want) {
                    return Err($crate::testkit::check::fail(format!(
                        "{}: {:?}, not {:?}",
                        format!($($msg)+),
                        want,
                        got
                    )));
                }
            }
        }
    };
    ($got:expr, $want:expr) => {
        $crate::ensure_eq!($got, $want, "{}", stringify!($got))
    };
}

/// How a check counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Required: what the RFCs demand, with every answer they permit.
    Required,
    /// A feature or a policy real servers choose differently: a pass is
    /// credit, a failure is reported and never fails the rubric.
    Extra,
    /// Our exact bytes and our flags: run against this workspace's stages
    /// only, never graded.
    Reference,
}

impl Level {
    /// The word the checker prints.
    pub fn name(self) -> &'static str {
        match self {
            Level::Required => "required",
            Level::Extra => "extra credit",
            Level::Reference => "reference",
        }
    }
}

/// A named check on a context `C` (the server under test and its fixture).
#[derive(Debug)]
pub struct Check<C: 'static> {
    /// The name: the `#[test]` name and `--only NAME`.
    pub name: &'static str,
    /// The stage milestone it belongs to (the checker groups by it).
    pub milestone: &'static str,
    /// How it counts.
    pub level: Level,
    /// One sentence: what it demands.
    pub about: &'static str,
    /// The check.
    pub run: fn(&C) -> CheckResult,
}

/// What became of one check.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It passed.
    Pass,
    /// It failed, with the failure.
    Fail(Failure),
    /// It could not run, with the reason.
    Skip(String),
}

/// Runs `check` on the calling thread, turning a panic (a bug in a check,
/// or an `unwrap` on a fixture) into a failure so that nothing a server
/// does can stop the run.
pub fn run_here<C>(check: &Check<C>, ctx: &C) -> Outcome {
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (check.run)(ctx)));
    match res {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(f)) if f.skipped => Outcome::Skip(f.expected),
        Ok(Err(f)) => Outcome::Fail(f),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the check panicked".into());
            Outcome::Fail(fail(msg))
        }
    }
}

/// Runs `check` on a thread of its own and gives up after `timeout`: a
/// server that never answers makes the check fail, not the run hang. (The
/// abandoned thread ends when its sockets' read timeouts expire.)
pub fn run_with_timeout<C: Send + Sync + 'static>(
    check: &'static Check<C>,
    ctx: &'static C,
    timeout: Duration,
) -> (Outcome, Duration) {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(check.name.into())
        .spawn(move || {
            let _ = tx.send(run_here(check, ctx));
        });
    if let Err(e) = spawned {
        return (
            Outcome::Fail(Failure::new(format!("cannot start a thread: {e}"))),
            started.elapsed(),
        );
    }
    let outcome = rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Outcome::Fail(Failure::new(format!(
            "an answer within {:.1} s (the check timed out: the server \
             stopped answering, or holds a connection open)",
            timeout.as_secs_f64()
        )))
    });
    (outcome, started.elapsed())
}

/// Notes the running check has made: figures it measured (a latency, the
/// memory per connection), printed under its line. Checks run one at a
/// time, so one list serves.
static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records a figure the running check measured, for the report: never a
/// verdict, only information.
pub fn note(line: impl Into<String>) {
    if let Ok(mut n) = NOTES.lock() {
        n.push(line.into());
    }
}

/// The notes made since the last call.
pub fn take_notes() -> Vec<String> {
    NOTES
        .lock()
        .map(|mut n| std::mem::take(&mut *n))
        .unwrap_or_default()
}

/// How long the test client waits for any one read, in milliseconds (the
/// checker lowers it to its per-check timeout).
static IO_TIMEOUT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(10_000);

/// Sets how long the test client waits for any one read or write.
pub fn set_io_timeout(t: Duration) {
    IO_TIMEOUT_MS.store(
        t.as_millis().max(1) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// How long the test client waits for any one read or write.
pub fn io_timeout() -> Duration {
    Duration::from_millis(IO_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reproduction escapes what `printf` and the shell would eat.
    #[test]
    fn reproduction_is_a_shell_line() {
        let mut f = Failure::new("x");
        f.request = b"GET /100% HTTP/1.1\r\nX: 'a'\\\x01\r\n\r\n".to_vec();
        f.request_len = f.request.len() as u32;
        f.addr = Some("127.0.0.1:9".parse().unwrap());
        assert_eq!(
            f.reproduction().unwrap(),
            "printf 'GET /100%% HTTP/1.1\\r\\nX: \\047a\\047\\\\\\001\\r\\n\\r\\n' | nc 127.0.0.1 9"
        );
    }

    /// `ensure_eq!` says what was wanted and what came.
    #[test]
    fn ensure_eq_explains() {
        fn check() -> CheckResult {
            ensure_eq!(404, 200, "GET /");
            Ok(())
        }
        let f = check().unwrap_err();
        assert_eq!(f.expected, "GET /: 200, not 404");
    }
}
