//! The stage 1 rubric: black-box checks of a line echo server, for
//! `bench check --stage 1 -- COMMAND` and for stage 1's own tests.
//!
//! The base contract is small on purpose, so that any learner's echo
//! server can be graded: a line that ends in `\n` and is not a command
//! comes back exactly; a long stream comes back whole while the client is
//! still sending (the server copes with partial reads and writes); a client
//! that disconnects half-way through a line does not hurt the next one;
//! several clients are served at once (unless the learner says
//! `--blocking`). What else the learner built is opt-in: `--line-protocol`
//! (`PING`, `ECHO`, `ADD`, `QUIT`), `--chat` (names and broadcast) and
//! `--idle-timeout SECS`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::check::{self, Check, CheckResult, Failure, Level, fail};
use crate::{ensure, ensure_eq};

/// What a stage 1 check gets: where the server is and what it claims to do.
#[derive(Debug, Clone)]
pub struct EchoCtx {
    /// The server under test.
    pub addr: SocketAddr,
    /// It serves one client at a time (the "several clients" check is
    /// skipped).
    pub blocking: bool,
    /// It speaks the line protocol (`PING`, `ECHO`, `ADD`, `QUIT`).
    pub line_protocol: bool,
    /// It is a chat room (`NICK`, broadcast).
    pub chat: bool,
    /// It closes a client idle for this long.
    pub idle_timeout: Option<Duration>,
}

/// Stage 1's milestones, as the course names them.
pub mod milestone {
    /// Lines in, the same lines out.
    pub const BASIC: &str = "Basic socket communication between client and server";
    /// Partial reads and writes.
    pub const ROBUST: &str = "Robust I/O functions handling partial reads/writes";
    /// Clients that misbehave.
    pub const ERRORS: &str = "Error handling for all network operations";
    /// More than one client.
    pub const CLIENTS: &str = "Several clients at once";
    /// What the learner opted into.
    pub const OPTIONS: &str = "Options: line protocol, chat, idle timeout";
}

macro_rules! echo_check {
    ($name:ident, $milestone:ident, $about:literal) => {
        Check {
            name: stringify!($name),
            milestone: milestone::$milestone,
            level: Level::Required,
            about: $about,
            run: $name,
        }
    };
}

/// Runs the whole rubric here, in this thread: what a test of our own
/// servers does (`bench check` runs it with timeouts instead). Returns the
/// names of the checks that failed, with their failures in the report
/// (for the assertion message), and of those skipped.
pub fn grade(
    ctx: &EchoCtx,
) -> (
    std::collections::BTreeSet<&'static str>,
    std::collections::BTreeSet<&'static str>,
    String,
) {
    let mut failed = std::collections::BTreeSet::new();
    let mut skipped = std::collections::BTreeSet::new();
    let mut report = String::new();
    for check in CHECKS {
        match check::run_here(check, ctx) {
            check::Outcome::Pass => {}
            check::Outcome::Skip(_) => {
                skipped.insert(check.name);
            }
            check::Outcome::Fail(f) => {
                report.push_str(&format!("FAIL {}\n{f}\n", check.name));
                failed.insert(check.name);
            }
        }
    }
    (failed, skipped, report)
}

/// Runs the check called `name` against a fresh `bin` started with `args`,
/// graded with the context `ctx` gives for its address: what one test of
/// [`echo_tests!`](crate::echo_tests) does. The check must pass, or, if
/// it is one of `skips` (an option this configuration does not claim),
/// must say it was skipped.
pub fn run_one(
    name: &str,
    bin: &str,
    args: &[&str],
    ctx: fn(SocketAddr) -> EchoCtx,
    skips: &[&str],
) {
    let check = CHECKS
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no stage 1 check named {name}"));
    let server = super::ServerProcess::start(bin, args);
    let outcome = check::run_here(check, &ctx(server.addr));
    match (outcome, skips.contains(&name)) {
        (check::Outcome::Pass, false) | (check::Outcome::Skip(_), true) => {}
        (check::Outcome::Fail(f), _) => panic!("{name} failed:\n{f}"),
        (other, skip) => panic!(
            "{name}: {other:?}, but this configuration expects {}",
            if skip { "a skip" } else { "a pass" }
        ),
    }
}

