//! The shared conformance suite, run against stage 3 once per queue kind:
//! the queue must change nothing a client can see. One `#[test]` per check
//! and queue (`ranges::mutex_queue`, `ranges::crossbeam_queue`).

common::conformance_tests! {
    // Stage 3 with the hand-written `Mutex<VecDeque>` + `Condvar` queue.
    mutex_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "mutex"]),
    // Stage 3 with `crossbeam-channel`.
    crossbeam_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "crossbeam"]),
}
