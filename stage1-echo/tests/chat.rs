//! Chat mode: names, joins, relays, leaves, and a member too slow to keep up.

mod support;

use std::io::{ErrorKind, Write};
use std::sync::mpsc;
use std::time::Duration;

use support::{Client, MODELS, start, stat, with};

/// Connects and takes `name`, returning the client once `OK` came back.
fn member(server: &common::testkit::ServerProcess, name: &str) -> Client {
    let mut c = Client::connect(server);
    assert_eq!(c.ask(&format!("NICK {name}")), format!("OK {name}"));
    c
}

/// Joining is announced to the others; a line is relayed to everyone else as
/// `[name] text` and not echoed to its sender; QUIT and a dropped connection
/// are both announced as `left`.
#[test]
fn chat_join_relay_and_leave() {
    // The blocking model serves one client at a time: no room to chat in.
    for model in &MODELS[1..] {
        chat_join_relay_and_leave_on(model);
    }
}

fn chat_join_relay_and_leave_on(model: &[&str]) {
    let server = start(&with(model, &["--mode", "chat"]));
    let mut alice = member(&server, "alice");
    let mut bob = member(&server, "bob");
    assert_eq!(alice.line(), "* bob joined");
    let mut carol = member(&server, "carol");
    assert_eq!(alice.line(), "* carol joined");
    assert_eq!(bob.line(), "* carol joined");

    alice.send("hello, room\n");
    assert_eq!(bob.line(), "[alice] hello, room");
    assert_eq!(carol.line(), "[alice] hello, room");
    // Nothing came back to alice: her next reply is the answer to PING.
    assert_eq!(alice.ask("PING"), "PONG");

    assert_eq!(bob.ask("QUIT"), "BYE");
    bob.expect_closed();
    assert_eq!(alice.line(), "* bob left");
    assert_eq!(carol.line(), "* bob left");

    drop(carol);
    assert_eq!(alice.line(), "* carol left");
    let stats = alice.ask("STATS");
    assert_eq!(stat(&stats, "members"), 1, "{stats}");
}

/// Names are unique; someone who talks before `NICK` joins as a guest; a
/// client who never joined hears nothing; commands still work in the room.
#[test]
fn chat_names_are_unique_and_guests_get_one() {
    // The blocking model serves one client at a time: no room to chat in.
    for model in &MODELS[1..] {
        chat_names_are_unique_and_guests_get_one_on(model);
    }
}

fn chat_names_are_unique_and_guests_get_one_on(model: &[&str]) {
    let server = start(&with(model, &["--mode", "chat"]));
    let mut alice = member(&server, "alice");
    let mut lurker = Client::connect(&server);
    let mut other = Client::connect(&server);
    assert_eq!(other.ask("NICK alice"), "ERR name alice is taken");
    assert!(other.ask("NICK no spaces").starts_with("ERR "));
    other.send("hi without a name\n");
    assert_eq!(alice.line(), "* guest1 joined");
    assert_eq!(alice.line(), "[guest1] hi without a name");
    assert_eq!(other.ask("NICK bob"), "OK bob");
    assert_eq!(alice.line(), "* guest1 is now known as bob");
    assert_eq!(alice.ask("ECHO commands work"), "commands work");
    assert_eq!(alice.ask("ADD 1 2"), "3");
    // The lurker never joined: its first line is the answer to its PING.
    assert_eq!(lurker.ask("PING"), "PONG");
}

/// A member that never reads is disconnected once its pending output passes
/// `--max-pending`; the others are told it left, and the room keeps flowing.
#[test]
fn a_slow_chat_consumer_is_dropped_and_the_room_keeps_flowing() {
    // The blocking model serves one client at a time: no room to chat in.
    for model in &MODELS[1..] {
        a_slow_chat_consumer_is_dropped_and_the_room_keeps_flowing_on(model);
    }
}

fn a_slow_chat_consumer_is_dropped_and_the_room_keeps_flowing_on(model: &[&str]) {
    let server = start(&with(model, &["--mode", "chat"]));
    let slow = member(&server, "slow");
    let mut watcher = member(&server, "watcher");
    let mut talker = member(&server, "talker");
    assert_eq!(watcher.line(), "* talker joined");
    // The watcher reads everything on a thread, and reports the drop.
    let (seen_tx, seen_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        loop {
            let line = watcher.line();
            if line == "* slow left (too slow)" {
                seen_tx.send(()).unwrap();
            }
            if line == "[talker] after the drop" {
                return watcher; // kept open: its leaving would be announced
            }
        }
    });
    // The slow member never reads again. Talk until it is dropped; 256 MiB
    // would mean the server buffers without bound.
    let batch = format!("{}\n", "t".repeat(999)).repeat(64);
    let mut sent = 0usize;
    while seen_rx.try_recv().is_err() {
        assert!(sent < 256 << 20, "the slow member was never dropped");
        talker.send(&batch);
        sent += batch.len();
    }
    talker.send("after the drop\n");
    let _watcher = reader
        .join()
        .expect("the watcher saw the drop and the next line");
    // The talker heard about the drop too, and is still served.
    assert_eq!(talker.line(), "* slow left (too slow)");
    assert_eq!(talker.ask("PING"), "PONG");
    // The slow member gets what the kernel had buffered, then the end.
    slow.stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = std::io::sink();
    match std::io::copy(&mut slow.stream(), &mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the slow member was not disconnected: {e}"),
    }
    sink.flush().unwrap();
}