/// One `#[test]` per stage 1 check and server configuration, as
/// [`conformance_tests!`](crate::conformance_tests) does for stage 2 on:
/// a test is named `CHECK::CONFIG` and starts its own server, so that
/// `cargo test -p stage1-echo lines_come_back_exactly` runs one check
/// against every configuration. `CTX` names a function in the calling
/// module that makes the context from the address; `skips` lists the
/// checks of options the configuration does not claim.
///
/// ```ignore
/// common::echo_tests! {
///     poll => (env!("CARGO_BIN_EXE_stage1-echo"), &["--model", "poll"], poll_ctx,
///              skips [chat_broadcast_and_nicks]),
/// }
/// ```
#[macro_export]
macro_rules! echo_tests {
    ($($config:ident => ($bin:expr, $args:expr, $ctx:ident, skips [$($skip:ident)*])),+ $(,)?) => {
        $crate::echo_tests!(@checks [$( $config ($bin, $args, $ctx, [$($skip)*]) )+];
            lines_come_back_exactly several_lines_in_one_write line_split_across_writes
            megabyte_stream_while_reading disconnect_mid_line_does_not_hurt_the_next
            clients_at_once line_protocol_commands chat_broadcast_and_nicks
            idle_client_is_closed
        );
    };
    (@checks $configs:tt; $($name:ident)*) => {
        $( $crate::echo_tests!(@one $name $configs); )*
    };
    (@one $name:ident [$( $config:ident ($bin:expr, $args:expr, $ctx:ident, [$($skip:ident)*]) )+]) => {
        mod $name {
            $(
                #[test]
                fn $config() {
                    $crate::testkit::echo::run_one(
                        stringify!($name),
                        $bin,
                        $args,
                        super::$ctx,
                        &[$(stringify!($skip)),*],
                    );
                }
            )+
        }
    };
}

/// The check names [`echo_tests!`](crate::echo_tests) lists, for the unit
/// test that keeps it equal to [`CHECKS`].
#[cfg(test)]
fn macro_names() -> Vec<String> {
    check::macro_list(
        include_str!("echo.rs"),
        "(@checks [$( $config ($bin, $args, $ctx, [$($skip)*]) )+];",
    )
}

/// The stage 1 rubric, in the order it runs.
pub static CHECKS: &[Check<EchoCtx>] = &[
    echo_check!(
        lines_come_back_exactly,
        BASIC,
        "a line that is not a command comes back byte for byte"
    ),
    echo_check!(
        several_lines_in_one_write,
        BASIC,
        "three lines in one write come back as three lines"
    ),
    echo_check!(
        line_split_across_writes,
        ROBUST,
        "a line that arrives in pieces comes back once, whole"
    ),
    echo_check!(
        megabyte_stream_while_reading,
        ROBUST,
        "1 MiB of short lines sent while reading comes back whole"
    ),
    echo_check!(
        disconnect_mid_line_does_not_hurt_the_next,
        ERRORS,
        "a client that leaves mid-line, or resets, does not hurt the next"
    ),
    echo_check!(
        clients_at_once,
        CLIENTS,
        "a second client is answered while the first stays connected"
    ),
    echo_check!(
        line_protocol_commands,
        OPTIONS,
        "--line-protocol: PING, ECHO, ADD (with overflow) and QUIT"
    ),
    echo_check!(
        chat_broadcast_and_nicks,
        OPTIONS,
        "--chat: a line reaches the others, not its sender; names are unique"
    ),
    echo_check!(
        idle_client_is_closed,
        OPTIONS,
        "--idle-timeout SECS: an idle client is closed after about SECS"
    ),
];

