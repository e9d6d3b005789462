//! SIGHUP: the shared reload test (`common::testkit::reload`).

#[test]
fn sighup_applies_a_live_setting_and_keeps_running_on_a_broken_file() {
    common::testkit::reload::check(env!("CARGO_BIN_EXE_stage2-http-seq"), &[]);
}
