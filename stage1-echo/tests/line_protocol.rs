//! The line protocol in echo mode, against every model, over real sockets.

mod support;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::testkit::ServerProcess;
use nix::sys::signal::Signal;
use support::{BIN, Client, MODELS, start, stat, with};

/// Runs every command once and checks the exact reply.
fn every_command(server: &ServerProcess) {
    let mut c = Client::connect(server);
    assert_eq!(c.ask("PING"), "PONG");
    assert_eq!(c.ask("ping"), "PONG", "commands are case-insensitive");
    assert_eq!(c.ask("PING\r"), "PONG", "CRLF line endings work");
    assert_eq!(c.ask("ECHO hello world"), "hello world");
    assert_eq!(c.ask("echo"), "");
    assert_eq!(c.ask("ADD 2 40"), "42");
    assert_eq!(c.ask("ADD -9223372036854775808 9223372036854775807"), "-1");
    assert!(c.ask("ADD 9223372036854775807 1").starts_with("ERR "));
    assert!(c.ask("ADD 1").starts_with("ERR "));
    assert!(c.ask("ADD one two").starts_with("ERR "));
    let stats = c.ask("STATS");
    assert_eq!(stat(&stats, "clients"), 1, "{stats}");
    assert_eq!(stat(&stats, "messages"), 11, "{stats}");
    stat(&stats, "uptime_s");
    assert_eq!(c.ask("anything else"), "anything else");
    assert_eq!(
        c.ask("NICK bob"),
        "NICK bob",
        "NICK is only a command in chat mode"
    );
    assert!(c.ask("QUIT").starts_with("BYE"));
    c.expect_closed();
}

/// Every command of the protocol gets its specified reply, from every
/// model: blocking, select, poll, epoll, edge-triggered epoll.
#[test]
fn every_model_answers_every_command() {
    for model in MODELS {
        every_command(&start(model));
    }
}

/// A line that arrives one byte per write is answered once, whole.
#[test]
fn a_line_split_across_writes_is_answered_whole() {
    for model in MODELS {
        let server = start(&with(model, &[]));
        let mut c = Client::connect(&server);
        for b in b"ECHO split\r\n" {
            c.send([*b]);
        }
        assert_eq!(c.line(), "split", "{model:?}");
        assert_eq!(c.ask("PING"), "PONG", "{model:?}: nothing extra was sent");
    }
}

/// A hundred lines in one write get a hundred replies, in order.
#[test]
fn many_lines_in_one_write_get_one_reply_each() {
    for model in MODELS {
        let server = start(&with(model, &[]));
        let mut c = Client::connect(&server);
        let batch: String = (0..100).map(|i| format!("ECHO line {i}\n")).collect();
        c.send(batch);
        for i in 0..100 {
            assert_eq!(c.line(), format!("line {i}"), "{model:?}");
        }
    }
}

/// A 4000-byte line is under the 4096-byte default limit and comes back
/// whole, even though it takes several reads and writes.
#[test]
fn a_4000_byte_line_is_echoed_whole() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    let line: String = (0..4000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(c.ask(&line), line);
}

/// A line over `--max-line` gets `ERR` and the connection is closed, as soon
/// as the limit is passed: the server does not wait for the newline.
#[test]
fn an_overlong_line_gets_err_and_close() {
    for model in MODELS {
        let server = start(&with(model, &[]));
        let mut c = Client::connect(&server);
        c.send(vec![b'x'; 5000]);
        assert_eq!(
            c.line(),
            "ERR message too long (max 4096 bytes)",
            "{model:?}"
        );
        c.expect_closed();
    }
}

/// Lines that are not UTF-8 are echoed byte for byte.
#[test]
fn non_utf8_lines_are_echoed_byte_for_byte() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    c.send(b"\xff\xfe caf\xe9\n");
    assert_eq!(c.line_bytes(), b"\xff\xfe caf\xe9");
}

