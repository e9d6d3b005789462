//! `--user`, `--group` and `--chroot`: the shared privilege-drop test
//! (`common::testkit::privs`), checked from `/proc`, in both idle models.
//! Needs root; CI runs as root, and there a skip is a failure.

#[test]
fn the_server_drops_to_nobody_and_stays_in_its_chroot() {
    for idle in ["poller", "classic"] {
        common::testkit::privs::check(
            env!("CARGO_BIN_EXE_stage3-threadpool"),
            &["--idle", idle],
            |server| vec![server.pid()],
        );
    }
}
