//! HTTPS (#23): the shared TLS tests (`common::tls_tests!`); with TLS
//! stage 3 runs the classic model.

common::tls_tests!(env!("CARGO_BIN_EXE_stage3-threadpool"), &["--threads", "4"]);
