//! Hostile clients against the event loop, with the same checks the other
//! stages run (`common::testkit::abuse`). Run with `--nocapture` to see the
//! figures the course quotes.

use std::time::Duration;

use common::testkit::ServerProcess;
use common::testkit::abuse::{
    Slowloris, normal_clients, slow_reader_does_not_block_others, ticks_while_out_of_descriptors,
};
use common::testkit::status;

const BIN: &str = env!("CARGO_BIN_EXE_stage4-epoll");

/// How long a test waits for the status page to show a state.
const STATE_TIMEOUT: Duration = Duration::from_secs(30);

/// 300 slowloris connections on one event loop cost each only a timer and a
/// socket: while the whole crowd is connected (the status page shows it),
/// normal clients are all answered with 200, and afterwards the crowd is
/// still connected and none of it has timed out — they were served
/// alongside it, not after it was let go.
#[test]
fn slowloris_crowd_does_not_stop_normal_clients() {
    const CROWD: u64 = 300;
    let server = ServerProcess::start(
        BIN,
        &[
            "--loops",
            "1",
            // Longer than the test: no slowloris connection times out.
            "--header-timeout",
            "120",
            "--access-log",
            "off",
        ],
    );
    let before = normal_clients(server.addr, "/files/notes.txt", 200);
    let crowd = Slowloris::start(server.addr, CROWD as usize, Duration::from_millis(200));
    // The status request is one more open connection.
    status::wait_until_at_least(
        server.addr,
        "http_connections_active",
        CROWD + 1,
        STATE_TIMEOUT,
    );
    let during = normal_clients(server.addr, "/files/notes.txt", 200);
    let after = status::scrape(server.addr).expect("the status page");
    let still_open = status::value(&after, "http_connections_active").unwrap_or(0);
    let timed_out = status::samples(&after, "http_timeouts_total")
        .into_iter()
        .find(|&(labels, _)| labels == "kind=\"header\"")
        .map(|(_, n)| n);
    let opened = crowd.stop();
    eprintln!(
        "stage 4, {opened} slowloris connections: normal p50 {:?} -> {:?}, p99 {:?} -> {:?}",
        before.percentile(50.0),
        during.percentile(50.0),
        before.percentile(99.0),
        during.percentile(99.0),
    );
    assert_eq!(opened as u64, CROWD, "every slowloris connection opened");
    assert_eq!(during.count(200), 200, "{during:?}");
    assert!(
        still_open > CROWD && timed_out == Some(0),
        "the crowd was still connected after the normal clients:\n{after}"
    );
}

/// A client reading a large file slowly does not hold up the others.
#[test]
fn a_slow_reader_does_not_hold_up_others() {
    slow_reader_does_not_block_others(BIN, &["--loops", "1"]);
}

/// Out of file descriptors (`EMFILE`), the loop pauses accepting instead of
/// retrying at 100% CPU, and accepts again once descriptors are free.
#[test]
fn descriptor_exhaustion_does_not_spin_and_recovers() {
    let server = ServerProcess::start(
        BIN,
        &["--loops", "1", "--max-fds", "48", "--access-log", "off"],
    );
    let used = ticks_while_out_of_descriptors(server.pid(), server.addr);
    eprintln!("stage 4 out of descriptors: {used} CPU ticks in 1 s");
    assert!(used < 50, "the loop used {used} ticks of CPU in 1 s");
    status::wait_for(
        server.addr,
        "the held connections to close",
        STATE_TIMEOUT,
        |page| status::value(page, "http_connections_active") == Some(1),
    );
    let after = normal_clients(server.addr, "/files/notes.txt", 10);
    assert_eq!(
        after.count(200),
        10,
        "the server did not recover: {after:?}"
    );
}
