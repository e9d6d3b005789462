//! Hostile clients against the thread pool: what it survives, and how it
//! degrades. Run with `--nocapture` to see the figures the course quotes.

use std::time::Duration;

use common::testkit::abuse::{self, Slowloris, normal_clients, slow_reader_does_not_block_others};
use common::testkit::{ServerProcess, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_stage3-threadpool");

/// 200 slowloris connections occupy every worker and fill the queue: normal
/// clients are still answered — with 200 once a header timeout frees a
/// worker, or at once with 503 when the queue is full — and none hangs.
#[test]
fn slowloris_degrades_to_503_and_delays_but_never_hangs() {
    let args = [
        "--threads",
        "8",
        "--queue-depth",
        "16",
        "--header-timeout",
        "1",
        "--access-log",
        "off",
    ];
    let server = ServerProcess::start(BIN, &args);
    let before = normal_clients(server.addr, "/files/notes.txt", 50);
    let crowd = Slowloris::start(server.addr, 200, Duration::from_millis(200));
    // The crowd has taken the workers and filled the queue once a normal
    // client is turned away.
    eventually(
        "the crowd fills the queue (a normal client gets 503)",
        Duration::from_secs(30),
        || normal_clients(server.addr, "/files/notes.txt", 1).count(503) == 1,
    );
    let during = normal_clients(server.addr, "/files/notes.txt", 50);
    let opened = crowd.stop();
    eprintln!(
        "stage 3, {opened} slowloris connections: normal p50 {:?} -> {:?}, p99 {:?} -> {:?}; during: {} x 200, {} x 503, {} failed",
        before.percentile(50.0),
        during.percentile(50.0),
        before.percentile(99.0),
        during.percentile(99.0),
        during.count(200),
        during.count(503),
        during.failed
    );
    assert_eq!(during.failed, 0, "{during:?}");
    assert_eq!(during.count(200) + during.count(503), 50, "{during:?}");
    // Generous: a starved server would not answer within the read timeout.
    assert!(during.percentile(100.0) < Duration::from_secs(10));
    // Once the crowd is gone the pool serves normally again.
    let after = normal_clients(server.addr, "/files/notes.txt", 10);
    assert_eq!(after.count(200), 10, "{after:?}");
}

/// A client reading a large file slowly holds one worker; the others go on
/// serving.
#[test]
fn a_slow_reader_holds_one_worker_only() {
    slow_reader_does_not_block_others(BIN, &["--threads", "2"]);
}

/// Out of descriptors (a low RLIMIT_NOFILE), the acceptor backs off instead
/// of spinning, and serves again once descriptors are free.
#[test]
fn descriptor_exhaustion_does_not_spin_and_recovers() {
    abuse::descriptor_exhaustion_does_not_spin_and_recovers(BIN, &["--threads", "2"], "stage 3");
}
