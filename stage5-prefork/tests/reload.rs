//! SIGHUP: the shared reload test (`common::testkit::reload`). The master
//! re-reads the file and rolls the workers; a refused file is counted in
//! the master's own slot of the scoreboard.

#[test]
fn sighup_applies_a_live_setting_and_keeps_running_on_a_broken_file() {
    common::testkit::reload::check(env!("CARGO_BIN_EXE_stage5-prefork"), &["--workers", "2"]);
}
