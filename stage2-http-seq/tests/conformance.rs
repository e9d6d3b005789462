//! Stage 2 against the shared conformance suite: one `#[test]` per check
//! (`cargo test -p stage2-http-seq --test conformance ranges` runs one),
//! all against one sequential server started on first use.

common::conformance_tests! {
    sequential => (env!("CARGO_BIN_EXE_stage2-http-seq"), &[]),
}
