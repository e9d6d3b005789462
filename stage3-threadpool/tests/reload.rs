//! SIGHUP: the shared reload test (`common::testkit::reload`), in both
//! idle models (the poller, or the classic acceptor, re-reads the file).

#[test]
fn sighup_applies_a_live_setting_and_keeps_running_on_a_broken_file() {
    for idle in ["poller", "classic"] {
        common::testkit::reload::check(env!("CARGO_BIN_EXE_stage3-threadpool"), &["--idle", idle]);
    }
}