/// A line-speaking connection that records its bytes for failures.
struct Line {
    stream: TcpStream,
    buf: Vec<u8>,
    /// A chat room: lines are sent as `ECHO …` (a chat relays plain lines
    /// to the others instead of echoing them), and announcements
    /// (`* bob joined`) and relays are passed over.
    chat: bool,
}

impl Line {
    /// A connection for the echo checks: in a chat room, through `ECHO`.
    fn echo(ctx: &EchoCtx) -> Result<Line, Failure> {
        if ctx.chat && !ctx.line_protocol {
            return Err(Failure::skip(
                "--chat without --line-protocol: a chat room echoes nothing to check",
            ));
        }
        let mut l = Line::open(ctx.addr)?;
        l.chat = ctx.chat;
        Ok(l)
    }

    fn open(addr: SocketAddr) -> Result<Line, Failure> {
        check::record_connect(addr);
        let stream = TcpStream::connect_timeout(&addr, check::io_timeout())
            .map_err(|e| fail(format!("a connection to {addr}: {e}")))?;
        stream.set_read_timeout(Some(check::io_timeout())).ok();
        stream.set_write_timeout(Some(check::io_timeout())).ok();
        stream.set_nodelay(true).ok();
        Ok(Line {
            stream,
            buf: Vec::new(),
            chat: false,
        })
    }

    fn send(&mut self, bytes: &[u8]) -> CheckResult {
        check::record_sent(bytes);
        self.stream
            .write_all(bytes)
            .map_err(|e| fail(format!("the server to take what was sent: {e}")))
    }

    /// The next line, without its `\n` (and without a `\r` before it).
    fn line(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(fail("a line back, but the server closed the connection")),
                Ok(n) => {
                    check::record_received(&chunk[..n]);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => {
                    return Err(fail(format!(
                        "a line back within {:?}: {e}",
                        check::io_timeout()
                    )));
                }
            }
        }
    }

    fn ask(&mut self, line: &str) -> Result<String, Failure> {
        self.send(format!("{}{line}\n", self.prefix()).as_bytes())?;
        self.reply()
    }

    /// What goes before a line to have it echoed.
    fn prefix(&self) -> &'static str {
        if self.chat { "ECHO " } else { "" }
    }

    /// The next line that answers this client (in a chat room, not an
    /// announcement or another member's line).
    fn reply(&mut self) -> Result<String, Failure> {
        loop {
            let line = String::from_utf8_lossy(&self.line()?).into_owned();
            if !(self.chat && (line.starts_with("* ") || line.starts_with('['))) {
                return Ok(line);
            }
        }
    }

    /// True if the server closes the connection (EOF or reset) within the
    /// read timeout, with no more lines.
    fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 256];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

fn lines_come_back_exactly(ctx: &EchoCtx) -> CheckResult {
    let mut c = Line::echo(ctx)?;
    for line in [
        "hello world",
        "  leading and trailing spaces  ",
        "tabs\tand \"quotes\" and 'apostrophes'",
        "x",
        "caf\u{e9} \u{1f980} unicode",
    ] {
        let back = c.ask(line)?;
        ensure_eq!(back, line, "the line {line:?} back unchanged");
    }
    Ok(())
}

fn several_lines_in_one_write(ctx: &EchoCtx) -> CheckResult {
    let mut c = Line::echo(ctx)?;
    let p = c.prefix();
    c.send(format!("{p}one\n{p}two\n{p}three\n").as_bytes())?;
    for want in ["one", "two", "three"] {
        let got = c.reply()?;
        ensure_eq!(got, want, "each line of one write back in order");
    }
    Ok(())
}

