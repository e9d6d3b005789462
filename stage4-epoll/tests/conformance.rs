//! Stage 4 against the shared conformance suite, with one event loop and
//! with two (two `SO_REUSEPORT` listeners, so both loops get connections),
//! with one loop and the open-file cache off, and over TLS (two loops, each
//! driving rustls sessions). One `#[test]` per check and configuration
//! (`ranges::one_loop`).

common::conformance_tests! {
    // A single event loop.
    one_loop => (env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "1"]),
    // Two event loops on two threads.
    two_loops => (env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "2"]),
    // The open-file cache switched off (every request takes the plain path).
    no_open_file_cache => (env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "1", "--open-file-cache", "false"]),
    // Every check over TLS: the test client and curl speak TLS to it.
    over_tls => (env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "2"], tls),
}