/// The blocking model serves one client at a time: a second client's
/// connect succeeds (the kernel's backlog), but it is served only after the
/// first one leaves.
#[test]
fn blocking_model_serves_the_second_client_after_the_first_leaves() {
    let server = start(&["--model", "blocking"]);
    let mut first = Client::connect(&server);
    assert_eq!(first.ask("PING"), "PONG");
    let mut second = Client::connect(&server);
    second.send("ECHO second\n");
    // The server has not even accepted the second connection yet.
    let stats = first.ask("STATS");
    assert_eq!(stat(&stats, "clients"), 1, "{stats}");
    assert_eq!(first.ask("QUIT"), "BYE");
    first.expect_closed();
    // Our FIN ends the server's lingering close at once (else it waits 2 s).
    drop(first);
    assert_eq!(second.line(), "second");
}

/// 200 clients connected at the same time are all served by one thread.
#[test]
fn two_hundred_concurrent_clients() {
    let server = start(&[]);
    let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(&server)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("ECHO client {i}\n"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.line(), format!("client {i}"));
    }
    let stats = clients[0].ask("STATS");
    assert_eq!(stat(&stats, "clients"), 200, "{stats}");
}

/// A client that sends without end and never reads its replies fills its
/// buffers and is then simply not read (backpressure); meanwhile another
/// client is served at once. Nothing it sent is lost.
#[test]
fn a_client_that_never_reads_does_not_stall_the_others() {
    let server = start(&[]);
    let mut hog = Client::connect(&server);
    hog.stream()
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let line = format!("ECHO {}\n", "h".repeat(1000));
    let batch = line.repeat(64);
    let mut sent = 0usize;
    // Write until the server stops taking our bytes; 256 MiB means it never did.
    loop {
        assert!(sent < 256 << 20, "the server kept reading an unread client");
        match hog.stream().write(batch.as_bytes()) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    let mut other = Client::connect(&server);
    assert_eq!(other.ask("PING"), "PONG");
    assert_eq!(other.ask("ECHO still here"), "still here");
    // The hog's replies were kept, in order.
    assert_eq!(hog.line().len(), 1000);
}

/// Clients that vanish with a reset — with a request half sent, or with
/// replies still queued — cost the server nothing but their connection.
#[test]
fn abrupt_resets_do_not_hurt_the_server() {
    for model in MODELS {
        let server = start(&with(model, &[]));
        let mut a = Client::connect(&server);
        assert_eq!(a.ask("PING"), "PONG");
        a.send("ECHO half a li");
        a.reset();
        let mut b = Client::connect(&server);
        assert_eq!(b.ask("PING"), "PONG");
        b.send("ECHO unread reply\n".repeat(10_000));
        b.reset();
        let mut c = Client::connect(&server);
        assert_eq!(c.ask("PING"), "PONG", "{model:?}");
        // The server notices the resets; wait for it, one round trip at a time.
        let clients = (0..1000)
            .map(|_| stat(&c.ask("STATS"), "clients"))
            .find(|&n| n == 1);
        assert_eq!(clients, Some(1), "{model:?}");
    }
}

/// `--idle-timeout` closes a silent client with a `BYE` line.
#[test]
fn idle_clients_get_bye() {
    for model in MODELS {
        let server = start(&with(model, &["--idle-timeout", "0.5"]));
        let mut c = Client::connect(&server);
        assert_eq!(c.ask("PING"), "PONG");
        assert_eq!(c.line(), "BYE idle timeout", "{model:?}");
        c.expect_closed();
    }
}

/// One client more than `--max-clients` gets `ERR server full` and is
/// closed; the others are unaffected.
#[test]
fn one_client_too_many_gets_server_full() {
    let server = start(&["--max-clients", "2"]);
    let mut a = Client::connect(&server);
    let mut b = Client::connect(&server);
    assert_eq!(a.ask("PING"), "PONG");
    assert_eq!(b.ask("PING"), "PONG");
    let mut c = Client::connect(&server);
    assert_eq!(c.line(), "ERR server full");
    c.expect_closed();
    assert_eq!(a.ask("QUIT"), "BYE");
    a.expect_closed();
    // Our FIN ends the server's lingering close; the server handles its
    // clients before it accepts, so `a`'s seat is free by the time `d` asks.
    drop(a);
    let mut d = Client::connect(&server);
    assert_eq!(d.ask("PING"), "PONG");
}

/// SIGTERM: the listener closes, every client (even one halfway through a
/// line) gets a `BYE` line and EOF, and the process exits 0.
#[test]
fn sigterm_says_bye_to_everyone_and_exits_0() {
    let mut server = start(&[]);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(&server)).collect();
    for c in &mut clients {
        assert_eq!(c.ask("PING"), "PONG");
    }
    clients[0].send("ECHO half");
    server.signal(Signal::SIGTERM);
    for c in &mut clients {
        assert_eq!(c.line(), "BYE server shutting down");
        c.expect_closed();
    }
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "the listener is closed before the goodbyes"
    );
    drop(clients);
    let status = server.wait_timeout(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status:?}");
}

