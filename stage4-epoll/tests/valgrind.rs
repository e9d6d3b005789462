//! Stage 4 under valgrind's memcheck: no memory error, no leak.

/// A few hundred requests, malformed input and resets, then SIGTERM:
/// memcheck reports no error and no definitely lost byte. Two event loops,
/// so the `SO_REUSEPORT` listeners and the loops' threads are checked too.
#[test]
fn stage4_serves_and_shuts_down_without_leaks_or_memory_errors() {
    common::testkit::valgrind::leak_check(env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "2"]);
}
