//! Stage 5 against the shared conformance suite, in both accept models,
//! with least-connections balancing, with the open-file cache off, and over
//! TLS (the workers drive rustls sessions on passed connections). One
//! `#[test]` per check and configuration (`ranges::pass_model`).

common::conformance_tests! {
    // The master passes every connection to a worker over SCM_RIGHTS.
    pass_model => (env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "2", "--accept", "pass"]),
    // The workers accept on the shared listener themselves.
    shared_model => (env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "2", "--accept", "shared"]),
    // Least-connections balancing serves the same bytes.
    least_conn => (env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "3", "--balance", "least-conn"]),
    // The open-file cache switched off (every request takes the plain path).
    no_open_file_cache => (env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "2", "--accept", "pass", "--open-file-cache", "false"]),
    // Every check over TLS: the test client and curl speak TLS to it.
    over_tls => (env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "2", "--accept", "pass"], tls),
}
