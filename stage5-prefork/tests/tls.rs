//! HTTPS (#23): the shared TLS tests (`common::tls_tests!`).

common::tls_tests!(env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "2"]);