fn line_split_across_writes(ctx: &EchoCtx) -> CheckResult {
    let mut c = Line::echo(ctx)?;
    let first = format!("{}spl", c.prefix());
    for piece in [first.as_str(), "it acr", "oss wri", "tes\n"] {
        c.send(piece.as_bytes())?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = c.reply()?;
    ensure_eq!(got, "split across writes", "the line back once, whole");
    Ok(())
}

fn megabyte_stream_while_reading(ctx: &EchoCtx) -> CheckResult {
    // About 1 MiB of numbered lines, written by a thread while this one
    // reads: a server that writes without checking how much `write` took,
    // or that stops reading while its output is full, loses or garbles
    // lines, or stalls.
    let c = Line::echo(ctx)?;
    let mut to_send = Vec::with_capacity(1 << 20);
    let mut sent = Vec::with_capacity(1 << 20);
    let mut i = 0u32;
    while sent.len() < 1 << 20 {
        let line = format!("line {i:07} of the megabyte stream\n");
        to_send.extend_from_slice(c.prefix().as_bytes());
        to_send.extend_from_slice(line.as_bytes());
        sent.extend_from_slice(line.as_bytes());
        i += 1;
    }
    check::record_sent(&to_send);
    let mut writer = c
        .stream
        .try_clone()
        .map_err(|e| Failure::new(format!("a second handle on the socket: {e}")))?;
    let sender = std::thread::spawn(move || writer.write_all(&to_send));
    let mut got = Vec::with_capacity(sent.len());
    let mut chunk = [0u8; 65536];
    let mut stream = &c.stream;
    while got.len() < sent.len() {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if got.is_empty() {
                    check::record_received(&chunk[..n]);
                }
                got.extend_from_slice(&chunk[..n]);
            }
            Err(_) => break,
        }
    }
    let wrote = sender.join().unwrap_or(Ok(()));
    if got.len() < sent.len() {
        return Err(fail(format!(
            "all {} bytes back while still sending, but only {} came back{}",
            sent.len(),
            got.len(),
            match wrote {
                Err(e) => format!(" and sending stalled ({e}): the server stopped reading"),
                Ok(()) => String::new(),
            }
        )));
    }
    if let Some(at) = got.iter().zip(&sent).position(|(a, b)| a != b) {
        let line = sent[..at].iter().filter(|&&b| b == b'\n').count();
        return Err(fail(format!(
            "the stream back unchanged, but it differs at byte {at} (line {line})"
        )));
    }
    ensure!(got.len() == sent.len(), "no bytes beyond the stream");
    Ok(())
}

fn disconnect_mid_line_does_not_hurt_the_next(ctx: &EchoCtx) -> CheckResult {
    // Half a line, then a normal close.
    let mut a = Line::open(ctx.addr)?;
    a.send(b"half a li")?;
    drop(a);
    // Half a line, then a reset.
    let mut b = Line::open(ctx.addr)?;
    b.send(b"another half")?;
    super::reset_on_close(&b.stream);
    drop(b);
    let mut c = Line::echo(ctx)?;
    let back = c.ask("the next client")?;
    ensure_eq!(back, "the next client", "the next client's line back");
    Ok(())
}

fn clients_at_once(ctx: &EchoCtx) -> CheckResult {
    if ctx.blocking {
        return Err(Failure::skip(
            "--blocking: the server serves one client at a time",
        ));
    }
    let mut first = Line::echo(ctx)?;
    ensure_eq!(first.ask("first")?, "first", "the first client's line");
    // The first client stays connected and silent; the second must be
    // answered all the same.
    let mut second = Line::echo(ctx)?;
    ensure_eq!(
        second.ask("second")?,
        "second",
        "the second client answered while the first is still connected"
    );
    ensure_eq!(
        first.ask("first again")?,
        "first again",
        "the first client, again"
    );
    Ok(())
}