/// The blocking model also says goodbye on SIGTERM: it waits in `poll` on
/// the client and the signal pipe, not in a bare `read`.
#[test]
fn blocking_model_says_bye_on_sigterm() {
    let mut server = start(&["--model", "blocking"]);
    let mut c = Client::connect(&server);
    assert_eq!(c.ask("PING"), "PONG");
    server.signal(Signal::SIGTERM);
    assert_eq!(c.line(), "BYE server shutting down");
    c.expect_closed();
    drop(c);
    let status = server.wait_timeout(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status:?}");
    // And with nobody connected it exits from its wait in accept.
    let mut idle = start(&["--model", "blocking"]);
    assert!(idle.terminate().success());
}

/// A client that half-closes (sends FIN after its requests) still gets every
/// answer, including one for a last line without a newline.
#[test]
fn half_close_still_gets_the_answers() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    c.send("PING\nECHO last");
    c.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.line(), "PONG");
    assert_eq!(c.line(), "last");
    c.expect_closed();
}

/// Settings come from `--config FILE`; flags on the command line win.
#[test]
fn a_config_file_sets_the_limits() {
    let dir = common::testkit::files::TempDir::new("stage1-config");
    let file = dir.write("stage1.toml", "max_line = 10\nmax_clients = 1\n");
    let server = start(&["--config", file.to_str().unwrap(), "--max-clients", "5"]);
    let mut a = Client::connect(&server);
    let mut b = Client::connect(&server);
    assert_eq!(
        b.ask("ECHO 12345"),
        "12345",
        "max_clients = 5 from the flag"
    );
    a.send("ECHO 123456789\n");
    assert_eq!(a.line(), "ERR message too long (max 10 bytes)");
}

/// A restarted server binds its port again at once, although the
/// connection it closed first (QUIT) left a `TIME_WAIT` entry on that port
/// (`ss -tan` shows it): the listener sets `SO_REUSEADDR` (`net.rs`).
/// Without it the second start fails with `EADDRINUSE` for up to a minute
/// (the chapter's Lab 3, `docs/labs/stage1-no-reuseaddr.patch`).
#[test]
fn a_restart_binds_the_port_its_closed_connections_still_hold() {
    let mut first = start(&[]);
    let addr = first.addr.to_string();
    let mut c = Client::connect(&first);
    assert!(c.ask("QUIT").starts_with("BYE"));
    // The server closed first: its side of the connection is the one left
    // in TIME_WAIT once this side closes too.
    c.expect_closed();
    drop(c);
    assert!(first.terminate().success());
    let mut again = Command::new(BIN);
    again.args(["--addr", &addr, "--log-level", "warn"]);
    let second = ServerProcess::start_command(again);
    assert_eq!(second.addr.to_string(), addr);
    assert_eq!(Client::connect(&second).ask("PING"), "PONG");
}
