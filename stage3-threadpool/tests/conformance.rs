//! The shared conformance suite, run against stage 3 once per queue kind:
//! the queue must change nothing a client can see.

use common::testkit::conformance::run_suite;

/// Stage 3 with the hand-written `Mutex<VecDeque>` + `Condvar` queue passes
/// the black-box HTTP checks every stage must pass.
#[test]
fn conformance_with_the_mutex_queue() {
    run_suite(
        env!("CARGO_BIN_EXE_stage3-threadpool"),
        &["--queue", "mutex"],
    );
}

/// Stage 3 with `crossbeam-channel` passes the same checks.
#[test]
fn conformance_with_the_crossbeam_queue() {
    run_suite(
        env!("CARGO_BIN_EXE_stage3-threadpool"),
        &["--queue", "crossbeam"],
    );
}
