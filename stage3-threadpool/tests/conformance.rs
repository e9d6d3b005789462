//! The shared conformance suite, run against stage 3 once per queue kind,
//! and once more with the open-file cache off: neither may change anything
//! a client can see. One `#[test]` per check and configuration
//! (`ranges::mutex_queue`, `ranges::crossbeam_queue`, `ranges::no_open_file_cache`).

common::conformance_tests! {
    // Stage 3 with the hand-written `Mutex<VecDeque>` + `Condvar` queue.
    mutex_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "mutex"]),
    // Stage 3 with `crossbeam-channel`.
    crossbeam_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "crossbeam"]),
    // The open-file cache switched off (every request takes the plain path).
    no_open_file_cache => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "mutex", "--open-file-cache", "false"]),
}
