//! A real browser (headless Chromium; `.ci/run` installs it) against this
//! stage: the sample site loads whole, and a second load comes from the
//! browser's cache when `--expires` says it may. The tests are written once,
//! in `common::testkit::browser`.

common::browser_tests!(env!("CARGO_BIN_EXE_stage3-threadpool"), &["--threads", "8"]);