fn line_protocol_commands(ctx: &EchoCtx) -> CheckResult {
    if !ctx.line_protocol {
        return Err(Failure::skip("run with --line-protocol to check it"));
    }
    let mut c = Line::open(ctx.addr)?;
    ensure_eq!(c.ask("PING")?, "PONG", "PING");
    ensure_eq!(
        c.ask("ECHO hello world")?,
        "hello world",
        "ECHO hello world"
    );
    ensure_eq!(c.ask("ADD 2 40")?, "42", "ADD 2 40");
    ensure_eq!(c.ask("ADD -5 3")?, "-2", "ADD -5 3");
    let over = c.ask("ADD 9223372036854775807 1")?;
    ensure!(
        over.starts_with("ERR"),
        "a line starting with ERR for an ADD that overflows 64 bits, not {over:?}"
    );
    let bad = c.ask("ADD one two")?;
    ensure!(
        bad.starts_with("ERR"),
        "a line starting with ERR for ADD one two, not {bad:?}"
    );
    let bye = c.ask("QUIT")?;
    ensure!(bye.starts_with("BYE"), "BYE for QUIT, not {bye:?}");
    ensure!(c.closed(), "the connection to close after QUIT");
    Ok(())
}

/// Reads lines until one contains `needle` (announcements may come first).
fn line_containing(c: &mut Line, needle: &str) -> Result<String, Failure> {
    for _ in 0..10 {
        let line = String::from_utf8_lossy(&c.line()?).into_owned();
        if line.contains(needle) {
            return Ok(line);
        }
    }
    Err(fail(format!("a line containing {needle:?}")))
}

fn chat_broadcast_and_nicks(ctx: &EchoCtx) -> CheckResult {
    if !ctx.chat {
        return Err(Failure::skip("run with --chat to check it"));
    }
    let mut alice = Line::open(ctx.addr)?;
    let ok = alice.ask("NICK alice")?;
    ensure!(!ok.starts_with("ERR"), "NICK alice accepted, not {ok:?}");
    let mut bob = Line::open(ctx.addr)?;
    let ok = bob.ask("NICK bob")?;
    ensure!(!ok.starts_with("ERR"), "NICK bob accepted, not {ok:?}");
    alice.send(b"hello, room\n")?;
    let heard = line_containing(&mut bob, "hello, room")?;
    ensure!(
        heard.contains("alice"),
        "the relayed line to name its sender: {heard:?}"
    );
    // Not echoed to its sender: with the line protocol, the lines alice
    // gets up to the answer to her PING do not hold her own message.
    if ctx.line_protocol {
        alice.send(b"PING\n")?;
        loop {
            let line = String::from_utf8_lossy(&alice.line()?).into_owned();
            ensure!(
                !line.contains("hello, room"),
                "a line not to come back to its sender, but alice got {line:?}"
            );
            if line == "PONG" {
                break;
            }
        }
    }
    // A taken name is refused.
    let mut carol = Line::open(ctx.addr)?;
    let taken = carol.ask("NICK alice")?;
    ensure!(
        taken.starts_with("ERR"),
        "a line starting with ERR for a name that is taken, not {taken:?}"
    );
    Ok(())
}

fn idle_client_is_closed(ctx: &EchoCtx) -> CheckResult {
    let Some(limit) = ctx.idle_timeout else {
        return Err(Failure::skip("run with --idle-timeout SECS to check it"));
    };
    let mut c = Line::open(ctx.addr)?;
    ensure_eq!(
        c.ask("still here")?,
        "still here",
        "a line before going idle"
    );
    let started = Instant::now();
    c.stream
        .set_read_timeout(Some(limit * 2 + Duration::from_secs(2)))
        .ok();
    // A goodbye line is allowed; then the close.
    let mut b = [0u8; 4096];
    loop {
        match c.stream.read(&mut b) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => {
                return Err(fail(format!(
                    "the idle connection closed after about {limit:?}, but it was still open after {:?}",
                    started.elapsed()
                )));
            }
        }
    }
    let after = started.elapsed();
    ensure!(
        after >= limit / 2,
        "the idle connection closed after about {limit:?}, not already after {after:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `echo_tests!` names every check of the rubric, in its order.
    #[test]
    fn the_macro_lists_every_check() {
        let names: Vec<String> = CHECKS.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(macro_names(), names);
    }
}
