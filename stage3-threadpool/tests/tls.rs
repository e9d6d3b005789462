//! HTTPS (#23): the shared TLS tests (`common::tls_tests!`); with TLS
//! stage 3 runs the classic model.

common::tls_tests!(env!("CARGO_BIN_EXE_stage3-threadpool"), &["--threads", "4"]);

/// One worker and one queue slot, both held: the acceptor closes the next
/// connection instead of writing a plaintext 503 on the TLS port.
#[test]
fn full_queue_closes_without_a_plaintext_503() {
    common::testkit::tls::full_server_closes_without_a_plaintext_503(
        env!("CARGO_BIN_EXE_stage3-threadpool"),
        &["--threads", "1", "--queue-depth", "1"],
    );
}
