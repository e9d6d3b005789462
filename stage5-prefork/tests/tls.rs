//! HTTPS (#23): the shared TLS tests (`common::tls_tests!`).

common::tls_tests!(env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "2"]);

/// One worker that takes one connection, held: the master closes the next
/// connection instead of writing a plaintext 503 on the TLS port.
#[test]
fn full_workers_close_without_a_plaintext_503() {
    common::testkit::tls::full_server_closes_without_a_plaintext_503(
        env!("CARGO_BIN_EXE_stage5-prefork"),
        &[
            "--workers",
            "1",
            "--max-connections",
            "1",
            "--accept",
            "pass",
        ],
    );
}
