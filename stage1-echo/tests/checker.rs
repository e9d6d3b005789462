//! The stage 1 rubric (`bench check --stage 1`, `common::testkit::echo`)
//! passes against this stage in every mode, and fails echo servers written
//! here with one flaw each: exactly the checks the flaw breaks.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::testkit::echo::{EchoCtx, grade};

fn ctx(addr: SocketAddr) -> EchoCtx {
    EchoCtx {
        addr,
        blocking: false,
        line_protocol: false,
        chat: false,
        idle_timeout: None,
    }
}

fn poll_ctx(addr: SocketAddr) -> EchoCtx {
    EchoCtx {
        line_protocol: true,
        idle_timeout: Some(Duration::from_secs(1)),
        ..ctx(addr)
    }
}

fn blocking_ctx(addr: SocketAddr) -> EchoCtx {
    EchoCtx {
        blocking: true,
        line_protocol: true,
        ..ctx(addr)
    }
}

fn chat_ctx(addr: SocketAddr) -> EchoCtx {
    EchoCtx {
        chat: true,
        line_protocol: true,
        ..ctx(addr)
    }
}

// Every check against every model, one test each (`CHECK::MODEL`): the
// event-loop models pass all of it, the line protocol and the idle timeout
// included; the blocking model passes graded as blocking; chat mode passes
// the chat check and the echo checks (through `ECHO`).
common::echo_tests! {
    poll => (env!("CARGO_BIN_EXE_stage1-echo"), &["--log-level", "warn", "--model", "poll", "--idle-timeout", "1"], poll_ctx,
             skips [chat_broadcast_and_nicks]),
    select => (env!("CARGO_BIN_EXE_stage1-echo"), &["--log-level", "warn", "--model", "select", "--idle-timeout", "1"], poll_ctx,
               skips [chat_broadcast_and_nicks]),
    epoll => (env!("CARGO_BIN_EXE_stage1-echo"), &["--log-level", "warn", "--model", "epoll", "--idle-timeout", "1"], poll_ctx,
              skips [chat_broadcast_and_nicks]),
    blocking => (env!("CARGO_BIN_EXE_stage1-echo"), &["--log-level", "warn", "--model", "blocking"], blocking_ctx,
                 skips [clients_at_once chat_broadcast_and_nicks idle_client_is_closed]),
    chat => (env!("CARGO_BIN_EXE_stage1-echo"), &["--log-level", "warn", "--mode", "chat"], chat_ctx,
             skips [idle_client_is_closed]),
}

/// What is wrong with an echo server written here.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    /// It serves one client, to the end, before it accepts the next.
    OneClientAtATime,
    /// It takes what one `read` returns for a whole line.
    OneReadIsOneLine,
}

/// Starts an echo server with `flaw` on a free port.
fn flawed(flaw: Flaw) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            match flaw {
                // A connection's errors end that connection only.
                Flaw::OneClientAtATime => {
                    let _ = echo_lines(stream);
                }
                Flaw::OneReadIsOneLine => {
                    std::thread::spawn(move || echo_reads(stream));
                }
            }
        }
    });
    addr
}

/// A correct echo loop: complete lines back, partial ones kept.
fn echo_lines(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(last) = buf.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = buf.drain(..=last).collect();
            s.write_all(&lines)?;
        }
    }
}

/// The classic mistake: whatever one `read` returned, back with a newline.
fn echo_reads(mut s: TcpStream) -> std::io::Result<()> {
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        let text = chunk[..n].strip_suffix(b"\n").unwrap_or(&chunk[..n]);
        s.write_all(text)?;
        s.write_all(b"\n")?;
    }
}

/// A server that serves one client at a time fails "several clients at
/// once", and nothing else; graded with `--blocking` it passes.
#[test]
fn a_sequential_echo_server_fails_clients_at_once_only() {
    // The second client waits for ever: give up on a read after 3 s (for
    // every test of this binary; none needs longer).
    common::testkit::check::set_io_timeout(Duration::from_secs(3));
    let addr = flawed(Flaw::OneClientAtATime);
    let (failed, _, report) = grade(&ctx(addr));
    assert_eq!(failed, BTreeSet::from(["clients_at_once"]), "{report}");
    let (failed, _, report) = grade(&EchoCtx {
        blocking: true,
        ..ctx(addr)
    });
    assert!(failed.is_empty(), "{report}");
}

/// A server that takes one read for one line fails the split line and the
/// megabyte stream (echoed in the pieces it came in, each with a newline
/// added), and nothing else.
#[test]
fn an_echo_server_that_trusts_one_read_fails_split_lines() {
    let addr = flawed(Flaw::OneReadIsOneLine);
    let (failed, _, report) = grade(&ctx(addr));
    assert_eq!(
        failed,
        BTreeSet::from(["line_split_across_writes", "megabyte_stream_while_reading"]),
        "{report}"
    );
}
