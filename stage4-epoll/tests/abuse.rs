//! Hostile clients against the event loop, with the same checks the other
//! stages run (`common::testkit::abuse`). Run with `--nocapture` to see the
//! figures the course quotes.

use common::testkit::ServerProcess;
use common::testkit::abuse::{
    self, slow_reader_does_not_block_others, slowloris_crowd_is_served_alongside,
};

const BIN: &str = env!("CARGO_BIN_EXE_stage4-epoll");

/// 300 slowloris connections on one event loop cost each only a timer and a
/// socket: while the whole crowd is connected (the status page shows it),
/// normal clients are all answered with 200, and afterwards the crowd is
/// still connected and none of it has timed out — they were served
/// alongside it, not after it was let go.
#[test]
fn slowloris_crowd_does_not_stop_normal_clients() {
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
    slowloris_crowd_is_served_alongside(server.addr, 300, "stage 4");
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
    abuse::descriptor_exhaustion_does_not_spin_and_recovers(BIN, &["--loops", "1"], "stage 4");
}
