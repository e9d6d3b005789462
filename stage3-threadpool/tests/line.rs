//! `--protocol line`: stage 1's line protocol and chat room on the pool.
//! The stage 1 rubric (`common::testkit::echo`, what `bench check --stage
//! 1` runs) passes against it, echo and chat; and the pool's own bounds
//! speak the protocol: a full queue or a full room is `ERR server full`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::testkit::ServerProcess;
use common::testkit::echo::{EchoCtx, grade};

const BIN: &str = env!("CARGO_BIN_EXE_stage3-threadpool");

fn start(args: &[&str]) -> ServerProcess {
    let mut all = vec!["--protocol", "line", "--log-level", "warn"];
    all.extend_from_slice(args);
    ServerProcess::start(BIN, &all)
}

fn ctx(server: &ServerProcess) -> EchoCtx {
    EchoCtx {
        addr: server.addr,
        blocking: false,
        line_protocol: true,
        chat: false,
        idle_timeout: None,
    }
}

/// Echo mode passes the whole stage 1 rubric, the idle timeout included;
/// only the chat check is skipped.
#[test]
fn echo_on_the_pool_passes_the_stage1_rubric() {
    let server = start(&["--threads", "8", "--idle-timeout", "1"]);
    let ctx = EchoCtx {
        idle_timeout: Some(Duration::from_secs(1)),
        ..ctx(&server)
    };
    let (failed, skipped, report) = grade(&ctx);
    assert!(failed.is_empty(), "{report}");
    assert_eq!(skipped, BTreeSet::from(["chat_broadcast_and_nicks"]));
}

/// Chat mode on the pool: members on different workers hear each other
/// (the relay waits for the listener's worker to look, every 20 ms).
#[test]
fn chat_on_the_pool_passes_the_stage1_rubric() {
    let server = start(&["--threads", "8", "--mode", "chat"]);
    let ctx = EchoCtx {
        chat: true,
        ..ctx(&server)
    };
    let (failed, skipped, report) = grade(&ctx);
    assert!(failed.is_empty(), "{report}");
    assert_eq!(skipped, BTreeSet::from(["idle_client_is_closed"]));
}

fn line_of(stream: &TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("a line");
    line
}

/// With every worker holding a client and the queue full, the acceptor
/// answers the next client in the protocol — `ERR server full` — not with
/// an HTTP 503. The clients already in are still served.
#[test]
fn a_full_pool_refuses_in_the_line_protocol() {
    let server = start(&["--threads", "1", "--queue-depth", "1"]);
    let held = server.connect(); // on the only worker
    (&held).write_all(b"PING\n").unwrap();
    assert_eq!(line_of(&held), "PONG\n");
    let queued = server.connect(); // waits in the queue
    let refused = server.connect();
    assert_eq!(line_of(&refused), "ERR server full\n");
    (&held).write_all(b"QUIT\n").unwrap();
    assert_eq!(line_of(&held), "BYE\n");
    // The worker is free: the queued client is served now.
    (&queued).write_all(b"PING\n").unwrap();
    assert_eq!(line_of(&queued), "PONG\n");
}
