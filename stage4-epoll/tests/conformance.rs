//! Stage 4 against the shared conformance suite, with one event loop and
//! with two (two `SO_REUSEPORT` listeners, so both loops get connections).

/// Every behaviour the shared suite checks, against a single event loop.
#[test]
fn one_loop_passes_the_conformance_suite() {
    common::testkit::conformance::run_suite(env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "1"]);
}

/// The same checks with two event loops on two threads.
#[test]
fn two_loops_pass_the_conformance_suite() {
    common::testkit::conformance::run_suite(env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "2"]);
}
