//! What tells the non-blocking models apart: `select`'s `FD_SETSIZE`, and
//! the rule edge-triggered `epoll` imposes (readiness is reported once, so
//! the program must remember it until a read says `EAGAIN`).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use common::testkit::eventually;
use common::testkit::fdlock::many_connections;
use support::{Client, MODELS, start, with};

/// Connections past the 1,024 descriptors `select` can watch. The server
/// holds a few descriptors of its own (standard streams, signal pipe,
/// listener), so 1,040 clients take it well past descriptor 1023.
const CLIENTS: usize = 1040;

/// Connects `CLIENTS` clients, one after the other, and asks each `PING`.
/// Returns each one's answer, in connection order, and the clients.
fn ping_crowd(server: &common::testkit::ServerProcess) -> (Vec<String>, Vec<Client>) {
    let mut clients = Vec::with_capacity(CLIENTS);
    let mut answers = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let c = Client::connect(server);
        // A refused client is told so and closed at once: the write may
        // find the socket closed already; its answer is still to be read.
        let _ = c.stream().write_all(b"PING\n");
        let mut buf = [0u8; 64];
        let n = c.stream().read(&mut buf).unwrap_or(0);
        answers.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
        clients.push(c);
    }
    (answers, clients)
}

/// `select` cannot watch a descriptor numbered `FD_SETSIZE` (1024) or
/// more: `FD_SET` would write past the end of the set. The server refuses
/// such a client cleanly (`ERR server full`, then a close), keeps serving
/// the ones it has, and serves new clients again once low descriptors are
/// free. `poll`, given the same crowd, serves everyone.
#[test]
fn select_refuses_clients_past_fd_setsize_and_poll_does_not() {
    // Raises this process's open-files limit; the server inherits it, so
    // it is not `EMFILE` that stops it at 1,024.
    let _guard = many_connections();
    let select = start(&["--model", "select", "--max-clients", "2000"]);
    let (answers, mut clients) = ping_crowd(&select);
    let served = answers.iter().take_while(|a| *a == "PONG").count();
    let refused = &answers[served..];
    assert!(
        (1000..1024).contains(&served),
        "select served {served} clients before the first refusal; expected the \
         descriptors below 1024 to be served: {:?}",
        &answers[served.saturating_sub(2)..(served + 2).min(CLIENTS)]
    );
    assert!(
        refused.iter().all(|a| a == "ERR server full"),
        "after the first refusal every client must be refused: {refused:?}"
    );
    // A refused client is closed; the served ones still work.
    clients[served].expect_closed();
    assert_eq!(clients[0].ask("PING"), "PONG");
    assert_eq!(clients[served - 1].ask("PING"), "PONG");
    // Free low descriptors, and a new client fits again: once the server
    // has read the freed clients' EOFs and closed its ends. Until then the
    // lowest free descriptor is still past 1023 and a newcomer is refused,
    // so the test asks again (each refused newcomer is closed at once)
    // until one is served, or gives up after ten seconds.
    clients.truncate(served / 2);
    let mut late = None;
    eventually(
        "a new client is served once the server has closed freed descriptors",
        Duration::from_secs(10),
        || {
            let mut c = Client::connect(&select);
            let served = c.ask("PING") == "PONG";
            if served {
                late = Some(c);
            }
            served
        },
    );
    drop((clients, late, select));

    let poll = start(&["--model", "poll", "--max-clients", "2000"]);
    let (answers, _clients) = ping_crowd(&poll);
    let served = answers.iter().filter(|a| *a == "PONG").count();
    assert_eq!(
        served, CLIENTS,
        "poll has no FD_SETSIZE: every client served"
    );
}

/// Sends `lines` in one write and reads the echoes for at most `patience`;
/// returns how many bytes of echo arrived.
fn burst(server: &common::testkit::ServerProcess, lines: usize, patience: Duration) -> usize {
    let c = Client::connect(server);
    let line = format!("ECHO {}\n", "x".repeat(95));
    let want = lines * (line.len() - "ECHO ".len());
    let writer = c.stream().try_clone().unwrap();
    // Written on a thread: the server answers while we write, and a
    // client that only writes could fill both directions' buffers.
    let payload = line.repeat(lines);
    let sender = std::thread::spawn(move || (&writer).write_all(payload.as_bytes()));
    c.stream().set_read_timeout(Some(patience)).unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < want {
        match c.stream().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("reading the echoes: {e}"),
        }
    }
    sender.join().unwrap().expect("send the burst");
    got
}

/// 400 lines (40 KB, more than the 16 KiB one read takes) in one write are
/// all echoed by every model: edge-triggered epoll included, because the
/// loop remembers that the socket is still readable.
#[test]
fn a_burst_larger_than_one_read_is_echoed_by_every_model() {
    let want = 400 * 96;
    for model in MODELS {
        let server = start(model);
        let got = burst(&server, 400, Duration::from_secs(10));
        assert_eq!(got, want, "{model:?}: echoed {got} of {want} bytes");
    }
}

/// The mistake `--edge-read-once` makes on purpose: edge-triggered, but
/// readiness forgotten after one read, as level-triggered code does. The
/// burst's first 16 KiB are echoed; the rest sits in the socket's receive
/// buffer with no event to announce it, and the client waits for ever
/// (here: for two seconds). The same burst without the mistake is the test
/// above.
#[test]
fn edge_triggered_epoll_that_forgets_readiness_stalls() {
    let server = start(&with(MODELS[4], &["--edge-read-once"]));
    let got = burst(&server, 400, Duration::from_secs(2));
    assert!(
        got < 400 * 96,
        "--edge-read-once echoed everything ({got} bytes): the mistake did not show"
    );
    assert!(got > 0, "not even the first read was echoed");
    // A new event (more bytes) wakes the stalled connection for one more
    // read; the server is not stuck, only that client is.
    let mut other = Client::connect(&server);
    assert_eq!(other.ask("PING"), "PONG");
}
