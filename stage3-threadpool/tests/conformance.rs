//! The shared conformance suite, run against stage 3 in both `--idle`
//! models, once per queue kind, once more with the open-file cache off, and
//! over TLS (which stage 3 serves in the classic model only): none of it
//! may change anything a client can see. One `#[test]` per check
//! and configuration (`ranges::mutex_queue`, `ranges::classic_crossbeam_queue`,
//! `ranges::no_open_file_cache`, ...).

common::conformance_tests! {
    // The poller model (the default) with the hand-written
    // `Mutex<VecDeque>` + `Condvar` queue.
    mutex_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "mutex"]),
    // The poller model with `crossbeam-channel`.
    crossbeam_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "crossbeam"]),
    // The poller model with a self-sizing pool that starts with one worker.
    self_sizing => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--min-threads", "1", "--max-threads", "4", "--thread-idle-timeout", "0.2"]),
    // The poller model with no wait for the next request: every keep-alive
    // request goes through the poller.
    no_worker_wait => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--worker-wait", "0"]),
    // The classic model: a worker owns its connection from accept to close.
    classic_mutex_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--idle", "classic", "--queue", "mutex"]),
    // The classic model with `crossbeam-channel`.
    classic_crossbeam_queue => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--idle", "classic", "--queue", "crossbeam"]),
    // The open-file cache switched off (every request takes the plain path).
    no_open_file_cache => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--queue", "mutex", "--open-file-cache", "false"]),
    // Every check over TLS (classic model): the test client and curl speak
    // TLS to it.
    over_tls => (env!("CARGO_BIN_EXE_stage3-threadpool"), &["--idle", "classic"], tls),
}
