//! Stage 5 against the shared conformance suite, in both accept models.

const BIN: &str = env!("CARGO_BIN_EXE_stage5-prefork");

/// The master passes every connection to a worker over SCM_RIGHTS.
#[test]
fn pass_model_passes_the_conformance_suite() {
    common::testkit::conformance::run_suite(BIN, &["--workers", "2", "--accept", "pass"]);
}

/// The workers accept on the shared listener themselves.
#[test]
fn shared_model_passes_the_conformance_suite() {
    common::testkit::conformance::run_suite(BIN, &["--workers", "2", "--accept", "shared"]);
}

/// Least-connections balancing serves the same bytes.
#[test]
fn least_conn_passes_the_conformance_suite() {
    common::testkit::conformance::run_suite(BIN, &["--workers", "3", "--balance", "least-conn"]);
}
