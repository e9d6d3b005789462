//! Out of descriptors: `accept` fails with `EMFILE` while a client waits,
//! and the listener stays readable. Both models must pause instead of
//! retrying at once (which would burn a whole core), and serve the client
//! once descriptors are free again.

mod support;

use std::process::Command;

use common::testkit::ServerProcess;
use common::testkit::abuse::ticks_in_one_second;
use support::{BIN, Client};

/// Sets the soft open-files limit of process `pid` with util-linux's
/// `prlimit(1)`, leaving the hard limit (so that anyone may raise it again).
fn set_nofile(pid: u32, limit: usize) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --nofile={limit} failed");
}

/// The lowest descriptor number process `pid` does not use: a new
/// descriptor would get it, so a limit of this many makes the next one fail.
fn lowest_free_fd(pid: u32) -> usize {
    let used: std::collections::BTreeSet<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// The server is started, then its limit is lowered so that no new
/// descriptor fits: the next `accept` fails with `EMFILE`.
fn pauses_on_emfile(model: &str) {
    // Errors only: a model that spins must not be slowed down by writing a
    // warning on every turn, or the CPU it burns would not show.
    let server = ServerProcess::start(BIN, &["--model", model, "--log-level", "error"]);
    let pid = server.pid();
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .0 as usize;
    set_nofile(pid, lowest_free_fd(pid));
    // The handshake completes in the kernel; accept(2) then fails, so the
    // client is not answered.
    let mut waiting = Client::connect(&server);
    waiting.send("hello\n");
    waiting
        .stream()
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut waiting.stream(), &mut byte);
    assert!(
        early.is_err(),
        "--model {model}: answered although out of descriptors: {early:?}"
    );
    waiting
        .stream()
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let used = ticks_in_one_second(pid);
    eprintln!("--model {model}: {used} CPU ticks in 1 s without descriptors");
    assert!(
        used < 20,
        "--model {model} spun on EMFILE: {used} ticks in 1 s"
    );
    // With descriptors again, the waiting client is accepted and answered,
    // and once it has gone the server is idle again.
    set_nofile(pid, soft);
    assert_eq!(waiting.line(), "hello");
    drop(waiting);
    let used = ticks_in_one_second(pid);
    eprintln!("--model {model}: {used} CPU ticks in the next second, idle");
    assert!(
        used < 20,
        "--model {model} spins after EMFILE: {used} ticks in 1 s"
    );
}

/// The blocking model pauses on `EMFILE` (it used to retry at once).
#[test]
fn blocking_model_pauses_when_out_of_descriptors() {
    pauses_on_emfile("blocking");
}

/// The poll model pauses on `EMFILE` too (it spun once the first pause was
/// over: the pause's deadline stayed in the poll timeout).
#[test]
fn poll_model_pauses_when_out_of_descriptors() {
    pauses_on_emfile("poll");
}

/// The select model shares the poll model's loop: it pauses too.
#[test]
fn select_model_pauses_when_out_of_descriptors() {
    pauses_on_emfile("select");
}

/// The epoll model cannot just leave the listener out of a list: its
/// interest list lives in the kernel. The pause is an `epoll_ctl` that
/// takes the listener's interest away, and another that gives it back.
/// (With `--edge` the listener stays level-triggered: the same path.)
#[test]
fn epoll_model_pauses_when_out_of_descriptors() {
    pauses_on_emfile("epoll");
}
