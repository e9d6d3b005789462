//! Stage 2 against the shared conformance suite: one `#[test]` per check
//! and configuration (`cargo test -p stage2-http-seq --test conformance
//! ranges` runs one check), each configuration against one sequential
//! server started on first use: as shipped, with the open-file cache
//! off, and over TLS (the sequential TLS loop of `src/tls.rs`).

common::conformance_tests! {
    sequential => (env!("CARGO_BIN_EXE_stage2-http-seq"), &[]),
    // The open-file cache switched off: every request takes the plain
    // path, and must answer the same bytes.
    no_open_file_cache => (env!("CARGO_BIN_EXE_stage2-http-seq"), &["--open-file-cache", "false"]),
    // Every check over TLS: the test client and curl speak TLS to it.
    over_tls => (env!("CARGO_BIN_EXE_stage2-http-seq"), &[], tls),
}
