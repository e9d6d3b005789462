//! Stage 2 against the shared conformance suite.

/// Every behaviour the shared suite checks, against the sequential server.
#[test]
fn stage2_passes_the_conformance_suite() {
    common::testkit::conformance::run_suite(env!("CARGO_BIN_EXE_stage2-http-seq"), &[]);
}
